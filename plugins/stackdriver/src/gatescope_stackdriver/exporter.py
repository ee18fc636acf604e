"""The `stackdriver` exporter: Cloud Trace v2 BatchWriteSpans and Cloud Monitoring v3 time series."""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

from gatescope.exporter import METRICS, TRACES, BaseExporter, ExporterContext
from gatescope.metrics import MetricsSnapshot
from gatescope.pipeline import ExportError
from gatescope.spans import SpanRecord

from gatescope_stackdriver import credentials, metrics, traces
from gatescope_stackdriver.config import StackdriverConfig

SPANS_PER_CALL = 1000  # keeps a BatchWriteSpans request well under the API's request-size limit


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _export_error(what: str, exc: Exception) -> ExportError:
    from google.api_core import exceptions

    retryable = isinstance(exc, (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded,
                                 exceptions.InternalServerError, exceptions.TooManyRequests,
                                 exceptions.Aborted, exceptions.Cancelled, exceptions.Unknown))
    return ExportError(f"stackdriver {what} failed: {type(exc).__name__}: {exc}", retryable)


class StackdriverExporter(BaseExporter):
    """Spans to Cloud Trace, view rows to Cloud Monitoring, with Google's client libraries."""

    name: ClassVar[str] = "stackdriver"
    config_class: ClassVar[type] = StackdriverConfig
    signals: ClassVar[frozenset[str]] = frozenset({TRACES, METRICS})
    default_period: ClassVar[float] = 60.0  # Cloud Monitoring accepts a point per minute per series
    config: StackdriverConfig

    def __init__(self, config: StackdriverConfig, context: ExporterContext) -> None:
        super().__init__(config, context)
        self.project = ""
        self._trace: Any = None
        self._monitoring: Any = None
        self._channel: Any = None
        self._descriptors: dict[str, int] = {}  # view name -> value type created remotely
        self._lock = threading.Lock()
        self._agent = f"gatescope-stackdriver {_version('gatescope-stackdriver')}"

    def start(self) -> None:
        from google.cloud import monitoring_v3, trace_v2

        self.project, creds = credentials.resolve(self.config)
        target = self.config.target
        if target is not None:
            import grpc
            from google.cloud.monitoring_v3.services.metric_service.transports import (
                MetricServiceGrpcTransport,
            )
            from google.cloud.trace_v2.services.trace_service.transports import (
                TraceServiceGrpcTransport,
            )

            self._channel = grpc.insecure_channel(target)
            self._trace = trace_v2.TraceServiceClient(
                transport=TraceServiceGrpcTransport(channel=self._channel))
            self._monitoring = monitoring_v3.MetricServiceClient(
                transport=MetricServiceGrpcTransport(channel=self._channel))
        else:
            self._trace = trace_v2.TraceServiceClient(credentials=creds)
            self._monitoring = monitoring_v3.MetricServiceClient(credentials=creds)

    def shutdown(self, timeout: float) -> None:
        for client in (self._trace, self._monitoring):
            if client is not None:
                client.transport.close()
        self._trace = self._monitoring = None

    # --- traces ---------------------------------------------------------------------------------

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        from google.cloud import trace_v2

        client = self._trace
        if client is None:
            raise ExportError("stackdriver exporter is not started", retryable=False)
        span_class = trace_v2.Span.pb()
        for chunk in metrics.chunks(spans, SPANS_PER_CALL):
            request = trace_v2.BatchWriteSpansRequest(
                name=f"projects/{self.project}",
                spans=traces.spans_to_proto(span_class, self.project, chunk, self._agent))
            try:
                client.batch_write_spans(request=request, retry=None,
                                         timeout=self.context.export_timeout)
            except Exception as exc:
                raise _export_error("BatchWriteSpans", exc) from None

    # --- metrics --------------------------------------------------------------------------------

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        from google.api import metric_pb2
        from google.cloud import monitoring_v3

        client = self._monitoring
        if client is None:
            raise ExportError("stackdriver exporter is not started", retryable=False)
        labels = self.config.labels
        series: list[Any] = []
        failures: list[ExportError] = []
        for data in snapshot.views:
            if not data.rows:
                continue
            kind = self._ensure_descriptor(client, metric_pb2.MetricDescriptor, data, failures)
            if kind is not None:
                series.extend(metrics.time_series(monitoring_v3.TimeSeries.pb(), data,
                                                  snapshot.time_ns, labels, kind))
        for chunk in metrics.chunks(series, metrics.MAX_SERIES_PER_CALL):
            request = monitoring_v3.CreateTimeSeriesRequest(
                name=f"projects/{self.project}", time_series=list(chunk))
            try:
                client.create_time_series(request=request, retry=None,
                                          timeout=self.context.export_timeout)
            except Exception as exc:  # the other chunks still go out; report all at the end
                failures.append(_export_error("CreateTimeSeries", exc))
        if failures:
            raise ExportError("; ".join(str(f) for f in failures),
                              any(f.retryable for f in failures))

    def _ensure_descriptor(self, client: Any, descriptor_class: Any, data: Any,
                           failures: list[ExportError]) -> int | None:
        """The view's value type once its descriptor exists remotely (created on first sight)."""
        from google.api_core import exceptions
        from google.cloud import monitoring_v3

        with self._lock:
            known = self._descriptors.get(data.view.name)
        if known is not None:
            return known
        kind = metrics.value_type(data)
        descriptor = metrics.descriptor(descriptor_class, self.project,
                                        self.config.effective_metric_prefix, data,
                                        self.config.labels, kind)
        request = monitoring_v3.CreateMetricDescriptorRequest(
            name=f"projects/{self.project}", metric_descriptor=descriptor)
        try:
            client.create_metric_descriptor(request=request, retry=None,
                                            timeout=self.context.export_timeout)
        except exceptions.AlreadyExists:
            pass
        except Exception as exc:
            failures.append(_export_error(f"CreateMetricDescriptor {descriptor.type}", exc))
            return None
        with self._lock:
            self._descriptors[data.view.name] = kind
        return kind
