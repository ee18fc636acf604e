"""View data as InfluxDB 1.x line protocol, in the shape KrakenD's influxdb exporter wrote."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from decimal import Decimal

from gatescope.metrics import COUNT, DistributionValue, MetricsSnapshot, ViewData

FieldValue = int | float

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n", "\r": "\\r"})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n", "\r": "\\r"})
OVERFLOW_BUCKET = "+Inf"


def escape_measurement(name: str) -> str:
    """Commas and spaces are escaped in measurements (line-protocol spec)."""
    return _no_trailing_backslash(name).translate(_MEASUREMENT_ESCAPES)


def escape_key(text: str) -> str:
    """Commas, equals signs and spaces are escaped in tag keys, tag values and field keys."""
    return _no_trailing_backslash(text).translate(_KEY_ESCAPES)


def _no_trailing_backslash(text: str) -> str:
    # InfluxDB 1.x takes a separator preceded by a backslash as escaped and has no escape for a
    # backslash itself, so a name cannot end in one: it is dropped rather than break the line.
    return text.rstrip("\\") if text.endswith("\\") else text


def format_float(value: float) -> str:
    """Shortest round-tripping decimal without an exponent, as Go's FormatFloat(v, 'f', -1)."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def format_bound(bound: float) -> str:
    """A bucket's tag: KrakenD's `%.0f` for whole bounds, the exact value for fractional ones."""
    return f"{bound:.0f}" if float(bound).is_integer() else format_float(float(bound))


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue],
         timestamp: int) -> str | None:
    """One point; tags sorted, empty tag values left out; None when no field is writable."""
    rendered: list[str] = []
    for key in sorted(fields):
        value = fields[key]
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = f"{value}i"
        elif math.isfinite(value):
            text = format_float(value)
        else:
            continue  # NaN and infinities are not representable in line protocol
        rendered.append(f"{escape_key(key)}={text}")
    if not rendered:
        return None
    head = escape_measurement(measurement)
    tag_part = "".join(
        f",{escape_key(k)}={escape_key(tags[k])}" for k in sorted(tags) if k and tags[k]
    )
    return f"{head}{tag_part} {','.join(rendered)} {timestamp}"


def view_lines(data: ViewData, instance: str, timestamp: int) -> Iterator[str]:
    """Every row of one view: the row point plus one `<view>_buckets` point per non-empty bucket."""
    view = data.view
    for key, value in data.rows.items():
        tags = data.tags(key)
        tags["instance"] = instance
        fields: dict[str, FieldValue]
        if isinstance(value, DistributionValue):
            fields = {"sum": float(value.sum), "count": int(value.count), "max": float(value.max),
                      "min": float(value.min), "mean": float(value.mean)}
        elif view.aggregation == COUNT:
            fields = {"count": int(value)}
        elif view.aggregation == "sum":
            fields = {"sum": float(value)}
        else:
            fields = {"last": float(value)}
        point = line(view.name, tags, fields, timestamp)
        if point is not None:
            yield point
        if isinstance(value, DistributionValue):
            yield from _bucket_lines(data, tags, value, timestamp)


def _bucket_lines(data: ViewData, row_tags: dict[str, str], value: DistributionValue,
                  timestamp: int) -> Iterator[str]:
    bounds = data.view.bounds
    measurement = data.view.name + "_buckets"
    for index, count in enumerate(value.bucket_counts):
        if not count:
            continue
        bucket = format_bound(bounds[index]) if index < len(bounds) else OVERFLOW_BUCKET
        point = line(measurement, {**row_tags, "bucket": bucket}, {"count": int(count)}, timestamp)
        if point is not None:
            yield point


def snapshot_lines(snapshot: MetricsSnapshot, instance: str) -> list[str]:
    """Every non-empty view of a snapshot, timestamped in seconds (KrakenD's precision)."""
    timestamp = snapshot.time_ns // 1_000_000_000
    out: list[str] = []
    for data in snapshot.views:
        if data.rows:
            out.extend(view_lines(data, instance, timestamp))
    return out
