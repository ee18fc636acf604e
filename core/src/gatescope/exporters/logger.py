"""The built-in `logger` exporter, registered through the same hook as any third-party plugin."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import attrs

from gatescope.exporter import METRICS, TRACES, BaseExporter
from gatescope.hookspecs import hookimpl
from gatescope.metrics import DistributionValue, MetricsSnapshot
from gatescope.settings import Problems, boolean, setting
from gatescope.spans import STATUS_NAMES, SpanRecord


@attrs.frozen
class LoggerConfig:
    spans: bool | None = setting(boolean, default=None, doc="log every finished span")
    stats: bool | None = setting(boolean, default=None, doc="log every view row each period")

    def validate(self, path: str, problems: Problems, present: frozenset[str]) -> None:
        return None

    @property
    def log_spans(self) -> bool:
        # Neither key set: KrakenD's behaviour (it logged both); otherwise what is asked.
        return bool(self.spans) or (self.spans is None and self.stats is None)

    @property
    def log_stats(self) -> bool:
        return bool(self.stats) or (self.spans is None and self.stats is None)


class LoggerExporter(BaseExporter):
    """Writes spans and view rows to the `gatescope.logger` log, one line each."""

    name: ClassVar[str] = "logger"
    config_class: ClassVar[type] = LoggerConfig
    signals: ClassVar[frozenset[str]] = frozenset({TRACES, METRICS})
    offloadable: ClassVar[bool] = False  # its lines belong in the application's own logging
    config: LoggerConfig

    def __init__(self, config: LoggerConfig, context: Any) -> None:
        super().__init__(config, context)
        self.out = logging.getLogger("gatescope.logger")
        if not config.log_spans:
            self.signals = frozenset({METRICS})  # type: ignore[misc]
        if not config.log_stats:
            self.signals = self.signals - {METRICS}  # type: ignore[misc]

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        emit: Callable[..., None] = self.out.info
        for span in spans:
            emit(
                "[SPAN] %s trace_id=%s span_id=%s parent=%s kind=%s duration_ms=%.3f status=%s "
                "attributes=%s",
                span.name, span.trace_id, span.span_id, span.parent_span_id or "-",
                ("unspecified", "server", "client")[span.kind] if 0 <= span.kind < 3 else span.kind,
                span.duration_ns / 1e6, STATUS_NAMES.get(span.status_code, span.status_code),
                json.dumps(span.attributes, sort_keys=True, default=str),
            )

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        for data in snapshot.views:
            for key, value in data.rows.items():
                tags = json.dumps(data.tags(key), sort_keys=True)
                if isinstance(value, DistributionValue):
                    rendered = (f"count={value.count} sum={value.sum:g} min={value.min:g} "
                                f"max={value.max:g} mean={value.mean:g}")
                else:
                    rendered = f"value={value}"
                self.out.info("[VIEW] %s tags=%s %s", data.view.name, tags, rendered)


@hookimpl
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    register(LoggerExporter)
