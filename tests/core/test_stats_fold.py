"""The batched fold (columns per record shape) against a plain per-record reference: counts,
sums, squares, min, max and every bucket, for one shape per batch, many shapes, values on the
bounds, equal values, the tag-set cap and multi-process rows."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from gatescope.metrics import LATENCY_BOUNDS, OVERFLOW_TAG_VALUE, SIZE_BOUNDS
from gatescope.stats import Stats, TagOptions

Record = tuple[str, str, str, str, float, float, float]
MEASURES = (("request_bytes", 4, SIZE_BOUNDS), ("response_bytes", 5, SIZE_BOUNDS),
            ("latency", 6, LATENCY_BOUNDS))


def reference(records: list[Record], key_of: Any, bounds: tuple[float, ...],
              at: int) -> dict[tuple[str, ...], tuple[Any, ...]]:
    """key -> (count, sum, min, max, sum of squared deviation, buckets), one record at a time."""
    grouped: dict[tuple[str, ...], list[float]] = {}
    for record in records:
        grouped.setdefault(key_of(record), []).append(record[at])
    out = {}
    for key, values in grouped.items():
        buckets = [0] * (len(bounds) + 1)
        for value in values:
            buckets[sum(1 for bound in bounds if bound <= value)] += 1
        mean = sum(values) / len(values)
        out[key] = (len(values), sum(values), min(values), max(values),
                    sum((v - mean) ** 2 for v in values), tuple(buckets))
    return out


def assert_matches(stats: Stats, records: list[Record], path_tag: bool) -> None:
    snap = stats.snapshot()

    def key_of(record: Record) -> tuple[str, ...]:
        return (record[1], record[2], record[3]) if path_tag else (record[2], record[3])

    count = snap.view("opencensus.io/http/server/request_count").rows
    expected_count: dict[tuple[str, ...], int] = {}
    for record in records:
        expected_count[key_of(record)] = expected_count.get(key_of(record), 0) + 1
    assert count == expected_count
    for name, at, bounds in MEASURES:
        rows = snap.view("opencensus.io/http/server/" + name).rows
        expected = reference(records, key_of, bounds, at)
        assert set(rows) == set(expected), name
        for key, value in rows.items():
            n, total, low, high, ssd, buckets = expected[key]
            assert (value.count, value.min, value.max, value.bucket_counts) == \
                (n, low, high, buckets), (name, key)
            assert value.sum == pytest.approx(total, rel=1e-12), (name, key)
            assert value.sum_of_squared_deviation == pytest.approx(ssd, rel=1e-6, abs=1e-6)


def records(rng: random.Random, count: int, shapes: int) -> list[Record]:
    """Values drawn on, just below and between the bounds, zeros and repeats included."""
    out = []
    for _ in range(count):
        shape = rng.randrange(shapes)
        latency = rng.choice([rng.choice(LATENCY_BOUNDS), rng.uniform(0, 200_000.0),
                              math.nextafter(rng.choice(LATENCY_BOUNDS), 0), 0.25, 0.0])
        sent = rng.choice([0, 0, rng.choice(SIZE_BOUNDS), rng.randrange(10_000_000)])
        received = rng.choice([1234, rng.choice(SIZE_BOUNDS) - 1, rng.randrange(2_000_000)])
        out.append(("h", f"/p/{shape}", rng.choice(["GET", "POST"]) if shapes > 1 else "GET",
                    "200" if shape % 3 else "404", float(sent), float(received), latency))
    return out


@pytest.mark.parametrize("shapes", [1, 3, 40])
@pytest.mark.parametrize("path_tag", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_batched_fold_matches_the_per_record_reference(shapes: int, path_tag: bool,
                                                       seed: int) -> None:
    rng = random.Random(seed * 100 + shapes)
    stats = Stats(TagOptions(path=path_tag, method=True, status=True))
    batch = records(rng, 1000, shapes)
    for i, record in enumerate(batch):
        stats.server.record(*record)
        if i % 337 == 0:
            stats.snapshot()  # folds a part-batch in between
    assert_matches(stats, batch, path_tag)


def test_equal_values_in_a_batch_fold_as_one_bucket_and_exact_sums() -> None:
    stats = Stats(TagOptions(method=True, status=True))
    batch = [("h", "", "GET", "200", 0.0, 2048.0, 3.0)] * (stats.server.batch * 2)
    for record in batch:
        stats.server.record(*record)
    assert_matches(stats, batch, False)
    sizes = stats.snapshot().view("opencensus.io/http/server/response_bytes").rows[("GET", "200")]
    assert sizes.sum == 2048.0 * len(batch) and sizes.sum_of_squared_deviation == 0.0


def test_a_mixed_batch_over_the_tag_set_cap_counts_every_record() -> None:
    stats = Stats(TagOptions(path=True), max_tag_sets=5)
    batch = [("h", f"/p/{i % 9}", "GET", "200", 0.0, 10.0, 1.0 + i) for i in range(200)]
    for record in batch:
        stats.server.record(*record)
    rows = stats.snapshot().view("opencensus.io/http/server/latency").rows
    assert sum(row.count for row in rows.values()) == 200
    kept = {f"/p/{i}" for i in range(5)}  # the first five paths seen have rows of their own
    assert set(rows) == {(path,) for path in kept} | {(OVERFLOW_TAG_VALUE,)}
    assert rows[(OVERFLOW_TAG_VALUE,)].count == sum(1 for r in batch if r[1] not in kept) == 88
    assert stats.folded()["opencensus.io/http/server/latency"] == rows[(OVERFLOW_TAG_VALUE,)].count


def test_multiprocess_rows_match_the_reference(tmp_path: Any) -> None:
    stats = Stats(TagOptions(path=True, method=True, status=True),
                  multiprocess_dir=str(tmp_path))
    batch = records(random.Random(7), 300, 4)
    for record in batch:
        stats.server.record(*record)
    assert_matches(stats, batch, True)


def test_a_hot_shape_beside_scattered_ones_folds_both_ways() -> None:
    """One shape with most of a batch (folded as columns) and a few with a record or two each
    (folded one by one), in one batch and out of order."""
    stats = Stats(TagOptions(path=True, method=True, status=True))
    rng = random.Random(11)
    batch: list[Record] = [("h", "/hot", "GET", "200", 0.0, 512.0, rng.uniform(0.1, 80.0))
                           for _ in range(stats.server.batch - 9)]
    batch += [("h", f"/cold/{i % 6}", "POST", "201", 100.0 * i, 7.0, 2.5 * i) for i in range(9)]
    rng.shuffle(batch)
    for record in batch:
        stats.server.record(*record)
    assert not stats.server._pending  # exactly one batch, folded when it filled up
    assert_matches(stats, batch, True)


def test_a_batch_varying_in_one_tag_only_keeps_each_shape_apart() -> None:
    for varying in range(4):
        stats = Stats(TagOptions(host=True, path=True, method=True, status=True))
        batch = []
        for i in range(stats.server.batch):
            shape = ["h", "/p", "GET", "200"]
            shape[varying] = f"{shape[varying]}{i % 2}"
            batch.append((*shape, 0.0, float(i % 3), 1.0 + i % 5))
        for record in batch:
            stats.server.record(*record)
        rows = stats.snapshot().view("opencensus.io/http/server/latency").rows
        assert sorted(row.count for row in rows.values()) == [128, 128], varying
        assert sum(row.sum for row in rows.values()) == sum(r[6] for r in batch)


@pytest.mark.parametrize("multiprocess", [False, True])
def test_a_snapshot_makes_its_values_outside_the_recorders_lock(monkeypatch, tmp_path,
                                                                multiprocess):
    # A request whose record must fold waits for the lock: a scrape holds it only to fold and
    # copy the rows, not while it makes 1,000s of distribution values (~6x longer).
    from gatescope.metrics import DistributionValue

    stats = Stats(TagOptions(path=True, method=True, status=True),
                  multiprocess_dir=str(tmp_path) if multiprocess else None)
    recorder = stats.server
    for i in range(300):  # past a batch: some folded, some queued
        recorder.record("", f"/p/{i % 7}", "GET", "200", i, 2 * i, 1.5)
    held: list[bool] = []
    real = DistributionValue.from_sums

    def spy(*args: Any) -> DistributionValue:
        held.append(recorder._lock.locked())
        return real(*args)

    monkeypatch.setattr(DistributionValue, "from_sums", spy)
    views = {data.view.name: data for data in recorder.snapshot()}
    assert held and not any(held)
    sizes = views["opencensus.io/http/server/request_bytes"].rows
    assert sum(value.count for value in sizes.values()) == 300
    assert sizes[("/p/0", "GET", "200")].sum == sum(range(0, 300, 7))
    counts = views["opencensus.io/http/server/request_count_by_method"].rows
    assert counts[("GET", "/p/0", "200")] == len(range(0, 300, 7))
    recorder.record("", "/p/0", "GET", "200", 1, 2, 1.5)
    recorder.snapshot()  # the rows were copied: what was returned does not move
    assert sizes[("/p/0", "GET", "200")].count == len(range(0, 300, 7))
