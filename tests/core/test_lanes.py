"""Bucket counts kept as doubles biased by 2**52 read back as lanes of one int (`gatescope.lanes`)."""

from __future__ import annotations

import struct

import pytest
from gatescope import lanes


def test_counts_round_trip_through_biased_doubles_and_add_lane_by_lane() -> None:
    counts = [0, 1, 2 ** 40, 2 ** 52 - 1]
    raw = struct.pack("=4d", *(lanes.BIAS + c for c in counts))
    read = lanes.from_biased(raw, 4)
    assert lanes.counts(read, 4) == tuple(counts)
    more = lanes.from_counts([3, 0, 2 ** 40, 1], 4)
    assert lanes.counts(read + more, 4) == (3, 1, 2 ** 41, 2 ** 52)  # no lane spills over
    assert lanes.from_doubles([5.0, 0.0], 2, biased=False) == lanes.from_counts([5, 0], 2)
    assert lanes.from_doubles([lanes.BIAS + 5, lanes.BIAS], 2, biased=True) == \
        lanes.from_counts([5, 0], 2)


@pytest.mark.parametrize("bad", [0.0, 1.0, 2.0 ** 52 - 1, 2.0 ** 53, -1.0, float("inf")])
@pytest.mark.parametrize("at", [0, 1, 2])
def test_a_double_that_is_not_a_biased_count_is_refused_in_any_lane(bad: float, at: int) -> None:
    doubles = [lanes.BIAS + 5] * 3
    doubles[at] = bad
    with pytest.raises(ValueError, match="not biased counts"):
        lanes.from_biased(struct.pack("=3d", *doubles), 3)
