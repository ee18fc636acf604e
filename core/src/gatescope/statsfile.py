"""One worker's stats file: the format every process writes its rows and rings in, and reads.

A file is a header (u64 bytes used, written last as the commit; 8-byte magic; each ring's
control word and written count) and then append-only entries: a view's description, a row of
doubles (a distribution's bucket counts biased, so that readers take them as lanes of one int:
`gatescope.lanes`), or a ring (`gatescope.journal`). Rows are written in place; readers copy the
file and sum what it holds (`gatescope.totals`).
"""

from __future__ import annotations

import functools
import json
import mmap
import os
import secrets
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any

from gatescope import journal, lanes
from gatescope.metrics import View
from gatescope.totals import Row, Totals, packed, sum_rows

ENV_DIR = "GATESCOPE_MULTIPROC_DIR"
SUFFIX = ".gsdb"
MAGIC_V1 = b"GSDB0001"  # rows only, written through record by record
MAGIC_V2 = b"GSDB0002"  # rows and rings
MAGIC = b"GSDB0003"  # rows and rings; bucket counts biased by `lanes.BIAS`
RINGS = 4  # ring control slots in the header
# u64 bytes used (written last: the commit), 8-byte magic, each ring's control word and count
HEADER = 8 * journal.control_index(RINGS)
HEADER_V1 = 16
INITIAL_SIZE = 1 << 16
RING_SLOTS = 512  # entries per ring: twice the records a recorder lets wait for a fold
READ_ATTEMPTS = 200  # copies of a file tried before its rings are taken as unreadable
_USED = struct.Struct("=Q")
_ENTRY = struct.Struct("=II")  # metadata length, number of doubles
_HEAD = struct.Struct(f"={journal.DIST_FIRST_BUCKET}d")  # a distribution row before its buckets


class ProcessFile:
    """This process's append-only row file; each row is a view of doubles written in place."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.name = f"{os.getpid()}-{secrets.token_hex(6)}{SUFFIX}"
        self.path = os.path.join(directory, self.name)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "r+b", buffering=0)
        self._maps: list[mmap.mmap] = []  # every mapping stays alive: rows are views into them
        self._map: mmap.mmap | None = None
        self._capacity = 0
        self._used = HEADER
        self._lock = threading.Lock()
        self._views: set[str] = set()
        self._rings = 0
        self._grow(INITIAL_SIZE)
        assert self._map is not None
        # The header as u64 words, through the first mapping (kept for the file's life).
        self._words: memoryview[int] = memoryview(self._map)[:HEADER].cast("Q")
        self._map[8:16] = MAGIC
        self._map[0:8] = _USED.pack(self._used)

    def _grow(self, needed: int) -> None:
        capacity = max(INITIAL_SIZE, self._capacity * 2)
        while capacity < needed:
            capacity *= 2
        os.ftruncate(self._file.fileno(), capacity)
        self._map = mmap.mmap(self._file.fileno(), capacity)
        self._maps.append(self._map)
        self._capacity = capacity

    def _append(self, meta: Any, values: Sequence[float] = (), space: int = 0) -> tuple[int, mmap.mmap]:
        """Add an entry (metadata, its doubles, then `space` zero bytes); its data offset and map."""
        encoded = json.dumps(meta, separators=(",", ":")).encode()
        pad = -(_ENTRY.size + len(encoded)) % 8
        body = _ENTRY.size + len(encoded) + pad
        size = body + 8 * len(values) + space
        with self._lock:
            if self._used + size > self._capacity:
                self._grow(self._used + size)
            mapping = self._map
            assert mapping is not None
            pos = self._used
            mapping[pos:pos + body] = _ENTRY.pack(len(encoded), len(values) + space // 8) \
                + encoded + b" " * pad
            start = pos + body
            if values:
                mapping[start:start + 8 * len(values)] = struct.pack(f"={len(values)}d", *values)
            self._used += size  # the space past `used` was never written: it reads as zeros
            mapping[0:8] = _USED.pack(self._used)  # commit: readers see the entry from now on
        return start, mapping

    def define(self, view: View, start_ns: int) -> None:
        """Record a view's description once, so any process can render rows it never saw."""
        if view.name in self._views:
            return
        self._views.add(view.name)
        self._append(["view", view_to_json(view), start_ns])

    def row(self, view: View, key: tuple[str, ...],
            initial: Sequence[float]) -> tuple[int, memoryview[float]]:
        """A new row of `view`: its offset in the file and its doubles, which live there."""
        start, mapping = self._append(["row", view.name, list(key)], initial)
        doubles: memoryview[float] = memoryview(mapping)[start:start + 8 * len(initial)].cast("d")
        return start, doubles

    def journal(self, counts: int, rows: int, undo_bytes: int) -> journal.Journal:
        """A ring for records touching `rows` rows each, the first `counts` of them count rows."""
        slot = self._rings
        if slot >= RINGS:
            raise RuntimeError(f"a stats file holds at most {RINGS} rings")
        self._rings += 1
        undo_bytes += -undo_bytes % 8
        ring_bytes = RING_SLOTS * journal.entry_size(rows)
        start, _ = self._append(["ring", slot, counts, rows, RING_SLOTS, undo_bytes], (),
                                ring_bytes + undo_bytes)
        return journal.Journal(self._words, slot, self._latest,
                               journal.RingLayout(counts, rows, RING_SLOTS, start), undo_bytes)

    def _latest(self) -> mmap.mmap:
        assert self._map is not None
        return self._map


def view_to_json(view: View) -> dict[str, Any]:
    return {"name": view.name, "description": view.description, "unit": view.unit,
            "aggregation": view.aggregation, "tag_keys": list(view.tag_keys),
            "bounds": list(view.bounds), "measure": view.measure}


def view_from_json(data: dict[str, Any]) -> View:
    return View(data["name"], data["description"], data["unit"], data["aggregation"],
                tuple(data["tag_keys"]), tuple(data["bounds"]), data.get("measure", ""))


def read_process_file(path: str) -> Totals:
    """Rows plus the rings' entries not folded yet of one process file, at one instant."""
    return FileReader(path).read()


class FileReader:
    """Reads one process file again and again. Entries are append-only and never rewritten, so
    those parsed once are kept: a read decodes only the rows' doubles and what is new.

    The rings' control words are loaded before and after each copy of the file, through a
    mapping (one aligned load each): when no fold started or ended in between, the copy's rows
    and the ring entries counted before it agree."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None
        self._forget(b"")

    def _forget(self, magic: bytes) -> None:
        self._magic = magic
        self._parsed = HEADER_V1 if magic == MAGIC_V1 else HEADER
        self._views: list[tuple[View, int]] = []
        self._bounds: dict[str, Sequence[float]] = {}
        # Per view: each row's file offset, tag values and doubles; and each row by its offset.
        self._by_view: dict[str, list[tuple[int, tuple[str, ...], struct.Struct]]] = {}
        self._where: dict[int, tuple[str, struct.Struct]] = {}
        self._rings: dict[int, journal.RingLayout] = {}

    def read(self, into: Totals | None = None) -> Totals:
        """The file's totals, added to `into` when given (and returned)."""
        into = Totals() if into is None else into
        with open(self.path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            if (stat.st_dev, stat.st_ino) != self._identity:
                self._identity = (stat.st_dev, stat.st_ino)
                self._forget(b"")
            try:
                header = mmap.mmap(handle.fileno(), HEADER, prot=mmap.PROT_READ)
            except ValueError:  # shorter than a header: a file from before rings, or a new one
                return self._totals(handle.read(), [], into)
            with header, memoryview(header) as view, view.cast("Q") as words:
                for attempt in range(READ_ATTEMPTS):
                    before = _controls(words)
                    handle.seek(0)
                    data = handle.read()
                    if data[8:16] != MAGIC or \
                            [c for c, _ in _controls(words)] == [c for c, _ in before]:
                        return self._totals(data, before, into)
                    time.sleep(0 if attempt < 10 else 0.001)  # a fold takes ~0.1 ms
        raise ValueError(f"{self.path} was folding through {READ_ATTEMPTS} reads")

    def _totals(self, data: bytes, controls: list[tuple[int, int]], totals: Totals) -> Totals:
        """Add the file's rows to `totals`: everything that can fail is done first, so a file
        that cannot be read adds nothing."""
        if len(data) < HEADER_V1 or data[8:16] == bytes(8):
            return totals  # a file its process is still creating: nothing recorded yet
        magic = data[8:16]
        if magic not in (MAGIC, MAGIC_V2, MAGIC_V1):
            raise ValueError(f"{self.path} is not a gatescope multi-process file")
        if magic != self._magic:
            self._forget(magic)
        self._scan(data)
        for view, _ in self._views:
            known = totals.views.get(view.name)
            if known is not None and (known.aggregation, known.bounds) != \
                    (view.aggregation, view.bounds):
                raise ValueError(f"{self.path} has view {view.name} as {view.aggregation} "
                                 f"{list(view.bounds)}, summed so far as {known.aggregation} "
                                 f"{list(known.bounds)}")
        biased = magic == MAGIC
        rows = self._rows_now(data, controls, biased)
        read = [(name, self._read_rows(data, name, entries, rows, biased))
                for name, entries in self._by_view.items()]
        for view, start_ns in self._views:
            totals.add_view(view, start_ns)
        sums = totals.rows
        for name, found in read:
            sum_rows(sums.setdefault(name, {}), found)
        return totals

    def _read_rows(self, data: bytes, name: str,
                   entries: list[tuple[int, tuple[str, ...], struct.Struct]],
                   rows: dict[int, Row], biased: bool) -> list[tuple[tuple[str, ...], Row]]:
        """One view's rows in the copy, as `gatescope.totals` adds them (`rows`: those that
        differ from the copy)."""
        size = entries[0][2].size  # one view's rows, written by one process, are alike
        if size == 8 or not biased:  # counts, or an older file's distributions
            found = [(key, doubles.unpack_from(data, offset)) for offset, key, doubles in entries]
            if size != 8:
                found = [(key, packed(values, False)) for key, values in found]
        else:
            head, first, order = _HEAD.unpack_from, 8 * journal.DIST_FIRST_BUCKET, lanes.ORDER
            width = size // 8 - journal.DIST_FIRST_BUCKET
            bias = lanes.bias(width)
            found = [(key, (*head(data, offset),  # the buckets' bytes: their counts' lanes
                            int.from_bytes(data[offset + first:offset + size], order) - bias))
                     for offset, key, _ in entries]
            high = lanes.overflow_bits(width)  # `lanes.valid`, inline
            if any(values[5] < 0 or values[5] & high for _, values in found):  # type: ignore[operator]
                raise ValueError(f"{self.path} has a row of {name} whose buckets are not "
                                 "biased counts")
        if rows:
            found = [(key, rows.get(offset, values))
                     for (offset, _, _), (key, values) in zip(entries, found, strict=True)]
        return found

    def _rows_now(self, data: bytes, controls: list[tuple[int, int]],
                  biased: bool) -> dict[int, Row]:
        """Rows, by file offset, that differ from what the copy holds: those a fold under way
        was changing (as they were before it), and those the rings' unfolded entries add to."""
        rows: dict[int, Sequence[float]] = {}
        for slot, layout in self._rings.items():
            rows.update(journal.undone_rows(data, layout, controls[slot][0]))
        where, bounds = self._where, self._bounds

        def row_at(offset: int) -> tuple[list[float], Sequence[float]]:
            name, doubles = where[offset]
            row = rows.get(offset)
            if type(row) is not list:
                row = rows[offset] = list(doubles.unpack_from(data, offset) if row is None
                                          else row)
            return row, bounds[name]

        try:
            for slot, layout in self._rings.items():
                control, written = controls[slot]
                journal.replay(data, layout, control, written, row_at)
        except (KeyError, IndexError, struct.error) as exc:
            raise ValueError(f"{self.path} has a ring entry for no row of the file "
                             f"({exc!r})") from exc
        return {offset: packed(row, biased) for offset, row in rows.items()}

    def _scan(self, data: bytes) -> None:
        """Parse the entries committed since the last read (kept only once all parsed)."""
        used = min(_USED.unpack_from(data, 0)[0], len(data))
        pos = self._parsed
        views: list[tuple[View, int]] = []
        rows: list[tuple[int, str, tuple[str, ...], struct.Struct]] = []
        rings: dict[int, journal.RingLayout] = {}
        while pos + _ENTRY.size <= used:
            meta_len, count = _ENTRY.unpack_from(data, pos)
            meta = json.loads(data[pos + _ENTRY.size:pos + _ENTRY.size + meta_len])
            start = pos + _ENTRY.size + meta_len + (-(_ENTRY.size + meta_len) % 8)
            pos = start + 8 * count
            if meta[0] == "view":
                views.append((view_from_json(meta[1]), int(meta[2])))
            elif meta[0] == "ring":
                slot, counts, width, capacity = meta[1:5]
                rings[slot] = journal.RingLayout(counts, width, capacity, start)
            else:
                rows.append((start, meta[1], tuple(meta[2]), _doubles(count)))
        self._views += views
        self._bounds.update((view.name, view.bounds) for view, _ in views)
        for offset, name, key, doubles in rows:
            self._by_view.setdefault(name, []).append((offset, key, doubles))
            self._where[offset] = (name, doubles)
        self._rings.update(rings)
        self._parsed = pos


@functools.cache
def _doubles(count: int) -> struct.Struct:
    return struct.Struct(f"={count}d")


def _controls(words: memoryview[int]) -> list[tuple[int, int]]:
    """Each ring's (control word, entries written), loaded in that order: every entry the
    control word counts as folded was written before it."""
    out = []
    for slot in range(RINGS):
        at = journal.control_index(slot)
        control = words[at]
        out.append((control, words[at + 1]))
    return out
