"""KrakenD's default views and gatescope's own lock-light aggregation of them.

Rows are plain lists in a single process. With `GATESCOPE_MULTIPROC_DIR` set (gunicorn, uvicorn
`--workers N`), rows are double arrays inside this process's mmap file (`gatescope.multiproc`),
each record is written at once as a ring entry beside them (`gatescope.journal`) and folded in
batches by the same code, and snapshots sum every worker's file.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

import attrs

from gatescope import journal, lanes, multiproc
from gatescope.folding import fold_batch, fold_records
from gatescope.metrics import (
    COUNT,
    DISTRIBUTION,
    LATENCY_BOUNDS,
    OVERFLOW_TAG_VALUE,
    SIZE_BOUNDS,
    DistributionValue,
    MetricsSnapshot,
    View,
    ViewData,
)

# Record-time values, in this order, for both the server and the client group.
HOST, PATH, METHOD, STATUS = range(4)
# Measures, in this order: request/sent bytes, response/received bytes, latency in ms.
REQUEST_BYTES, RESPONSE_BYTES, LATENCY = range(3)

SERVER_TAGS = ("http.host", "http.path", "http.method", "http.status")
CLIENT_TAGS = ("http_client_host", "http_client_path", "http_client_method", "http_client_status")


@attrs.frozen
class TagOptions:
    """KrakenD's prometheus `tag_*` switches; they shape the views of every stats exporter."""

    host: bool = False
    path: bool = False
    method: bool = False
    status: bool = False

    def merge(self, other: TagOptions) -> TagOptions:
        return TagOptions(*(a or b for a, b in zip(attrs.astuple(self), attrs.astuple(other), strict=True)))


@attrs.frozen
class _ViewSpec:
    name: str
    description: str
    unit: str
    aggregation: str
    base_tags: tuple[int, ...]  # indexes into HOST, PATH, METHOD, STATUS
    measure: str
    value: int | None  # measure index for distributions; None for counts


_S = "opencensus.io/http/server/"
_C = "opencensus.io/http/client/"
SERVER_VIEWS = (
    _ViewSpec(_S + "request_count", "Count of HTTP requests started", "1", COUNT, (),
              _S + "request_count", None),
    _ViewSpec(_S + "request_bytes", "Size distribution of HTTP request body", "By",
              DISTRIBUTION, (), _S + "request_bytes", REQUEST_BYTES),
    _ViewSpec(_S + "response_bytes", "Size distribution of HTTP response body", "By",
              DISTRIBUTION, (), _S + "response_bytes", RESPONSE_BYTES),
    _ViewSpec(_S + "latency", "Latency distribution of HTTP requests", "ms", DISTRIBUTION, (),
              _S + "latency", LATENCY),
    _ViewSpec(_S + "request_count_by_method", "Server request count by HTTP method", "1",
              COUNT, (METHOD,), _S + "request_count", None),
    _ViewSpec(_S + "response_count_by_status_code", "Server response count by status code",
              "1", COUNT, (STATUS,), _S + "latency", None),
)
_BY = ", by HTTP method and response status"
CLIENT_VIEWS = (
    _ViewSpec(_C + "sent_bytes", "Total bytes sent in request body (not including headers)" + _BY,
              "By", DISTRIBUTION, (METHOD, STATUS), _C + "sent_bytes", REQUEST_BYTES),
    _ViewSpec(_C + "received_bytes",
              "Total bytes received in response bodies (not including headers but including "
              "error responses with bodies)" + _BY,
              "By", DISTRIBUTION, (METHOD, STATUS), _C + "received_bytes", RESPONSE_BYTES),
    _ViewSpec(_C + "roundtrip_latency", "End-to-end latency" + _BY, "ms", DISTRIBUTION,
              (METHOD, STATUS), _C + "roundtrip_latency", LATENCY),
    _ViewSpec(_C + "completed_count", "Count of completed requests" + _BY, "1", COUNT,
              (METHOD, STATUS), _C + "roundtrip_latency", None),
)


def _tag_indexes(base: tuple[int, ...], options: TagOptions) -> tuple[int, ...]:
    extra = [i for i, on in zip((HOST, PATH, METHOD, STATUS), attrs.astuple(options), strict=True)
             if on and i not in base]
    return base + tuple(extra)


def _key_getter(indexes: tuple[int, ...]) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    if not indexes:
        return lambda values: ()
    if len(indexes) == 1:
        only = indexes[0]
        return lambda values: (values[only],)
    return itemgetter(*indexes)  # type: ignore[return-value]


class ViewAggregator:
    """Rows of one view; mutated only under its group's lock."""

    __slots__ = ("bounds", "cap", "folded", "key_of", "nbuckets", "offsets", "overflow", "rows",
                 "start_ns", "store", "value", "view")

    def __init__(self, view: View, indexes: tuple[int, ...], value: int | None, cap: int,
                 store: multiproc.ProcessFile | None = None) -> None:
        self.view = view
        self.key_of = _key_getter(indexes)
        self.value = value
        self.bounds = view.bounds
        self.nbuckets = len(view.bounds) + 1
        self.rows: dict[tuple[str, ...], Any] = {}  # list, or doubles in the mmap file
        self.offsets: dict[tuple[str, ...], int] = {}  # in the mmap file: where each row is
        self.cap = cap
        self.overflow = (OVERFLOW_TAG_VALUE,) * len(indexes)
        self.folded = 0
        self.start_ns = time.time_ns()
        self.attach(store)

    def attach(self, store: multiproc.ProcessFile | None) -> None:
        """Keep rows in `store` (a fresh, empty set) or, with None, keep the current ones."""
        self.store = store
        if store is not None:
            self.rows = {}
            self.offsets = {}
            self.folded = 0
            store.define(self.view, self.start_ns)

    def new_row(self, key: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
        if len(self.rows) >= self.cap:
            self.folded += 1
            key = self.overflow
            existing = self.rows.get(key)
            if existing is not None:
                return key, existing
        row: Any = [0] if self.value is None else \
            [0, 0.0, 0.0, float("inf"), float("-inf")] + [0] * self.nbuckets
        if self.store is not None:
            if self.value is not None:  # a file's bucket counts are biased (`gatescope.lanes`)
                row[5:] = [lanes.BIAS] * self.nbuckets
            self.offsets[key], row = self.store.row(self.view, key, row)
        self.rows[key] = row
        return key, row

    def capture(self) -> dict[tuple[str, ...], Any]:
        """The rows as they are, copied: the only part of a snapshot that needs the lock."""
        if self.value is None:
            return {key: row[0] for key, row in self.rows.items()}
        return {key: tuple(row) for key, row in self.rows.items()}

    def data_from(self, captured: dict[tuple[str, ...], Any]) -> ViewData:
        """The view's data made from `capture`'s copy, no lock needed (in memory: counts and
        buckets are ints already; multi-process snapshots are read from the files instead,
        `statsfile`)."""
        if self.value is None:
            return ViewData(self.view, self.start_ns, captured)
        rows: dict[tuple[str, ...], Any] = {}
        bias = 0 if self.store is None else int(lanes.BIAS)
        value = DistributionValue.from_sums
        for key, row in captured.items():
            buckets = row[5:] if not bias else tuple(int(b) - bias for b in row[5:])
            rows[key] = value(row[0], row[1], row[2], row[3], row[4], buckets)
        return ViewData(self.view, self.start_ns, rows)


# Distinct (host, path, method, status) shapes whose resolved rows are cached per recorder
# (at least twice the tag-set cap); beyond it the cache restarts: rows are kept, only the
# shortcuts to them are dropped, so memory stays flat under unbounded raw values.
MIN_CELLS = 4096
# Records queued per recorder before they are folded together.
RECORD_BATCH = 256
# Multi-process mode: a batch with more shapes than this folds mostly record by record, which
# costs as much as writing each record through at once, plus the ring entry and the undo copy;
# the next `DIRECT_RECORDS` records are then written through (measured: `statsbench`).
SCATTERED_SHAPES = 32
DIRECT_RECORDS = 32 * RECORD_BATCH

# A cell: every view's row for one raw record shape, resolved once (`folding.Cell`).
_Cell = tuple[tuple[Any, ...], Any, Any, Any, tuple[ViewAggregator, ...],
              tuple[bytes, tuple[tuple[int, int], ...]] | None]
_SHAPE = itemgetter(0, 1, 2, 3)


class LayerRecorder:
    """Records one HTTP exchange into every view of a group: one dict lookup, then one lock."""

    def __init__(self, specs: Iterable[_ViewSpec], tag_names: tuple[str, ...],
                 options: TagOptions, cap: int, store: multiproc.ProcessFile | None = None) -> None:
        self._lock = threading.Lock()
        self.views: list[ViewAggregator] = []
        for spec in specs:
            indexes = _tag_indexes(spec.base_tags, options)
            view = View(
                name=spec.name, description=spec.description, unit=spec.unit,
                aggregation=spec.aggregation, tag_keys=tuple(tag_names[i] for i in indexes),
                bounds=(LATENCY_BOUNDS if spec.unit == "ms" else SIZE_BOUNDS)
                if spec.aggregation == DISTRIBUTION else (),
                measure=spec.measure,
            )
            self.views.append(ViewAggregator(view, indexes, spec.value, cap, store))
        measured = sorted(agg.value for agg in self.views if agg.value is not None)
        if measured != [REQUEST_BYTES, RESPONSE_BYTES, LATENCY]:
            raise ValueError("a recorder needs exactly one distribution view per measure")
        request, response, latency = (next(agg.bounds for agg in self.views
                                           if agg.value == measure) for measure in measured)
        self._bounds = (request, response, latency)
        self._cells: dict[tuple[str, str, str, str], _Cell] = {}
        self._max_cells = max(MIN_CELLS, 2 * cap)
        # Records not folded yet. Bounded by `batch` (plus one per thread racing the check);
        # with rows in a shared file other workers read, each is also in the file's ring.
        self._pending: deque[tuple[str, str, str, str, float, float, float]] = deque()
        self.batch = RECORD_BATCH
        self._journal = self._ring(store)
        self._direct = 0  # records still to write through at once (multi-process mode)

    def _ring(self, store: multiproc.ProcessFile | None) -> journal.Journal | None:
        if store is None:
            return None
        counts = sum(1 for agg in self.views if agg.value is None)
        lengths = [1 if agg.value is None else 5 + agg.nbuckets for agg in self.views]
        return store.journal(counts, len(self.views), journal.undo_size(lengths, RECORD_BATCH))

    def _cell(self, values: tuple[str, str, str, str]) -> _Cell:
        """Resolve (creating rows as needed, under the cap) every view's row for `values`."""
        counts: list[Any] = []
        distributions: list[Any] = [None, None, None]
        folded: list[ViewAggregator] = []
        count_at: list[int] = []
        distribution_at = [0, 0, 0]
        for agg in self.views:
            key = agg.key_of(values)
            row = agg.rows.get(key)
            if row is None:
                if len(agg.rows) >= agg.cap:
                    folded.append(agg)  # counted per record below, not once per cell
                    key = agg.overflow
                    row = agg.rows.get(key)
                    if row is None:
                        key, row = agg.new_row(key)
                        agg.folded -= 1
                else:
                    key, row = agg.new_row(key)
            offset = agg.offsets.get(key, 0)
            if agg.value is None:
                counts.append(row)
                count_at.append(offset)
            else:
                distributions[agg.value] = row
                distribution_at[agg.value] = offset
        entry = None
        if self._journal is not None:  # the ring entry's head: every row's offset, in order
            at = count_at + distribution_at
            entry = (struct.pack(f"={len(at)}Q", *at),
                     tuple((offset, len(row)) for offset, row in zip(at, counts + distributions,
                                                                   strict=True)))
        cell: _Cell = (tuple(counts), *distributions, tuple(folded), entry)
        cells = self._cells
        if len(cells) >= self._max_cells and self._journal is None:  # (a ring's fold clears it)
            cells.clear()
        cells[values] = cell
        return cell

    def record(self, host: str, path: str, method: str, status: str,
               request_bytes: float, response_bytes: float, latency_ms: float) -> None:
        """The hot path: queue the exchange; every `batch` records are folded in one pass.

        Folding many records at once keeps rows and cells in the CPU cache (one record folded
        alone between two requests' worth of other code costs ~3x what it costs in a batch), and
        lets builtins do the per-value work of a shape's many records (`folding`).
        """
        record = (host, path, method, status, request_bytes, response_bytes, latency_ms)
        ring = self._journal
        if ring is not None:  # rows in a shared file: the record goes to its ring at once
            with self._lock:
                if self._direct:  # scattered shapes: written through at once, as a ring fold would
                    self._direct -= 1
                    fold_records((record,), self._cells, self._cell, self._bounds)
                    return
                values = (host, path, method, status)
                cell = self._cells.get(values) or self._cell(values)
                ring.append(cell[5][0], request_bytes, response_bytes, latency_ms)  # type: ignore[index]
                pending = self._pending
                pending.append(record)
                if len(pending) >= self.batch:
                    self._fold_ring(ring)
            return
        pending = self._pending
        pending.append(record)
        if len(pending) >= self.batch:
            with self._lock:
                self._fold()

    def _fold(self) -> None:
        """Folds the queued records (`folding.fold_batch`); under the lock. Records appended
        while this runs stay queued for the next fold."""
        if self._journal is not None:
            self._fold_ring(self._journal)
            return
        pending = self._pending
        popleft = pending.popleft
        fold_batch([popleft() for _ in range(len(pending))], self._cells, self._cell,
                   self._bounds)

    def _fold_ring(self, ring: journal.Journal) -> None:
        """Folds the ring's records into the file's rows, the rows they touch saved first
        (`journal.Journal.begin_fold`); under the lock."""
        pending, cells = self._pending, self._cells
        if not pending:
            return
        batch = list(pending)
        pending.clear()
        touched: dict[int, int] = {}
        shapes = dict.fromkeys(map(_SHAPE, batch))
        for shape in shapes:
            touched.update(cells[shape][5][1])  # type: ignore[index]
        ring.begin_fold(list(touched.items()))
        fold_batch(batch, cells, self._cell, self._bounds)
        ring.end_fold(len(batch))
        if len(shapes) > SCATTERED_SHAPES:
            self._direct = DIRECT_RECORDS
        if len(cells) >= self._max_cells:
            cells.clear()

    def snapshot(self) -> list[ViewData]:
        """Every view's data; the lock is held only to fold and copy the rows (a request that
        must fold meanwhile waits for that, not for the values being made)."""
        with self._lock:
            self._fold()
            captured = [agg.capture() for agg in self.views]
        return [agg.data_from(rows) for agg, rows in zip(self.views, captured, strict=True)]

    def folded(self) -> dict[str, int]:
        with self._lock:
            self._fold()
            return {agg.view.name: agg.folded for agg in self.views if agg.folded}

    def reset_after_fork(self, store: multiproc.ProcessFile | None = None) -> None:
        """In a forked child: a fresh lock and, in multi-process mode, its own empty file."""
        self._lock = threading.Lock()
        if store is not None:
            self._pending.clear()  # the parent folds its own; these rows go to a fresh file
            self._cells = {}  # the cached rows belong to the parent's file
            for agg in self.views:
                agg.attach(store)
            self._journal = self._ring(store)
            self._direct = 0


class Stats:
    """The two recorder groups plus extra view providers (self-telemetry)."""

    def __init__(self, options: TagOptions = TagOptions(), max_tag_sets: int = 2000,
                 multiprocess_dir: str | None = None) -> None:
        self.options = options
        directory = multiprocess_dir or multiproc.configured_directory()
        self.directory = multiproc.Directory(directory) if directory else None
        self.store = multiproc.ProcessFile(directory) if directory else None
        self.push_leadership = multiproc.PushLeadership(directory) if directory else None
        self.server = LayerRecorder(SERVER_VIEWS, SERVER_TAGS, options, max_tag_sets, self.store)
        self.client = LayerRecorder(CLIENT_VIEWS, CLIENT_TAGS, options, max_tag_sets, self.store)
        self._providers: list[Callable[[], Iterable[ViewData]]] = []

    def add_provider(self, provider: Callable[[], Iterable[ViewData]]) -> None:
        self._providers.append(provider)

    def views(self) -> list[View]:
        return [a.view for a in self.server.views + self.client.views]

    @property
    def multiprocess(self) -> bool:
        return self.directory is not None

    def snapshot(self) -> MetricsSnapshot:
        """Every view now; in multi-process mode summed over every worker, live or dead."""
        if self.directory is None:
            views = self.server.snapshot() + self.client.snapshot()
        else:
            views = self.directory.collect().view_data(self.views())
        for provider in self._providers:
            views.extend(provider())
        return MetricsSnapshot(time.time_ns(), tuple(views))

    def folded(self) -> dict[str, int]:
        return {**self.server.folded(), **self.client.folded()}

    def reset_after_fork(self) -> None:
        if self.directory is not None:
            self.store = multiproc.ProcessFile(self.directory.path)
            self.directory = multiproc.Directory(self.directory.path)
        self.server.reset_after_fork(self.store)
        self.client.reset_after_fork(self.store)
        if self.push_leadership is not None:
            self.push_leadership.reset_after_fork()
