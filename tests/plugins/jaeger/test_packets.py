"""How encoded spans are grouped into emitBatch packets: in order, within budget, each full."""

from __future__ import annotations

import random

import pytest
from gatescope_jaeger.agent import pack


def header_size(count: int) -> int:
    """Thrift compact list header: one byte below 15 elements, else 0xFC and a varint count."""
    if count < 15:
        return 1
    size = 1
    while True:
        size += 1
        count >>= 7
        if not count:
            return size


@pytest.mark.parametrize("seed", range(40))
def test_groups_keep_order_fit_the_budget_and_are_as_long_as_they_can_be(seed: int) -> None:
    rng = random.Random(seed)
    spans = [bytes([n % 251]) * rng.randint(1, rng.choice([2, 50, 900, 70_000]))
             for n in range(rng.choice([0, 1, 14, 15, 16, 127, 128, 129, 2_000]))]
    budget = rng.choice([1, 20, 100, 1_000, 64_000])
    groups = list(pack(spans, budget))
    assert [s for group in groups for s in group] == spans
    for number, group in enumerate(groups):
        used = sum(map(len, group)) + header_size(len(group))
        assert group and (used <= budget or len(group) == 1)
        if number + 1 < len(groups):  # the next span would not have fitted
            following = groups[number + 1][0]
            assert used - header_size(len(group)) + len(following) \
                + header_size(len(group) + 1) > budget


def test_the_longer_list_header_of_fifteen_spans_or_more_is_counted() -> None:
    spans = [b"x" * 10] * 20
    # 20 spans take 200 bytes and a two-byte list header: 201 bytes hold 19 (190 + 1 byte)
    assert [len(g) for g in pack(spans, 201)] == [19, 1]
    assert [len(g) for g in pack(spans, 202)] == [20]
    many = [b"y"] * 200  # 128 and more: 0xFC and a two-byte count
    assert [len(g) for g in pack(many, 200 + 2)] == [199, 1]
    assert [len(g) for g in pack(many, 200 + 3)] == [200]
