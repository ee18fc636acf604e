"""How queued records become rows: a shape's many records as columns, scattered ones one by one.

A record is (host, path, method, status, request bytes, response bytes, latency ms); its shape
is the first four. A cell holds every view's row for one shape (`stats.LayerRecorder._cell`):
(count rows, the request, response and latency distribution rows, the aggregators that fold the
shape into their overflow row, and in multi-process mode its ring entry's head and its rows'
places in the file). A distribution row is [count, sum, sum of squares, min, max,
bucket 0, bucket 1, ...], bucket k holding bounds[k-1] <= v < bounds[k].
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from operator import itemgetter, mul
from typing import Any

Shape = tuple[str, str, str, str]
Record = tuple[str, str, str, str, float, float, float]
Cell = tuple[tuple[Any, ...], Any, Any, Any, tuple[Any, ...], Any]
Bounds = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]

# Records of one shape worth folding as columns: below it, builtins' set-up costs more than
# the per-record loop saves.
COLUMN_MIN = 8


def fold_batch(batch: Sequence[Record], cells: dict[Shape, Cell],
               cell_of: Callable[[Shape], Cell], bounds: Bounds) -> None:
    """Folds `batch` into its cells (`cells` caches them; `cell_of` makes a missing one)."""
    size = len(batch)
    if size < COLUMN_MIN:
        fold_records(batch, cells, cell_of, bounds)
        return
    columns = list(zip(*batch, strict=True))
    tags = columns[:4]
    varied = [column for column in tags if column.count(column[0]) != size]
    if not varied:  # one shape: the usual batch with few tags
        first = batch[0][:4]
        fold_shape(cells.get(first) or cell_of(first), size, columns[4:], bounds)  # type: ignore[arg-type]
        return
    # Shapes are at least as many as the distinct values of any tag: with many, columns of a
    # few records each would cost more than they save.
    if max(len(set(column)) for column in varied) * COLUMN_MIN > size:
        fold_records(batch, cells, cell_of, bounds)
        return
    shapes = list(zip(*tags, strict=True))
    by_shape: dict[Shape, list[int]] = {}
    for index, shape in enumerate(shapes):
        found = by_shape.get(shape)
        if found is None:
            by_shape[shape] = [index]
        else:
            found.append(index)
    scattered: list[int] = []
    for shape, at in by_shape.items():
        if len(at) < COLUMN_MIN:
            scattered.extend(at)
            continue
        pick = itemgetter(*at)
        fold_shape(cells.get(shape) or cell_of(shape), len(at),
                   [pick(column) for column in columns[4:]], bounds)
    if scattered:
        fold_records([batch[i] for i in scattered], cells, cell_of, bounds)


def fold_shape(cell: Cell, count: int, columns: Sequence[tuple[float, ...]],
               bounds: Bounds) -> None:
    """`count` records of one shape: each measure's values as a column."""
    counts, request_row, response_row, latency_row, folded, _ = cell
    for row in counts:
        row[0] += count
    fold_column(request_row, columns[0], count, bounds[0])
    fold_column(response_row, columns[1], count, bounds[1])
    fold_column(latency_row, columns[2], count, bounds[2])
    for aggregator in folded:
        aggregator.folded += count


def fold_column(row: Any, column: tuple[float, ...], count: int,
                bounds: tuple[float, ...]) -> None:
    """`count` values of one measure into a distribution row, by builtins over the column."""
    low, high = min(column), max(column)
    row[0] += count
    if low == high:  # one value (a route's body size, GETs without a body): no sort
        if low:
            row[1] += low * count
            row[2] += low * low * count
        row[5 + bisect_right(bounds, low)] += count
    else:
        row[1] += sum(column)
        row[2] += sum(map(mul, column, column))
        ordered = sorted(column)
        below = 0  # values in the buckets before k
        last = bisect_right(bounds, high)
        for k in range(bisect_right(bounds, low), last):
            up_to = bisect_left(ordered, bounds[k], below)  # values < bounds[k]
            row[5 + k] += up_to - below
            below = up_to
        row[5 + last] += count - below
    if low < row[3]:
        row[3] = low
    if high > row[4]:
        row[4] = high


def fold_records(records: Sequence[Record], cells: dict[Shape, Cell],
                 cell_of: Callable[[Shape], Cell], bounds: Bounds) -> None:
    """One record at a time, unrolled over the three measures (one bisect each)."""
    request_bounds, response_bounds, latency_bounds = bounds
    zero_bucket = 5 + bisect_right(request_bounds, 0)
    for host, path, method, status, request_bytes, response_bytes, latency_ms in records:
        values = (host, path, method, status)
        cell = cells.get(values) or cell_of(values)
        counts, request_row, response_row, latency_row, folded, _ = cell
        for row in counts:
            row[0] += 1
        row, v = request_row, request_bytes
        row[0] += 1
        if v:
            row[1] += v
            row[2] += v * v
            if v < row[3]:
                row[3] = v
            if v > row[4]:
                row[4] = v
            row[5 + bisect_right(request_bounds, v)] += 1
        else:  # most requests (GET) carry no body: sums unchanged, first bucket (bounds > 0)
            if row[3] > 0:
                row[3] = v
            if row[4] < 0:
                row[4] = v
            row[zero_bucket] += 1
        row, v = response_row, response_bytes
        row[0] += 1
        row[1] += v
        row[2] += v * v
        if v < row[3]:
            row[3] = v
        if v > row[4]:
            row[4] = v
        row[5 + bisect_right(response_bounds, v)] += 1
        row, v = latency_row, latency_ms
        row[0] += 1
        row[1] += v
        row[2] += v * v
        if v < row[3]:
            row[3] = v
        if v > row[4]:
            row[4] = v
        row[5 + bisect_right(latency_bounds, v)] += 1
        for aggregator in folded:
            aggregator.folded += 1
