"""Rows summed over worker files and the archive, and the values they export as.

A summed row is (count,) or (value,); a distribution's is (count, sum, sum of squares, min, max,
bucket counts as one int of lanes: `gatescope.lanes`), so that adding a worker's row is a few
additions whatever the number of buckets.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence

from gatescope import journal, lanes
from gatescope.metrics import COUNT, DISTRIBUTION, DistributionValue, View, ViewData

log = logging.getLogger("gatescope.multiproc")

Row = tuple[float, ...] | tuple[float, float, float, float, float, int]
Rows = dict[str, dict[tuple[str, ...], Row]]


class Totals:
    """Views and rows summed over any number of process files and the archive."""

    def __init__(self) -> None:
        self.views: dict[str, View] = {}
        self.start_ns: dict[str, int] = {}
        self.rows: Rows = {}

    def add_view(self, view: View, start_ns: int) -> None:
        self.views.setdefault(view.name, view)
        known = self.start_ns.get(view.name)
        self.start_ns[view.name] = start_ns if known is None else min(known, start_ns)

    def add_row(self, name: str, key: tuple[str, ...], values: Sequence[float]) -> None:
        """Add a row written out in full (as `explicit_rows` gives it): a count, or a
        distribution's five figures and its bucket counts."""
        sum_rows(self.rows.setdefault(name, {}), ((key, packed(values, False)),))

    def merge(self, other: Totals) -> None:
        for name, view in other.views.items():
            self.add_view(view, other.start_ns[name])
        for name, rows in other.rows.items():
            sum_rows(self.rows.setdefault(name, {}), rows.items())

    def explicit_rows(self) -> dict[str, dict[tuple[str, ...], list[float]]]:
        """Every row written out in full (bucket counts one by one), as the archive keeps them."""
        return {name: {key: list(values) if len(values) == 1 else
                       [*values[:5], *lanes.counts(int(values[5]), len(self.views[name].bounds) + 1)]
                       for key, values in rows.items()} for name, rows in self.rows.items()}

    def view_data(self, order: Sequence[View]) -> list[ViewData]:
        """ViewData for `order` first (this process's views), then views only other files had."""
        names = [v.name for v in order] + [n for n in self.views if n not in {v.name for v in order}]
        known = {v.name: v for v in order}
        out = []
        for name in names:
            view = known.get(name) or self.views[name]
            rows = self.rows.get(name, {})
            start = self.start_ns.get(name, 0)
            width = len(view.tag_keys)
            value = _value_of(view)
            kept = {key: value(values) for key, values in rows.items() if len(key) == width}
            if len(kept) != len(rows):
                log.warning("gatescope: %d rows of %s have other tag keys than this process "
                            "(workers sharing a multi-process directory run different "
                            "configs); not exported", len(rows) - len(kept), name)
            out.append(ViewData(view, start, kept))
        return out


def sum_rows(rows: dict[tuple[str, ...], Row],
             found: Iterable[tuple[tuple[str, ...], Row]]) -> None:
    """Rows (counts, or distributions) added to the rows of their keys in `rows`; rows are
    replaced, never changed in place (the first file's are kept as they were read)."""
    get = rows.get
    for key, values in found:
        current = get(key)
        rows[key] = values if current is None else add_rows(current, values)


def add_rows(current: Row, values: Row) -> Row:
    """Two rows of one view summed (a new row: summed rows may be shared, never changed)."""
    if len(values) != len(current):
        raise ValueError(f"a row of {len(values)} figures for one of {len(current)} elsewhere")
    if len(current) == 1:
        return (current[0] + values[0],)
    return (current[0] + values[0], current[1] + values[1], current[2] + values[2],
            min(current[3], values[3]), max(current[4], values[4]),
            current[5] + values[5])  # every bucket at once: `lanes`


def packed(values: Sequence[float], biased: bool) -> Row:
    """A row written out in full (a file's doubles, an archive's numbers) as `sum_rows` adds it."""
    if len(values) == 1:
        return (values[0],)
    first = journal.DIST_FIRST_BUCKET
    return (*values[:first], lanes.from_doubles(values[first:], len(values) - first, biased))


def _value_of(view: View) -> Callable[[Row], int | float | DistributionValue]:
    """How a summed row of `view` becomes its exported value."""
    if view.aggregation == COUNT:
        return _count
    if view.aggregation == DISTRIBUTION:
        return functools.partial(_distribution, len(view.bounds) + 1)
    return _first


def _count(values: Row) -> int:
    return int(values[0])


def _first(values: Row) -> float:
    return values[0]


def _distribution(width: int, values: Row) -> DistributionValue:
    buckets = lanes.counts(values[5], width)  # type: ignore[arg-type]
    # the buckets are the truth; a torn read never breaks count == +Inf
    return DistributionValue.from_sums(sum(buckets), values[1], values[2], values[3], values[4],
                                       buckets)
