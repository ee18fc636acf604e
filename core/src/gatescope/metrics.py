"""What stats exporters receive: view descriptions and immutable snapshots of their rows."""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

COUNT = "count"
DISTRIBUTION = "distribution"
SUM = "sum"
LAST_VALUE = "lastvalue"

SIZE_BOUNDS: tuple[float, ...] = (
    1024, 2048, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
    268435456, 1073741824, 4294967296,
)
LATENCY_BOUNDS: tuple[float, ...] = (
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300,
    400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)
OVERFLOW_TAG_VALUE = "__gatescope_overflow__"

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def sanitize(name: str) -> str:
    """KrakenD/OpenCensus metric-name sanitizing: anything outside [A-Za-z0-9_] becomes `_`."""
    return _UNSAFE.sub("_", name)


@attrs.frozen
class View:
    """A view as OpenCensus defines it: measure + aggregation + tag keys."""

    name: str
    description: str
    unit: str  # "1", "By", "ms"
    aggregation: str  # COUNT | DISTRIBUTION | SUM | LAST_VALUE
    tag_keys: tuple[str, ...] = ()
    bounds: tuple[float, ...] = ()
    measure: str = ""
    internal: bool = False  # gatescope's self-telemetry, not a KrakenD view

    def bucket_index(self, value: float) -> int:
        """OpenCensus rule: the first bucket whose bound is greater than the value."""
        from bisect import bisect_right

        return bisect_right(self.bounds, value)


@attrs.frozen
class DistributionValue:
    count: int
    sum: float
    min: float
    max: float
    sum_of_squared_deviation: float
    bucket_counts: tuple[int, ...]

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    @classmethod
    def from_sums(cls, count: int, total: float, sum_of_squares: float, low: float, high: float,
                  buckets: tuple[int, ...]) -> DistributionValue:
        """The value of a row kept as running sums (in memory or in worker files): an empty one
        has no min, max or spread. Made without `__init__`: a scrape makes one per histogram
        row (6,000 at 1,000 tag sets), and a frozen class's `__init__` pays a `__setattr__`
        call per field, twice what setting the slots directly costs."""
        value = _new(cls)
        _set_count(value, count)
        _set_sum(value, total)
        _set_buckets(value, buckets)
        if count:
            _set_min(value, low)
            _set_max(value, high)
            _set_spread(value, max(0.0, sum_of_squares - total * total / count))
        else:
            _set_min(value, 0.0)
            _set_max(value, 0.0)
            _set_spread(value, 0.0)
        return value


_new = object.__new__
_set_count, _set_sum, _set_min, _set_max, _set_spread, _set_buckets = (
    DistributionValue.__dict__[name].__set__ for name in (  # the slots' own setters
        "count", "sum", "min", "max", "sum_of_squared_deviation", "bucket_counts"))


Value = int | float | DistributionValue


@attrs.frozen
class ViewData:
    """Cumulative rows of one view since `start_ns`, keyed by tag values in `view.tag_keys` order."""

    view: View
    start_ns: int
    rows: Mapping[tuple[str, ...], Value]

    def tags(self, key: tuple[str, ...]) -> dict[str, str]:
        return dict(zip(self.view.tag_keys, key, strict=True))


@attrs.frozen
class MetricsSnapshot:
    """A consistent, cumulative picture of every view at `time_ns`."""

    time_ns: int
    views: tuple[ViewData, ...]

    def view(self, name: str) -> ViewData | None:
        for data in self.views:
            if data.view.name == name:
                return data
        return None
