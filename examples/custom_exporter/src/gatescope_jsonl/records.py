"""Spans and view rows as JSON-ready dicts: the one place that decides the line format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gatescope.metrics import DistributionValue, MetricsSnapshot
from gatescope.spans import KIND_CLIENT, KIND_SERVER, STATUS_NAMES, SpanRecord

KIND_NAMES = {KIND_SERVER: "server", KIND_CLIENT: "client"}


def span_line(span: SpanRecord, service: str) -> dict[str, Any]:
    """One finished span; times stay integer nanoseconds so nothing is rounded."""
    return {
        "type": "span",
        "service": service,
        "name": span.name,
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "kind": KIND_NAMES.get(span.kind, "unspecified"),
        "start_ns": span.start_ns,
        "end_ns": span.end_ns,
        "status": {
            "code": span.status_code,
            "name": STATUS_NAMES.get(span.status_code, str(span.status_code)),
            "message": span.status_message,
        },
        "attributes": dict(span.attributes),
    }


def metric_lines(snapshot: MetricsSnapshot, service: str,
                 internal: bool = True) -> Iterator[dict[str, Any]]:
    """One line per view row; distributions keep their bounds and every bucket count."""
    for data in snapshot.views:
        view = data.view
        if view.internal and not internal:
            continue
        for key, value in data.rows.items():
            line: dict[str, Any] = {
                "type": "metric",
                "service": service,
                "name": view.name,
                "unit": view.unit,
                "aggregation": view.aggregation,
                "start_ns": data.start_ns,
                "time_ns": snapshot.time_ns,
                "tags": data.tags(key),
            }
            if isinstance(value, DistributionValue):
                line["distribution"] = {
                    "count": value.count,
                    "sum": value.sum,
                    "min": value.min,
                    "max": value.max,
                    "bounds": list(view.bounds),
                    "bucket_counts": list(value.bucket_counts),
                }
            else:
                line["value"] = value
            yield line
