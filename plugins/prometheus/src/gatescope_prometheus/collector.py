"""gatescope snapshots as Prometheus metric families, named and shaped as KrakenD's exporter."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from decimal import Decimal

from gatescope.metrics import (
    DISTRIBUTION,
    LAST_VALUE,
    DistributionValue,
    MetricsSnapshot,
    ViewData,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
NAME_LIMIT = 100  # OpenCensus truncates label keys to 100 characters


def sanitize(name: str) -> str:
    """OpenCensus' Go sanitizer: `[^A-Za-z0-9_]` -> `_`, `key` prefix for a digit or `_` start."""
    if not name:
        return name
    name = _UNSAFE.sub("_", name[:NAME_LIMIT])
    if name[0].isdigit():
        name = "key_" + name
    elif name[0] == "_":
        name = "key" + name
    return name


def metric_name(namespace: str, view_name: str) -> str:
    """KrakenD's name: `<namespace>_` (when set) + the sanitized view name."""
    return (namespace + "_" if namespace else "") + sanitize(view_name)


def go_float(value: float) -> str:
    """A bound as Go's client renders `le` (strconv 'g', shortest): 1, 2.5, 1.048576e+06."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # decimal point position within the digit string
    power = point - 1
    prefix = "-" if sign else ""
    if power < -4 or power >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return prefix + text + "0" * (point - len(text))
    return f"{prefix}{text[:point]}.{text[point:]}"


class SnapshotCollector:
    """A prometheus-client custom collector reading one gatescope snapshot per scrape."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot], namespace: str = "") -> None:
        self._snapshot = snapshot
        self._namespace = namespace
        self._bounds: dict[tuple[float, ...], list[str]] = {}

    def collect(self) -> Iterator[Metric]:
        for data in self._snapshot().views:
            yield self.family(data)

    def family(self, data: ViewData) -> Metric:
        view = data.view
        labels = [sanitize(key) for key in view.tag_keys]
        name = sanitize(view.name) if view.internal else metric_name(self._namespace, view.name)
        if view.aggregation == DISTRIBUTION:
            return self._histogram(name, data, labels)
        if view.internal and view.aggregation == LAST_VALUE:
            gauge = GaugeMetricFamily(name, view.description, labels=labels)
            for key, value in data.rows.items():
                gauge.add_metric(list(key), float(value))  # type: ignore[arg-type]
            return gauge
        if view.internal:
            counter = CounterMetricFamily(name, view.description, labels=labels)
            for key, value in data.rows.items():
                counter.add_metric(list(key), float(value))  # type: ignore[arg-type]
            return counter
        # KrakenD's Go exporter types counts as `counter` but keeps the name without `_total`;
        # `untyped` keeps the exact sample names and is valid text format (promtool-clean).
        family = Metric(name, view.description, "gauge" if view.aggregation == LAST_VALUE
                        else "unknown")
        for key, value in data.rows.items():
            family.samples.append(Sample(name, dict(zip(labels, key, strict=True)),
                                         float(value), None, None))  # type: ignore[arg-type]
        return family

    def _histogram(self, name: str, data: ViewData, labels: list[str]) -> HistogramMetricFamily:
        bounds = data.view.bounds
        rendered = self._bounds.get(bounds)
        if rendered is None:
            rendered = self._bounds[bounds] = [go_float(b) for b in bounds]
        family = HistogramMetricFamily(name, data.view.description, labels=labels)
        for key, value in data.rows.items():
            assert isinstance(value, DistributionValue)
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(rendered, value.bucket_counts, strict=False):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            buckets.append(("+Inf", float(value.count)))
            family.add_metric(list(key), buckets, value.sum)
        return family


def runtime_registry() -> CollectorRegistry:
    """Process and Python runtime metrics, as KrakenD serves `process_*` and `go_*`."""
    from prometheus_client.gc_collector import GCCollector
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def build_registry(snapshot: Callable[[], MetricsSnapshot], namespace: str) -> CollectorRegistry:
    """A registry with gatescope's views (for users serving them from their own endpoint)."""
    registry = runtime_registry()
    registry.register(SnapshotCollector(snapshot, namespace))  # type: ignore[arg-type]
    return registry
