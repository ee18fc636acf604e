"""The `datadog` exporter: traces to the agent in batches, metrics to DogStatsD every period."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import ClassVar

from gatescope import METRICS, TRACES, BaseExporter, ExporterContext, ExportError, ExporterStartError
from gatescope.metrics import MetricsSnapshot
from gatescope.spans import SpanRecord

from gatescope_datadog.agent import AgentClient, AgentError, group_by_trace, payloads
from gatescope_datadog.config import DatadogConfig
from gatescope_datadog.dogstatsd import CountKey, StatsdSocket, datagrams, snapshot_lines
from gatescope_datadog.spans import PrioritySampler, to_dd_span


class DatadogExporter(BaseExporter):
    """KrakenD's datadog exporter: Datadog's Go OpenCensus exporter's span fields and metric names."""

    name: ClassVar[str] = "datadog"
    config_class: ClassVar[type] = DatadogConfig
    signals: ClassVar[frozenset[str]] = frozenset({TRACES, METRICS})
    default_period: ClassVar[float] = 10.0  # OpenCensus' default reporting period
    config: DatadogConfig

    def __init__(self, config: DatadogConfig, context: ExporterContext) -> None:
        super().__init__(config, context)
        self.agent = AgentClient(*config.agent)
        self.statsd = StatsdSocket(config.dogstatsd)
        self.sampler = PrioritySampler()
        self.timeout = context.export_timeout
        self._lock = threading.Lock()
        self._sent_counts: dict[CountKey, int] = {}
        self.traces_sent = 0
        self.lines_sent = 0
        self.lines_failed = 0

    def start(self) -> None:
        try:
            self.statsd.resolve()
        except OSError as exc:
            raise ExporterStartError(f"exporter 'datadog': cannot resolve stats_address "
                                     f"{self.statsd.where}: {exc}") from None

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        service, tags = self.config.service_name, self.config.global_tags
        converted = [to_dd_span(span, service, tags) for span in spans]
        for dd in converted:
            self.sampler.apply(dd)
        for body, count in payloads(group_by_trace(converted)):
            try:
                rates = self.agent.send(body, count, self.timeout)
            except AgentError as exc:
                raise ExportError(str(exc), retryable=exc.retryable) from None
            self.sampler.update(rates)
            self.traces_sent += count

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        with self._lock:
            lines = snapshot_lines(snapshot, self.config.namespace, self.config.tags,
                                   not self.config.disable_count_per_buckets, self._sent_counts)
            batches = list(datagrams(lines, self.statsd.limit))
            for index, batch in enumerate(batches):
                payload = "\n".join(line.text for line in batch).encode("utf-8")
                try:
                    self.statsd.send(payload, self.timeout)
                except (TimeoutError, OSError) as exc:
                    unsent = sum(len(b) for b in batches[index:])
                    self.lines_failed += unsent
                    raise ExportError(f"cannot send to DogStatsD at {self.statsd.where}: {exc}; "
                                      f"{unsent} metric lines not sent (count deltas carried over)"
                                      ) from None
                for line in batch:
                    if line.count_key is not None:
                        self._sent_counts[line.count_key] = line.count_total
                self.lines_sent += len(batch)

    def adopt_metrics_baseline(self, snapshot: MetricsSnapshot) -> None:
        """Taking over pushing from another worker (multi-process mode): its counts were sent
        already, so the next deltas start from these totals."""
        with self._lock:
            for line in snapshot_lines(snapshot, self.config.namespace, self.config.tags, False,
                                       self._sent_counts):
                if line.count_key is not None:
                    self._sent_counts[line.count_key] = line.count_total

    def shutdown(self, timeout: float) -> None:
        with self._lock:
            self.statsd.close()

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self.statsd.close()  # a socket shared with the parent would interleave datagrams
        self._sent_counts = {}
