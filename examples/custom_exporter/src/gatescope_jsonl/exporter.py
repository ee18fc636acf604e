"""The `jsonl` exporter: spans and metrics as JSON lines, written on gatescope's worker thread."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from gatescope import (
    METRICS,
    TRACES,
    BaseExporter,
    ExporterContext,
    ExportError,
    ExporterStartError,
    MetricsSnapshot,
    SpanRecord,
)

from gatescope_jsonl.config import JsonlConfig
from gatescope_jsonl.records import metric_lines, span_line
from gatescope_jsonl.writer import RotatingFile


class JsonlExporter(BaseExporter):
    """Appends one JSON object per span and per view row to a (rotating) file."""

    name: ClassVar[str] = "jsonl"
    config_class: ClassVar[type] = JsonlConfig
    signals: ClassVar[frozenset[str]] = frozenset({TRACES, METRICS})
    config: JsonlConfig

    def __init__(self, config: JsonlConfig, context: ExporterContext) -> None:
        super().__init__(config, context)
        # Only the signals asked for: the core then never queues spans for a metrics-only file.
        self.signals = frozenset(  # type: ignore[misc]
            signal for signal, wanted in ((TRACES, config.spans), (METRICS, config.metrics))
            if wanted
        )
        self.file = RotatingFile(config.path, config.max_bytes, config.backups, config.fsync)

    def start(self) -> None:
        try:
            self.file.open()
        except OSError as exc:
            raise ExporterStartError(
                f"jsonl: cannot open {self.config.path!r} for appending: {exc.strerror}"
            ) from exc

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        service = self.context.service_name
        self._write(span_line(span, service) for span in spans)

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        self._write(metric_lines(snapshot, self.context.service_name,
                                 self.config.internal_metrics))

    def _write(self, lines: Iterable[dict[str, Any]]) -> None:
        chunk = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        if not chunk:
            return
        try:
            self.file.write(chunk.encode())
        except OSError as exc:
            # A full disk or a vanished directory may recover: let the core retry with backoff.
            raise ExportError(f"jsonl: cannot write {self.config.path!r}: {exc.strerror}",
                              retryable=True) from exc

    def shutdown(self, timeout: float) -> None:
        self.file.close()

    def after_fork_in_child(self) -> None:
        # The child must not share the parent's handle (and its buffer and offset).
        self.file.reopen()
