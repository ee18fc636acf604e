"""gatescope snapshots as Cloud Monitoring metric descriptors and time series (Go exporter v0.7)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gatescope.metrics import COUNT, DISTRIBUTION, LAST_VALUE, DistributionValue, ViewData

METRIC_DOMAIN = "custom.googleapis.com/opencensus"
MAX_SERIES_PER_CALL = 200  # CreateTimeSeries accepts at most 200 time series per request
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# google.api.MetricDescriptor enums
CUMULATIVE, GAUGE = 3, 1
INT64, DOUBLE, DISTRIBUTION_VALUE = 2, 3, 5
LABEL_STRING = 0

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def sanitize_label(key: str) -> str:
    """The Go exporter's label-key rule: [A-Za-z0-9_], at most 100 chars, no leading digit/_."""
    key = _UNSAFE.sub("_", key)[:100]
    if key and key[0].isdigit():
        key = "key_" + key
    elif key.startswith("_"):
        key = "key" + key
    return key


def metric_type(view_name: str) -> str:
    """KrakenD's metric types: `custom.googleapis.com/opencensus/<view name>`."""
    return f"{METRIC_DOMAIN}/{view_name}"


def value_type(data: ViewData) -> int:
    aggregation = data.view.aggregation
    if aggregation == DISTRIBUTION:
        return DISTRIBUTION_VALUE
    if aggregation == COUNT:
        return INT64
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in data.rows.values())
    return INT64 if ints else DOUBLE


def descriptor(descriptor_class: Any, project: str, prefix: str, data: ViewData,
               default_labels: Mapping[str, str], kind_of_value: int) -> Any:
    """The MetricDescriptor the Go exporter created for a view before its first time series."""
    view = data.view
    out = descriptor_class()
    out.type = metric_type(view.name)
    out.name = f"projects/{project}/metricDescriptors/{out.type}"
    out.display_name = f"{prefix}/{view.name}"
    out.description = view.description
    out.unit = "1" if view.aggregation == COUNT else view.unit
    out.metric_kind = GAUGE if view.aggregation == LAST_VALUE else CUMULATIVE
    out.value_type = kind_of_value
    for key in [*default_labels, *view.tag_keys]:
        out.labels.add(key=sanitize_label(key), value_type=LABEL_STRING)
    return out


def time_series(series_class: Any, data: ViewData, end_ns: int,
                default_labels: Mapping[str, str], kind_of_value: int) -> Iterator[Any]:
    """One series per row, one point each (the API's rule for CreateTimeSeries)."""
    view = data.view
    gauge = view.aggregation == LAST_VALUE
    for tag_values, value in data.rows.items():
        series = series_class()
        series.metric.type = metric_type(view.name)
        for key, label in default_labels.items():
            series.metric.labels[sanitize_label(key)] = label
        for key, label in zip(view.tag_keys, tag_values, strict=True):
            series.metric.labels[sanitize_label(key)] = label
        series.resource.type = "global"
        series.metric_kind = GAUGE if gauge else CUMULATIVE
        series.value_type = kind_of_value
        point = series.points.add()
        point.interval.end_time.FromNanoseconds(end_ns)
        if not gauge:
            point.interval.start_time.FromNanoseconds(min(data.start_ns or end_ns, end_ns))
        _set_value(point.value, value, kind_of_value, view.bounds)
        yield series


def _set_value(target: Any, value: object, kind_of_value: int, bounds: Sequence[float]) -> None:
    if isinstance(value, DistributionValue):
        dist = target.distribution_value
        dist.count = value.count
        dist.mean = value.mean
        dist.sum_of_squared_deviation = value.sum_of_squared_deviation
        counts = list(value.bucket_counts)
        edges = [float(b) for b in bounds]
        if edges and edges[0] != 0.0:  # as the Go exporter: an explicit zero underflow bucket
            edges.insert(0, 0.0)
            counts.insert(0, 0)
        dist.bucket_options.explicit_buckets.bounds.extend(edges)
        dist.bucket_counts.extend(counts)
    elif kind_of_value == INT64:
        target.int64_value = max(INT64_MIN, min(INT64_MAX, int(value)))  # type: ignore[call-overload]
    else:
        target.double_value = float(value)  # type: ignore[arg-type]


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
