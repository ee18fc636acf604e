"""The exporter contract: what a plugin implements and what the core hands it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs

from gatescope.metrics import MetricsSnapshot
from gatescope.spans import SpanRecord

TRACES = "traces"
METRICS = "metrics"


class ExporterStartError(RuntimeError):
    """Raised by `start()` when an exporter cannot run (port taken, bad credentials, ...)."""


@attrs.frozen
class ExporterContext:
    """Service facts the core gives every exporter at construction."""

    service_name: str
    reporting_period: int  # as configured; <= 0 means "the exporter's own default"
    logger: logging.Logger
    metrics: Callable[[], MetricsSnapshot]  # pull exporters read snapshots through this
    stats_tag_options: Any = None  # the TagOptions in force (KrakenD's prometheus tag_*)
    export_timeout: float = 10.0  # seconds any one network call of an export may take

    def period(self, default: float) -> float:
        """Seconds between pushes for this exporter (KrakenD: `<= 0` = exporter default)."""
        return float(self.reporting_period) if self.reporting_period > 0 else default


@runtime_checkable
class Exporter(Protocol):
    """One exporter instance, created once per configured `exporters.<name>` section."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    signals: ClassVar[frozenset[str]]  # subset of {TRACES, METRICS}

    def start(self) -> None: ...

    def export_spans(self, spans: Sequence[SpanRecord]) -> None: ...

    def export_metrics(self, snapshot: MetricsSnapshot) -> None: ...

    def shutdown(self, timeout: float) -> None: ...


class BaseExporter:
    """Convenience base: no-op hooks, `self.config`, `self.context`, `self.log`."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    signals: ClassVar[frozenset[str]] = frozenset()
    #: push exporters get `export_metrics` every period; pull exporters (prometheus) set False
    pushes_metrics: ClassVar[bool] = True
    #: seconds between pushes when `reporting_period <= 0`
    default_period: ClassVar[float] = 10.0
    #: False keeps it in the serving process under `export_process` (it writes to this
    #: process's logging or reads its live state)
    offloadable: ClassVar[bool] = True

    def __init__(self, config: Any, context: ExporterContext) -> None:
        self.config = config
        self.context = context
        self.log = context.logger

    def start(self) -> None:
        return None

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        return None

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        return None

    def shutdown(self, timeout: float) -> None:
        return None


class RateLimitedLog:
    """Logs a recurring failure once per interval with a count, never a payload."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: Any) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += f" ({suppressed} similar messages suppressed)"
        self._logger.warning(message, *args)
        return True
