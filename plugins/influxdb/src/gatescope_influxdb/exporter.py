"""The `influxdb` exporter: every period, the views as points, written with a bounded retry buffer."""

from __future__ import annotations

import threading
from collections import deque
from typing import ClassVar

from gatescope import METRICS, BaseExporter, ExporterContext, ExportError, ExporterStartError
from gatescope.metrics import MetricsSnapshot

from gatescope_influxdb.config import InfluxDBConfig
from gatescope_influxdb.lineprotocol import snapshot_lines
from gatescope_influxdb.writer import Failure, InfluxWriter, WriteError

#: points per HTTP request; InfluxDB's own docs suggest 5000
CHUNK_POINTS = 5000


class InfluxDBExporter(BaseExporter):
    """Writes KrakenD's influxdb measurements; keeps unsent points (oldest dropped first)."""

    name: ClassVar[str] = "influxdb"
    config_class: ClassVar[type] = InfluxDBConfig
    signals: ClassVar[frozenset[str]] = frozenset({METRICS})
    default_period: ClassVar[float] = 15.0  # KrakenD's influxdb exporter default
    config: InfluxDBConfig

    def __init__(self, config: InfluxDBConfig, context: ExporterContext) -> None:
        super().__init__(config, context)
        self.writer = InfluxWriter(config.address, config.db, config.username, config.password)
        self.timeout = config.request_timeout(context.export_timeout)
        self.capacity = config.buffer_points
        self._lock = threading.Lock()
        self._pending: deque[str] = deque()
        self._reported: Failure | None = None  # the lasting failure already logged, if any
        self.points_written = 0
        self.points_dropped = 0  # pushed out of the full buffer or rejected by InfluxDB
        self.failed_writes = 0

    def start(self) -> None:
        if not self.config.db:
            raise ExporterStartError("exporter 'influxdb': db is empty; every write would fail "
                                     "(InfluxDB: database is required)")
        if self.config.password and not self.config.username:
            self.log.warning("gatescope: influxdb: password is set but username is empty; "
                             "writes are sent without credentials")
        if self.config.ping:
            try:
                self.writer.ping(self.timeout)
            except WriteError as exc:
                raise ExporterStartError(f"exporter 'influxdb': ping failed: {exc}") from None

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        lines = snapshot_lines(snapshot, self.config.service_name)
        with self._lock:
            self._enqueue(lines)
            self._drain()

    def shutdown(self, timeout: float) -> None:
        with self._lock:
            left = len(self._pending)
            self._pending.clear()
        if left:
            self.log.warning("gatescope: influxdb: %d points were not delivered before shutdown",
                             left)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._pending = deque()  # the parent's points are the parent's to send

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _enqueue(self, lines: list[str]) -> None:
        self._pending.extend(lines)
        overflow = len(self._pending) - self.capacity
        if overflow > 0:
            for _ in range(overflow):
                self._pending.popleft()
            self.points_dropped += overflow
            self.log.warning("gatescope: influxdb: retry buffer full (%d points); dropped the %d "
                             "oldest (%d dropped so far)", self.capacity, overflow,
                             self.points_dropped)

    def _drain(self) -> None:
        while self._pending:
            chunk = [self._pending[i] for i in range(min(CHUNK_POINTS, len(self._pending)))]
            try:
                self.writer.write(chunk, self.timeout)
            except WriteError as exc:
                self.failed_writes += 1
                self._on_failure(exc, len(chunk))
                return
            for _ in chunk:
                self._pending.popleft()
            self.points_written += len(chunk)
            if self._reported is not None:
                self.log.warning("gatescope: influxdb: writes to %s succeed again", self.config.address)
                self._reported = None

    def _on_failure(self, exc: WriteError, chunk_size: int) -> None:
        if exc.failure is Failure.REJECTED:
            for _ in range(chunk_size):
                self._pending.popleft()
            self.points_dropped += chunk_size  # a partial write does not say how many were kept
            raise ExportError(f"{exc}; {chunk_size} points not retried", retryable=False)
        if exc.failure is Failure.TRANSIENT:
            raise ExportError(f"{exc}; {len(self._pending)} points kept for the next period")
        # Lasting misconfiguration: say it once, clearly, then stay quiet until it is fixed.
        if self._reported is not exc.failure:
            self._reported = exc.failure
            self.log.error("gatescope: influxdb: %s. Points are kept (up to %d) and retried every "
                           "period; this is reported once.", exc, self.capacity)

