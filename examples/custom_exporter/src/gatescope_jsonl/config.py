"""The `exporters.jsonl` section, declared with gatescope.settings so errors carry JSON paths."""

from __future__ import annotations

import attrs
from gatescope.settings import Problems, boolean, integer, setting, string

MAX_BACKUPS = 100


@attrs.frozen
class JsonlConfig:
    path: str = setting(string(non_empty=True), required=True,
                        doc="file the JSON lines are appended to")
    spans: bool = setting(boolean, default=True, doc="write one line per finished span")
    metrics: bool = setting(boolean, default=True,
                            doc="write one line per view row every reporting period")
    max_bytes: int = setting(integer(0), default=0,
                             doc="rotate before the file would grow past this size; 0 never rotates")
    backups: int = setting(integer(0, MAX_BACKUPS), default=3,
                           doc="rotated files kept as <path>.1 .. <path>.N")
    internal_metrics: bool = setting(boolean, default=True,
                                     doc="also write gatescope's own gatescope/... views")
    fsync: bool = setting(boolean, default=False,
                          doc="fsync after every write, for files that must survive a crash")

    def validate(self, path: str, problems: Problems, present: frozenset[str]) -> None:
        """Rules that involve more than one key."""
        if not self.spans and not self.metrics:
            problems.add(path, 'nothing to write: "spans" and "metrics" are both false')
        if "backups" in present and self.max_bytes == 0:
            problems.add(f"{path}.backups", 'has no effect without "max_bytes"')
