"""Stats rows shared by N worker processes: per-process mmap files, summed at snapshot time.

With `GATESCOPE_MULTIPROC_DIR` set, every process keeps its view rows in its own memory-mapped
file (`<pid>-<token>.gsdb`), each record written at once as a ring entry folded into the rows a
batch at a time (`gatescope.journal`), so nothing is lost when a worker is killed: the kernel
keeps the written pages. A snapshot sums the files of every process, live or dead. Files of dead
processes are compacted into `archive.json` under a directory lock; the archive lists the files
it absorbed, so a file is never counted twice even if its removal is interrupted.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from gatescope.metrics import COUNT, MetricsSnapshot, ViewData
from gatescope.statsfile import (
    ENV_DIR,
    SUFFIX,
    FileReader,
    ProcessFile,
    read_process_file,
    view_from_json,
    view_to_json,
)
from gatescope.totals import Totals

__all__ = ["ARCHIVE", "ENV_DIR", "SUFFIX", "Archive", "Directory", "ProcessFile", "PushLeadership",
           "Totals", "configured_directory", "directory_lock", "pid_alive", "read_process_file"]

ARCHIVE = "archive.json"
LOCK = ".lock"
PUSH_LOCK = "push.lock"  # flock held by the one process whose exporters push the summed totals

log = logging.getLogger("gatescope.multiproc")


def configured_directory() -> str | None:
    """The multi-process directory from the environment, or None for single-process mode."""
    return os.environ.get(ENV_DIR) or None


def pid_alive(pid: int) -> bool:
    """False only when no process has this pid (a reused pid reads as alive: never a loss)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def directory_lock(directory: str) -> Iterator[None]:
    """Serialise compaction and serving decisions across every process of the directory."""
    fd = os.open(os.path.join(directory, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class Archive:
    """Totals of dead processes plus the names of the files already absorbed."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, ARCHIVE)
        self._stamp: tuple[int, int, int] | None = None
        self.totals = Totals()
        self.absorbed: frozenset[str] = frozenset()

    def load(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self.totals, self.absorbed = None, Totals(), frozenset()
            return
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        with open(self.path, encoding="utf-8") as handle:
            doc = json.load(handle)
        totals = Totals()
        for view, start in doc["views"]:
            totals.add_view(view_from_json(view), int(start))
        for name, key, values in doc["rows"]:
            totals.add_row(name, tuple(key), values)
        self.totals, self.absorbed, self._stamp = totals, frozenset(doc["absorbed"]), stamp

    def absorb(self, names: list[str], dead: Totals) -> None:
        """Write archive + dead atomically (rename is the commit), then remove their files."""
        totals = Totals()
        totals.merge(self.totals)
        totals.merge(dead)
        doc = {
            "version": 1,
            "absorbed": sorted(self.absorbed | set(names)),
            "views": [[view_to_json(v), totals.start_ns[n]] for n, v in totals.views.items()],
            "rows": [[name, list(key), values] for name, rows in totals.explicit_rows().items()
                     for key, values in rows.items()],
        }
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, separators=(",", ":"))
        os.replace(temporary, self.path)
        self._stamp = None
        self.load()
        directory = os.path.dirname(self.path)
        for name in names:
            _remove(os.path.join(directory, name))


def _remove(path: str) -> None:
    with suppress(FileNotFoundError):
        os.remove(path)


class Directory:
    """Reads every process file of a directory into one set of totals."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.archive = Archive(path)
        self._readers: dict[str, FileReader] = {}  # by file name: what each one parsed so far

    def collect(self) -> Totals:
        """Sum live and dead processes; compact the dead ones into the archive."""
        with directory_lock(self.path):
            self.archive.load()
            totals = Totals()
            totals.merge(self.archive.totals)
            dead_names: list[str] = []
            dead = Totals()
            readers = self._readers
            self._readers = {}
            for entry in os.scandir(self.path):
                if not entry.name.endswith(SUFFIX):
                    continue
                if entry.name in self.archive.absorbed:
                    _remove(entry.path)  # absorbed earlier; its removal was interrupted
                    continue
                reader = self._readers[entry.name] = readers.get(entry.name) \
                    or FileReader(entry.path)
                pid = entry.name.split("-", 1)[0]
                alive = not pid.isdigit() or pid_alive(int(pid))
                try:
                    # A live worker's rows go straight into the sum; a dead one's to the archive too.
                    found = reader.read(totals if alive else None)
                except (OSError, ValueError) as exc:
                    log.warning("gatescope: skipping unreadable stats file %s: %s", entry.name, exc)
                    continue
                if not alive:
                    totals.merge(found)
                    dead_names.append(entry.name)
                    dead.merge(found)
            if dead_names:
                self.archive.absorb(dead_names, dead)
                for name in dead_names:
                    del self._readers[name]
        return totals


class PushLeadership:
    """One process per directory pushes metrics, since every process would push the same sums.

    The leader holds an exclusive `flock` for its lifetime; the OS releases it when the process
    dies, and the next process to try takes over. Each push's count totals are kept in the
    directory, so a new leader's delta exporters (DogStatsD) start where the last one stopped.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._fd: int | None = None

    def held(self) -> bool:
        """Whether this process leads, trying (without waiting) to become the leader if not."""
        if self._fd is not None:
            return True
        fd = os.open(os.path.join(self.directory, PUSH_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _pushed_path(self, exporter: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in exporter)
        return os.path.join(self.directory, f"pushed-{safe}.json")

    def remember(self, exporter: str, snapshot: MetricsSnapshot) -> None:
        """After a push: the count totals it carried (written whole, then renamed into place)."""
        counts = {data.view.name: [[list(key), value] for key, value in data.rows.items()
                                   if isinstance(value, int | float)]
                  for data in snapshot.views if data.view.aggregation == COUNT}
        path = self._pushed_path(exporter)
        with open(path + ".tmp", "w") as out:
            json.dump({"time_ns": snapshot.time_ns, "counts": counts}, out)
        os.replace(path + ".tmp", path)

    def last_pushed(self, exporter: str, current: MetricsSnapshot) -> MetricsSnapshot | None:
        """The count views as the last leader pushed them (shaped like `current`), if any."""
        try:
            with open(self._pushed_path(exporter)) as found:
                data = json.load(found)
        except (OSError, ValueError):
            return None
        counts = data.get("counts", {})
        views = tuple(ViewData(view.view, view.start_ns,
                               {tuple(key): value for key, value in counts[view.view.name]})
                      for view in current.views if view.view.name in counts)
        return MetricsSnapshot(int(data.get("time_ns", 0)), views)

    def reset_after_fork(self) -> None:
        """In a forked child: the inherited descriptor shares the parent's lock; drop it (the
        parent keeps leading) and compete afresh."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
