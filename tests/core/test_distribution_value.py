"""`DistributionValue.from_sums` sets the slots itself: its values must be the constructor's."""

from __future__ import annotations

import attrs
import pytest
from gatescope.metrics import DistributionValue


@pytest.mark.parametrize(("sums", "expected"), [
    ((3, 6.0, 14.0, 1.0, 3.0, (1, 1, 1)), DistributionValue(3, 6.0, 1.0, 3.0, 2.0, (1, 1, 1))),
    # an empty row: its running min and max are the infinities it started from
    ((0, 0.0, 0.0, float("inf"), float("-inf"), (0, 0)),
     DistributionValue(0, 0.0, 0.0, 0.0, 0.0, (0, 0))),
    # a sum of squares under total**2 / count (rounding makes it so): no negative spread
    ((2, 1.0, 0.25, 0.5, 0.5, (2,)), DistributionValue(2, 1.0, 0.5, 0.5, 0.0, (2,))),
])
def test_from_sums_is_the_value_the_constructor_makes(
        sums: tuple[int, float, float, float, float, tuple[int, ...]],
        expected: DistributionValue) -> None:
    made = DistributionValue.from_sums(*sums)
    assert type(made) is DistributionValue
    assert attrs.asdict(made) == attrs.asdict(expected)
    assert made == expected and hash(made) == hash(expected)
    assert repr(made) == repr(expected)


def test_a_value_from_sums_is_frozen() -> None:
    made = DistributionValue.from_sums(1, 2.0, 4.0, 2.0, 2.0, (1,))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.count = 2  # type: ignore[misc]
    assert made.mean == 2.0
