"""gatescope spans and metric snapshots as OpenCensus agent protocol messages."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from typing import Any

from gatescope.metrics import COUNT, DISTRIBUTION, LAST_VALUE, DistributionValue, MetricsSnapshot
from gatescope.spans import KIND_SERVER, SpanRecord

from gatescope_ocagent.protos import AgentProtos

LANGUAGE_PYTHON = 8  # opencensus.proto.agent.common.v1.LibraryInfo.Language.PYTHON
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# opencensus.proto.metrics.v1.MetricDescriptor.Type
GAUGE_INT64, GAUGE_DOUBLE = 1, 2
CUMULATIVE_INT64, CUMULATIVE_DOUBLE, CUMULATIVE_DISTRIBUTION = 4, 5, 6


def make_node(protos: AgentProtos, service_name: str, start_ns: int, exporter_version: str,
              core_version: str) -> Any:
    """The Node the agent needs on the first message of every stream."""
    node = protos.Node()
    node.identifier.host_name = socket.gethostname()
    node.identifier.pid = os.getpid()
    node.identifier.start_timestamp.FromNanoseconds(start_ns)
    node.library_info.language = LANGUAGE_PYTHON
    node.library_info.exporter_version = exporter_version
    node.library_info.core_library_version = core_version
    node.service_info.name = service_name
    return node


def span_to_proto(protos: AgentProtos, span: SpanRecord) -> Any:
    """One finished span, ids as raw bytes and times as Timestamps."""
    out = protos.Span()
    out.trace_id = bytes.fromhex(span.trace_id)
    out.span_id = bytes.fromhex(span.span_id)
    if span.parent_span_id:
        out.parent_span_id = bytes.fromhex(span.parent_span_id)
        # gatescope's server spans only ever have a parent taken from incoming headers.
        out.same_process_as_parent_span.value = span.kind != KIND_SERVER
    out.name.value = span.name
    out.kind = span.kind if span.kind in (0, 1, 2) else 0
    out.start_time.FromNanoseconds(span.start_ns)
    out.end_time.FromNanoseconds(max(span.end_ns, span.start_ns))
    attribute_map = out.attributes.attribute_map
    for key, value in span.attributes.items():
        set_attribute(attribute_map[key], value)
    out.status.code = span.status_code
    out.status.message = span.status_message
    return out


def set_attribute(target: Any, value: object) -> None:
    """Fill an AttributeValue with the matching oneof member (bool before int: bool is an int)."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    else:
        target.string_value.value = str(value)


def trace_request(protos: AgentProtos, node: Any, spans: Sequence[SpanRecord]) -> Any:
    request = protos.ExportTraceServiceRequest()
    if node is not None:  # only the first message of a stream carries the Node
        request.node.CopyFrom(node)
    request.spans.extend(span_to_proto(protos, span) for span in spans)
    return request


def _is_int(values: Iterable[object]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def descriptor_type(aggregation: str, values: Sequence[object]) -> int:
    """OpenCensus' metric type for a view's aggregation (int64 when every value is an integer)."""
    if aggregation == COUNT:
        return CUMULATIVE_INT64
    if aggregation == DISTRIBUTION:
        return CUMULATIVE_DISTRIBUTION
    if aggregation == LAST_VALUE:
        return GAUGE_INT64 if _is_int(values) else GAUGE_DOUBLE
    return CUMULATIVE_INT64 if _is_int(values) else CUMULATIVE_DOUBLE


def metrics_to_proto(protos: AgentProtos, snapshot: MetricsSnapshot) -> list[Any]:
    """Every view with rows as a Metric: descriptor, one time series per tag-value row."""
    metrics = []
    for data in snapshot.views:
        if not data.rows:
            continue
        view = data.view
        kind = descriptor_type(view.aggregation, list(data.rows.values()))
        metric = protos.Metric()
        descriptor = metric.metric_descriptor
        descriptor.name = view.name
        descriptor.description = view.description
        descriptor.unit = "1" if view.aggregation == COUNT else view.unit
        descriptor.type = kind
        for key in view.tag_keys:
            descriptor.label_keys.add(key=key)
        for tag_values, value in data.rows.items():
            series = metric.timeseries.add()
            if kind not in (GAUGE_INT64, GAUGE_DOUBLE):
                series.start_timestamp.FromNanoseconds(data.start_ns or snapshot.time_ns)
            for tag_value in tag_values:
                series.label_values.add(value=tag_value, has_value=True)
            point = series.points.add()
            point.timestamp.FromNanoseconds(snapshot.time_ns)
            _set_point(point, kind, value, view.bounds)
        metrics.append(metric)
    return metrics


def _set_point(point: Any, kind: int, value: object, bounds: Sequence[float]) -> None:
    if isinstance(value, DistributionValue):
        dist = point.distribution_value
        dist.count = value.count
        dist.sum = value.sum
        dist.sum_of_squared_deviation = value.sum_of_squared_deviation
        dist.bucket_options.explicit.bounds.extend(float(b) for b in bounds)
        for count in value.bucket_counts:
            dist.buckets.add(count=count)
    elif kind in (GAUGE_INT64, CUMULATIVE_INT64):
        point.int64_value = max(INT64_MIN, min(INT64_MAX, int(value)))  # type: ignore[call-overload]
    else:
        point.double_value = float(value)  # type: ignore[arg-type]


def metrics_request(protos: AgentProtos, node: Any, metrics: Sequence[Any]) -> Any:
    request = protos.ExportMetricsServiceRequest()
    if node is not None:
        request.node.CopyFrom(node)
    request.metrics.extend(metrics)
    return request
