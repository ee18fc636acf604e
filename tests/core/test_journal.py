"""Multi-process rings (`gatescope.journal`): every record readable at once by any process, folds
that a kill or a reader in the middle never turns into a lost, doubled or backward count."""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import struct
from typing import Any

import pytest
from gatescope import lanes, multiproc, stats, statsfile, totals
from gatescope.metrics import LATENCY_BOUNDS, MetricsSnapshot, View
from gatescope.stats import Stats, TagOptions
from gatescope.testing import exit_code, fork_child

TAGS = TagOptions(path=True, method=True, status=True)
COUNT = "opencensus.io/http/server/request_count"
LATENCY = "opencensus.io/http/server/latency"


def _records(count: int, shapes: int, seed: int = 1) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    return [("h", f"/p/{rng.randrange(shapes)}", rng.choice(["GET", "POST"]), "200",
             float(rng.choice([0, 10, 5000])), float(rng.randrange(100_000)),
             rng.choice([rng.uniform(0, 3000.0), rng.choice(LATENCY_BOUNDS)]))
            for _ in range(count)]


def _rows(snapshot: MetricsSnapshot) -> dict[str, dict[Any, Any]]:
    return {data.view.name: dict(data.rows) for data in snapshot.views}


def assert_same(found: MetricsSnapshot, expected: MetricsSnapshot) -> None:
    """Equal counts, buckets, min and max; sums equal but for float addition order."""
    got, want = _rows(found), _rows(expected)
    assert set(got) == set(want)
    for name, rows in want.items():
        assert set(got[name]) == set(rows), name
        for key, value in rows.items():
            other = got[name][key]
            if isinstance(value, int):
                assert other == value, (name, key)
                continue
            assert (other.count, other.min, other.max, other.bucket_counts) == \
                (value.count, value.min, value.max, value.bucket_counts), (name, key)
            assert other.sum == pytest.approx(value.sum, rel=1e-9)


def _reference(records: list[tuple[Any, ...]]) -> MetricsSnapshot:
    memory = Stats(TAGS)
    for record in records:
        memory.server.record(*record)
    return memory.snapshot()


def _file_snapshot(path: str, like: Stats) -> MetricsSnapshot:
    views = multiproc.read_process_file(path).view_data(like.views())
    return MetricsSnapshot(0, tuple(views))


@pytest.mark.parametrize("count", [1, 255, 256, 257, 700, 1500])
@pytest.mark.parametrize("shapes", [1, 5, 300])
def test_every_record_is_read_at_once_folded_or_not(tmp_path: Any, count: int, shapes: int) -> None:
    shared = Stats(TAGS, multiprocess_dir=str(tmp_path))
    batch = _records(count, shapes)
    for record in batch:
        shared.server.record(*record)
    assert len(shared.server._pending) == count % stats.RECORD_BATCH or shapes == 300
    assert_same(_file_snapshot(shared.store.path, shared), _reference(batch))
    assert_same(shared.snapshot(), _reference(batch))


def _fold_then(action: Any) -> Any:
    """A fold_batch that folds half its records, then runs `action` (the rows half written)."""
    def folding(batch: Any, cells: Any, cell_of: Any, bounds: Any) -> None:
        stats.fold_records(batch[: len(batch) // 2], cells, cell_of, bounds)
        action()
        stats.fold_records(batch[len(batch) // 2:], cells, cell_of, bounds)
    return folding


def test_a_worker_killed_mid_fold_loses_and_doubles_nothing(tmp_path: Any, monkeypatch) -> None:
    shared = Stats(TAGS, multiprocess_dir=str(tmp_path))
    before = _records(100, 4, seed=2)
    for record in before:  # the parent's own records, in its own file
        shared.server.record(*record)
    batch = _records(3 * stats.RECORD_BATCH, 4, seed=3)

    def worker() -> bool:
        shared.reset_after_fork()
        for record in batch[:2 * stats.RECORD_BATCH]:
            shared.server.record(*record)  # two clean folds
        monkeypatch.setattr(stats, "fold_batch", _fold_then(
            lambda: os.kill(os.getpid(), signal.SIGKILL)))
        for record in batch[2 * stats.RECORD_BATCH:]:
            shared.server.record(*record)  # the third fold dies half-way through its rows
        return False

    assert exit_code(fork_child(worker)) == -signal.SIGKILL
    (dead,) = [p for p in tmp_path.glob(f"*{multiproc.SUFFIX}") if p.name != shared.store.name]
    control = struct.unpack_from("=Q", dead.read_bytes(), 16)[0]
    assert control == (2 * stats.RECORD_BATCH) << 1 | 1  # killed mid-fold, as meant
    assert_same(shared.snapshot(), _reference(before + batch))
    assert_same(shared.snapshot(), _reference(before + batch))  # the archive: counted once


def test_a_reader_in_the_middle_of_a_fold_sees_the_rows_from_before_it(tmp_path, monkeypatch):
    shared = Stats(TAGS, multiprocess_dir=str(tmp_path))
    batch = _records(stats.RECORD_BATCH, 3, seed=4)
    seen: list[MetricsSnapshot] = []
    monkeypatch.setattr(stats, "fold_batch", _fold_then(
        lambda: seen.append(_file_snapshot(shared.store.path, shared))))
    for record in batch:
        shared.server.record(*record)
    assert len(seen) == 1 and not shared.server._pending
    assert_same(seen[0], _reference(batch))
    assert_same(shared.snapshot(), _reference(batch))


def test_readers_never_see_rows_and_ring_disagree(tmp_path: Any) -> None:
    """A worker records as fast as it can while this process reads its file: in every read
    the count view and the latency view agree exactly and never step back."""
    shared = Stats(TAGS, multiprocess_dir=str(tmp_path))
    batch = _records(150_000, 3, seed=5)

    def worker() -> bool:
        shared.reset_after_fork()
        for record in batch:
            shared.server.record(*record)
        return True

    pid = fork_child(worker)
    reads, last, done = 0, 0, False
    while not done:
        done = os.waitpid(pid, os.WNOHANG)[0] == pid
        files = [p for p in tmp_path.glob(f"{pid}-*{multiproc.SUFFIX}")]
        if not files:
            continue
        rows = _rows(_file_snapshot(str(files[0]), shared))
        counted = sum(rows[COUNT].values())
        assert counted == sum(row.count for row in rows[LATENCY].values())
        assert counted >= last
        last, reads = counted, reads + 1
    assert reads > 20 and last == len(batch)  # ~340 reads here


def test_a_fold_during_a_readers_copy_makes_it_read_again(tmp_path, monkeypatch) -> None:
    """The copy is taken while a whole fold runs: the control word differs after it, so the
    copy (rows with the fold, ring counted from before it) is dropped and the file read again."""
    shared = Stats(TAGS, multiprocess_dir=str(tmp_path))
    batch = _records(stats.RECORD_BATCH, 2, seed=9)
    for record in batch[:100]:
        shared.server.record(*record)
    copies = []

    class FoldingWhileRead:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __getattr__(self, name: str) -> Any:
            return getattr(self.handle, name)

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.handle.close()

        def read(self) -> bytes:
            if not copies:
                for record in batch[100:]:
                    shared.server.record(*record)  # the 256th folds
            copies.append(self.handle.tell())
            return self.handle.read()

    def opening(path: str, mode: str) -> FoldingWhileRead:
        return FoldingWhileRead(open(path, mode))  # the wrapper closes it

    monkeypatch.setattr(statsfile, "open", opening, raising=False)
    found = _file_snapshot(shared.store.path, shared)
    assert len(copies) == 2 and not shared.server._pending
    assert_same(found, _reference(batch))


def test_scattered_batches_are_written_through_then_the_ring_is_tried_again(tmp_path) -> None:
    shared = Stats(TAGS, multiprocess_dir=str(tmp_path))
    recorder = shared.server
    scattered = _records(stats.RECORD_BATCH, 300, seed=6)  # 256 shapes' rows in one fold
    for record in scattered:
        recorder.record(*record)
    assert recorder._direct == stats.DIRECT_RECORDS and not recorder._pending
    direct = _records(stats.DIRECT_RECORDS, 300, seed=7)
    for record in direct:
        recorder.record(*record)
        assert not recorder._pending
    assert_same(_file_snapshot(shared.store.path, shared), _reference(scattered + direct))
    hot = _records(10, 1, seed=8)
    for record in hot:
        recorder.record(*record)
    assert len(recorder._pending) == 10  # back to the ring
    assert_same(shared.snapshot(), _reference(scattered + direct + hot))


def _version_1_file(path: Any, view: dict[str, Any], key: list[str], values: list[float]) -> None:
    """A file as gatescope wrote it before rings: header, a view entry, a row entry."""
    body = b""
    for meta, doubles in ((["view", view, 5], []), (["row", view["name"], key], values)):
        encoded = json.dumps(meta).encode()
        pad = -(8 + len(encoded)) % 8
        body += struct.pack("=II", len(encoded), len(doubles)) + encoded + b" " * pad
        body += struct.pack(f"={len(doubles)}d", *doubles)
    path.write_bytes(struct.pack("=Q", 16 + len(body)) + b"GSDB0001" + body)


def test_a_file_from_before_rings_is_still_read(tmp_path: Any) -> None:
    view = {"name": COUNT, "description": "d", "unit": "1", "aggregation": "count",
            "tag_keys": ["http.path", "http.method", "http.status"], "bounds": [],
            "measure": COUNT}
    _version_1_file(tmp_path / f"{2 ** 22 + 7}-abc{multiproc.SUFFIX}", view,
                    ["/old", "GET", "200"], [7.0])
    shared = Stats(TAGS, multiprocess_dir=str(tmp_path))
    shared.server.record("h", "/new", "GET", "200", 0.0, 1.0, 1.0)
    assert shared.snapshot().view(COUNT).rows == {("/old", "GET", "200"): 7,
                                                 ("/new", "GET", "200"): 1}


def test_a_reader_kept_between_reads_parses_each_entry_once(tmp_path: Any) -> None:
    shared = Stats(TAGS, multiprocess_dir=str(tmp_path))
    reader = statsfile.FileReader(shared.store.path)
    first = _records(300, 3, seed=10)
    for record in first:
        shared.server.record(*record)
    got = MetricsSnapshot(0, tuple(reader.read().view_data(shared.views())))
    assert_same(got, _reference(first))
    rows_before = len(reader._where)
    more = _records(400, 9, seed=11)  # new paths: new rows appended after the first read
    for record in more:
        shared.server.record(*record)
    got = MetricsSnapshot(0, tuple(reader.read().view_data(shared.views())))
    assert_same(got, _reference(first + more))
    offsets = [offset for rows in reader._by_view.values() for offset, *_ in rows]
    assert len(offsets) == len(set(offsets)) > rows_before  # the new rows, each parsed once
    assert_same(MetricsSnapshot(0, tuple(reader.read().view_data(shared.views()))),
                _reference(first + more))


def test_the_directory_keeps_a_reader_per_live_file_only(tmp_path: Any) -> None:
    shared = Stats(TAGS, multiprocess_dir=str(tmp_path))
    shared.server.record("h", "/a", "GET", "200", 0.0, 1.0, 1.0)

    def worker() -> bool:
        shared.reset_after_fork()
        shared.server.record("h", "/b", "GET", "200", 0.0, 1.0, 1.0)
        return True

    assert exit_code(fork_child(worker)) == 0
    assert shared.snapshot().view(COUNT).rows == {("/a", "GET", "200"): 1, ("/b", "GET", "200"): 1}
    assert list(shared.directory._readers) == [shared.store.name]  # the dead file was absorbed
    shared.server.record("h", "/a", "GET", "200", 0.0, 1.0, 1.0)
    assert shared.snapshot().view(COUNT).rows == {("/a", "GET", "200"): 2, ("/b", "GET", "200"): 1}


def _workers(tmp_path: Any, batches: list[list[tuple[Any, ...]]]) -> list[Stats]:
    """Live workers sharing a directory (one Stats each, in this process: every file is live)."""
    workers = [Stats(TAGS, multiprocess_dir=str(tmp_path)) for _ in batches]
    for worker, records in zip(workers, batches, strict=True):
        for record in records:
            worker.server.record(*record)
    return workers


def test_files_sharing_rows_are_summed_with_their_unfolded_entries(tmp_path: Any) -> None:
    # shared shapes across files; 300 and 700 records leave entries unfolded in the rings
    batches = [_records(300, 6, seed=20), _records(700, 6, seed=21), _records(40, 6, seed=22),
               _records(256, 6, seed=23)]
    workers = _workers(tmp_path, batches)
    assert any(worker.server._pending for worker in workers)
    assert_same(workers[0].snapshot(), _reference([r for batch in batches for r in batch]))


def test_a_file_with_a_ring_entry_for_no_row_adds_nothing(tmp_path: Any, caplog: Any) -> None:
    good, bad = _records(300, 5, seed=24), _records(300, 5, seed=25)
    reader_side, broken = _workers(tmp_path, [good, bad])
    assert len(broken.server._pending) == 300 - stats.RECORD_BATCH  # folded rows, then entries
    layout = broken.server._journal.layout
    with open(broken.store.path, "r+b") as handle:  # the last entry's first row offset: nowhere
        handle.seek(layout.ring_at + (299 % layout.capacity) * layout.size)
        handle.write(struct.pack("=Q", 8))
    assert_same(reader_side.snapshot(), _reference(good))  # none of the broken file's rows
    assert f"skipping unreadable stats file {broken.store.name}" in caplog.text
    assert "ring entry for no row" in caplog.text


def test_a_file_whose_view_has_other_bounds_is_refused_before_it_adds(tmp_path: Any,
                                                                      monkeypatch: Any) -> None:
    first = _workers(tmp_path, [_records(300, 5, seed=26)])[0]
    monkeypatch.setattr(stats, "LATENCY_BOUNDS", (1.0, 10.0, 100.0))
    other = _workers(tmp_path, [_records(300, 5, seed=27)])[0]
    totals = statsfile.read_process_file(first.store.path)
    before = copy.deepcopy(totals.rows)
    with pytest.raises(ValueError, match=f"has view {LATENCY} as distribution .1.0, 10.0, 100.0."):
        statsfile.FileReader(other.store.path).read(totals)
    assert totals.rows == before


def test_rows_add_up_whole_and_a_count_never_meets_a_distribution() -> None:
    summed = totals.Totals()
    summed.add_view(View(LATENCY, "d", "ms", "distribution", ("http.path",), (1.0, 5.0)), 0)
    big = 2 ** 40  # lanes carry nothing into their neighbours
    summed.add_row(LATENCY, ("a",), [1, 2.0, 4.0, 2.0, 2.0, 0, 1, big])
    summed.add_row(LATENCY, ("a",), [2, 1.0, 0.5, 0.5, 0.5, 2, 0, big - 1])
    assert summed.explicit_rows() == {LATENCY: {("a",): [3, 3.0, 4.5, 0.5, 2.0, 2, 1, 2 * big - 1]}}
    [data] = summed.view_data([])
    assert data.rows[("a",)].bucket_counts == (2, 1, 2 * big - 1)
    with pytest.raises(ValueError, match="a row of 1 figures for one of 6"):
        summed.add_row(LATENCY, ("a",), [5])


def test_a_file_from_before_biased_buckets_is_still_read(tmp_path: Any, monkeypatch: Any) -> None:
    before = _records(300, 4, seed=30)  # some folded, some left in the ring
    monkeypatch.setattr(statsfile, "MAGIC", statsfile.MAGIC_V2)  # as files were written before
    monkeypatch.setattr(lanes, "BIAS", 0.0)
    [old] = _workers(tmp_path, [before])
    monkeypatch.undo()
    with open(old.store.path, "rb") as handle:
        assert handle.read(16)[8:] == b"GSDB0002"
    after = _records(300, 4, seed=31)
    [new] = _workers(tmp_path, [after])
    assert_same(new.snapshot(), _reference(before + after))


def test_bucket_counts_are_biased_doubles_in_the_file(tmp_path: Any) -> None:
    """The layout `gatescope.lanes` reads: a distribution row's buckets hold 2**52 + count."""
    [worker] = _workers(tmp_path, [[("h", "/a", "GET", "200", 0.0, 10.0, 2.5)] * 300])
    worker.folded()
    agg = next(a for a in worker.server.views if a.view.name == LATENCY)
    [row] = agg.rows.values()
    assert row[0] == 300 and list(row[5:]).count(2.0 ** 52 + 300) == 1
    assert all(b == 2.0 ** 52 for b in row[5:] if b != 2.0 ** 52 + 300)
    assert agg.data_from(agg.capture()).rows[("/a", "GET", "200")].bucket_counts[2] == 300  # 2 <= 2.5 < 3


@pytest.mark.parametrize("bucket", [0, 6, 34])  # any lane: low ones borrow from the next
def test_a_file_whose_buckets_are_not_biased_counts_adds_nothing(tmp_path: Any, caplog: Any,
                                                                 bucket: int) -> None:
    good, bad = _records(300, 5, seed=32), _records(300, 5, seed=33)
    reader_side, broken = _workers(tmp_path, [good, bad])
    broken.folded()
    agg = next(a for a in broken.server.views if a.view.name == LATENCY)
    last = list(agg.offsets.values())[-1]  # the view's last row: read after all the others
    with open(broken.store.path, "r+b") as handle:
        handle.seek(last + 8 * (5 + bucket))
        handle.write(struct.pack("=d", 1.0))
    assert_same(reader_side.snapshot(), _reference(good))
    assert f"skipping unreadable stats file {broken.store.name}" in caplog.text
    assert f"a row of {LATENCY} whose buckets are not biased counts" in caplog.text
