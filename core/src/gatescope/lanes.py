"""A distribution row's bucket counts as one int of 64-bit lanes, so that summing a row over the
files of many workers is one big-int addition, not a Python step per bucket.

Worker files keep bucket counts as doubles biased by 2**52 (`BIAS`): for 0 <= k < 2**52 the
double 2**52 + k is exact and its bits are 0x4330000000000000 + k, so a row's bucket bytes,
read as one int in the byte order they were written in, are the counts' lanes plus a constant.
The writer's arithmetic on the doubles stays exact (adding whole numbers below 2**53).
"""

from __future__ import annotations

import functools
import struct
import sys
from collections.abc import Iterable

BIAS = 2.0 ** 52
ORDER = sys.byteorder  # doubles are written in native order: lanes are read in the same


@functools.cache
def _u64s(count: int) -> struct.Struct:
    return struct.Struct(f"={count}Q")


@functools.cache
def bias(count: int) -> int:
    """What `count` biased buckets add to their lanes when all are read as one int."""
    return int.from_bytes(struct.pack(f"={count}d", *([BIAS] * count)), ORDER)


@functools.cache
def overflow_bits(count: int) -> int:
    """Bits 52-63 of every lane: none is set when each biased double held 2**52 + k, k < 2**52
    (a double outside that range borrows from, or carries into, its lane's top bits)."""
    return int.from_bytes(_u64s(count).pack(*([0xFFF << 52] * count)), ORDER)


def valid(lanes: int, count: int) -> bool:
    """Whether lanes read from `count` biased doubles came from counts (see `overflow_bits`)."""
    return lanes >= 0 and not lanes & overflow_bits(count)


def from_biased(raw: bytes, count: int) -> int:
    """The lanes of `count` biased bucket doubles, as a worker file holds them."""
    lanes = int.from_bytes(raw, ORDER) - bias(count)
    if not valid(lanes, count):
        raise ValueError("bucket doubles outside 2**52 + [0, 2**52): not biased counts")
    return lanes


def from_doubles(doubles: Iterable[float], count: int, biased: bool) -> int:
    """The lanes of bucket doubles at hand (a row being replayed, or from an unbiased file)."""
    if biased:
        return from_biased(struct.pack(f"={count}d", *doubles), count)
    return from_counts(map(int, doubles), count)


def from_counts(counts: Iterable[int], count: int) -> int:
    return int.from_bytes(_u64s(count).pack(*counts), ORDER)


def counts(lanes: int, count: int) -> tuple[int, ...]:
    """The `count` bucket counts the lanes hold."""
    return _u64s(count).unpack(lanes.to_bytes(8 * count, ORDER))
