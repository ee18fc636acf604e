"""A worker's records not folded yet, kept in its stats file so that a kill loses none of them.

In multi-process mode each record is one ring entry in the process file (the file offsets of
the rows it counts in, then its three measures), and the ring is folded into the file's rows a
batch at a time, as the single-process mode folds its queue in memory. Readers in any process
add the entries not folded yet themselves.

A control word per ring, `(folded << 1) | folding`, is written in one aligned store at the start
and at the end of every fold: a reader that sees it unchanged around its copy of the file has
rows and ring that agree. Before a fold sets the folding bit it copies the rows it will touch to
an undo area, so rows a worker killed or stopped mid-fold left half written are read as they
were before the fold, plus the fold's entries: nothing counts twice or not at all, and no
counter a reader sums ever steps back.
"""

from __future__ import annotations

import mmap
import struct
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence

# Per ring, in the file header: the control word, then the number of entries ever written.
# Both are read and written as items of a memoryview cast to "Q": one aligned 8-byte load or
# store that another process never sees half done (struct's pack_into zeroes its target first).
CONTROL_WORDS = 2
FIRST_CONTROL_WORD = 2  # after the header's bytes-used word and its magic
_U64 = struct.Struct("=Q")
UNDO_ROW = 16  # per row in the undo index: u64 offset, u64 number of doubles
MEASURES = 3  # request bytes, response bytes, latency ms: the distributions of every entry
DIST_FIRST_BUCKET = 5  # a distribution row: count, sum, sum of squares, min, max, buckets


def entry_size(rows: int) -> int:
    """Bytes of one ring entry touching `rows` rows (u64 offsets, then the three measures)."""
    return 8 * (rows + MEASURES)


def undo_size(row_lengths: Sequence[int], cells: int) -> int:
    """Undo bytes for `cells` shapes whose rows have these lengths (doubles), none shared."""
    return 8 + cells * sum(UNDO_ROW + 8 * length for length in row_lengths)


def control_index(slot: int) -> int:
    """Where ring `slot`'s control word is among the header's u64 words (its count follows)."""
    return FIRST_CONTROL_WORD + slot * CONTROL_WORDS


class RingLayout:
    """Where one ring lives in a file: its entries from `ring_at`, then its undo area. Built
    alike by the writer and by readers, from the ring's entry in the file."""

    __slots__ = ("capacity", "counts", "ring_at", "rows", "size", "undo_at")

    def __init__(self, counts: int, rows: int, capacity: int, ring_at: int) -> None:
        self.counts = counts  # the first `counts` offsets of an entry are count rows
        self.rows = rows
        self.capacity = capacity
        self.ring_at = ring_at
        self.size = entry_size(rows)
        self.undo_at = ring_at + capacity * self.size


class Journal:
    """The ring of one recorder group in this process's file; every call is under its lock."""

    __slots__ = ("_current", "_entry", "_header", "_ring", "control_at", "folded", "layout",
                 "undo_bytes", "written")

    def __init__(self, header: memoryview[int], slot: int, current: Callable[[], mmap.mmap],
                 layout: RingLayout, undo_bytes: int) -> None:
        self._header = header  # the file header as u64 words
        self._current = current  # the file's latest mapping: the only one reaching every row
        self._ring = current()  # the mapping the ring was made in (it covers the ring)
        self._entry = struct.Struct(f"={8 * layout.rows}s{MEASURES}d").pack_into
        self.control_at = control_index(slot)
        self.layout = layout
        self.undo_bytes = undo_bytes
        self.folded = 0
        self.written = 0

    def append(self, head: bytes, request_bytes: float, response_bytes: float,
               latency_ms: float) -> None:
        """One record into the ring: the entry first, then the count that makes readers see it."""
        layout, written = self.layout, self.written
        self._entry(self._ring, layout.ring_at + written % layout.capacity * layout.size, head,
                    request_bytes, response_bytes, latency_ms)
        self.written = written = written + 1
        self._header[self.control_at + 1] = written

    def begin_fold(self, rows: Sequence[tuple[int, int]]) -> None:
        """Before rows (file offset, number of doubles) change: copy them to the undo area,
        then set the folding bit."""
        index = array("Q", [field for row in rows for field in row])
        size = 8 + 8 * len(index) + 8 * sum(length for _, length in rows)
        if size > self.undo_bytes:
            raise RuntimeError(f"{len(rows)} rows outgrow the {self.undo_bytes}-byte undo area")
        mapping = self._current()
        undo_at = self.layout.undo_at
        _U64.pack_into(mapping, undo_at, len(rows))
        at = undo_at + 8
        mapping[at:at + 8 * len(index)] = index
        at += 8 * len(index)
        move = mapping.move
        for offset, length in rows:
            move(at, offset, 8 * length)
            at += 8 * length
        self._header[self.control_at] = self.folded << 1 | 1

    def end_fold(self, count: int) -> None:
        """The rows now hold `count` more entries: one store moves the mark, bit cleared."""
        self.folded += count
        self._header[self.control_at] = self.folded << 1


def add_sample(values: list[float], value: float, bounds: Sequence[float]) -> None:
    """One value into a distribution row's doubles (`folding.fold_records` unrolls the same
    three times inline: it runs per record on the request path, this only in readers)."""
    values[0] += 1
    values[1] += value
    values[2] += value * value
    if value < values[3]:
        values[3] = value
    if value > values[4]:
        values[4] = value
    values[DIST_FIRST_BUCKET + bisect_right(bounds, value)] += 1


def undone_rows(data: bytes, layout: RingLayout, control: int) -> dict[int, tuple[float, ...]]:
    """The rows a fold was changing when `control` was loaded (mid-fold), by file offset, as
    they were before it; none when no fold was under way."""
    if not control & 1:
        return {}
    (count,) = _U64.unpack_from(data, layout.undo_at)
    index = struct.unpack_from(f"{2 * count}Q", data, layout.undo_at + 8)  # native, as written
    at = layout.undo_at + 8 + 16 * count
    before = {}
    for offset, length in zip(index[::2], index[1::2], strict=True):
        before[offset] = struct.unpack_from(f"={length}d", data, at)
        at += 8 * length
    return before


def replay(data: bytes, layout: RingLayout, control: int, written: int,
           row_at: Callable[[int], tuple[list[float], Sequence[float]]]) -> None:
    """Add every entry `control` and `written` say is not folded to the rows `row_at` gives for
    a file offset (their doubles and the view's bounds): entries only add, so they go as well
    into rows already summed over files."""
    folded = control >> 1
    if not 0 <= written - folded <= layout.capacity:
        raise ValueError(f"ring at {layout.ring_at} claims {written - folded} unfolded entries "
                         f"for its {layout.capacity} slots")
    entry = struct.Struct(f"={layout.rows}Q{MEASURES}d")
    counts = layout.counts
    for index_ in range(folded, written):
        fields = entry.unpack_from(data, layout.ring_at + index_ % layout.capacity * layout.size)
        for offset in fields[:counts]:
            row_at(offset)[0][0] += 1
        for offset, value in zip(fields[counts:layout.rows], fields[layout.rows:], strict=True):
            doubles, bounds = row_at(offset)
            add_sample(doubles, value, bounds)
