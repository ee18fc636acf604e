"""gatescope's SpanRecord and MetricsSnapshot as OTLP protobuf requests (no OpenTelemetry SDK)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from gatescope.metrics import COUNT, DISTRIBUTION, LAST_VALUE, DistributionValue, MetricsSnapshot, ViewData
from gatescope.spans import KIND_CLIENT, KIND_SERVER, OK, STATUS_NAMES, AttributeValue, SpanRecord
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

# OpenCensus kinds to OTLP; OpenCensus "unspecified" spans are in-process work (the pipe layer),
# which OTLP calls INTERNAL (as OpenTelemetry's OpenCensus bridge maps them).
SPAN_KINDS = {KIND_SERVER: Span.SPAN_KIND_SERVER, KIND_CLIENT: Span.SPAN_KIND_CLIENT}


def any_value(value: AttributeValue) -> AnyValue:
    """A typed OTLP value; bool is tested before int because bool is an int in Python."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def key_values(attributes: Mapping[str, AttributeValue]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attributes.items()]


def status(span: SpanRecord) -> Status:
    """OK, or ERROR with the canonical code's name (and the span's own message when it adds one)."""
    if span.status_code == OK:
        return Status(code=Status.STATUS_CODE_OK)
    name = STATUS_NAMES.get(span.status_code, f"CODE_{span.status_code}")
    message = span.status_message
    text = name if not message or message == name else f"{name}: {message}"
    return Status(code=Status.STATUS_CODE_ERROR, message=text)


def span(record: SpanRecord) -> Span:
    return Span(
        trace_id=bytes.fromhex(record.trace_id),
        span_id=bytes.fromhex(record.span_id),
        parent_span_id=bytes.fromhex(record.parent_span_id) if record.parent_span_id else b"",
        name=record.name,
        kind=SPAN_KINDS.get(record.kind, Span.SPAN_KIND_INTERNAL),
        start_time_unix_nano=record.start_ns,
        end_time_unix_nano=record.end_ns,
        attributes=key_values(record.attributes),
        status=status(record),
    )


class Translator:
    """Builds export requests that all carry the same resource and instrumentation scope."""

    def __init__(self, resource: Mapping[str, str], scope_name: str, scope_version: str,
                 fallback_start_ns: int = 0) -> None:
        self.resource = Resource(attributes=key_values(resource))
        self.scope = InstrumentationScope(name=scope_name, version=scope_version)
        self.fallback_start_ns = fallback_start_ns  # for views that carry no start time

    def traces(self, records: Sequence[SpanRecord]) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource=self.resource,
            scope_spans=[ScopeSpans(scope=self.scope, spans=[span(r) for r in records])],
        )])

    def metrics(self, snapshot: MetricsSnapshot,
                views: Iterable[ViewData] | None = None) -> ExportMetricsServiceRequest:
        """One metric per view that has rows; cumulative since the view's start."""
        converted = [m for data in (snapshot.views if views is None else views)
                     if data.rows for m in [self.metric(data, snapshot.time_ns)]]
        if not converted:
            return ExportMetricsServiceRequest()
        return ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
            resource=self.resource, scope_metrics=[ScopeMetrics(scope=self.scope, metrics=converted)],
        )])

    def metric(self, data: ViewData, time_ns: int) -> Metric:
        view = data.view
        start = data.start_ns or self.fallback_start_ns
        metric = Metric(name=view.name, description=view.description, unit=view.unit)
        if view.aggregation == DISTRIBUTION:
            metric.histogram.CopyFrom(Histogram(
                aggregation_temporality=AGGREGATION_TEMPORALITY_CUMULATIVE,
                data_points=[self._histogram_point(data, key, value, start, time_ns)
                             for key, value in data.rows.items()
                             if isinstance(value, DistributionValue)],
            ))
            return metric
        points = [self._number_point(data, key, value, start, time_ns)
                  for key, value in data.rows.items() if not isinstance(value, DistributionValue)]
        if view.aggregation == LAST_VALUE:
            metric.gauge.CopyFrom(Gauge(data_points=points))
        else:  # cumulative totals; only a count is sure never to go down (a sum may add negatives)
            metric.sum.CopyFrom(Sum(aggregation_temporality=AGGREGATION_TEMPORALITY_CUMULATIVE,
                                    is_monotonic=view.aggregation == COUNT, data_points=points))
        return metric

    @staticmethod
    def _number_point(data: ViewData, key: tuple[str, ...], value: float, start: int,
                      time_ns: int) -> NumberDataPoint:
        point = NumberDataPoint(attributes=key_values(data.tags(key)), time_unix_nano=time_ns)
        if data.view.aggregation != LAST_VALUE:
            point.start_time_unix_nano = start
        if isinstance(value, int):
            point.as_int = value
        else:
            point.as_double = value
        return point

    @staticmethod
    def _histogram_point(data: ViewData, key: tuple[str, ...], value: DistributionValue,
                         start: int, time_ns: int) -> HistogramDataPoint:
        point = HistogramDataPoint(
            attributes=key_values(data.tags(key)), start_time_unix_nano=start,
            time_unix_nano=time_ns, count=value.count, sum=value.sum,
            bucket_counts=list(value.bucket_counts), explicit_bounds=list(data.view.bounds),
        )
        if value.count:
            point.min = value.min
            point.max = value.max
        return point

