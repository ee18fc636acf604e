"""The compact encoder's cached timestamp varint against a plain LEB128 reference."""

from __future__ import annotations

import random

from gatescope_jaeger.thrift import CompactEncoder


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def test_neighbouring_and_distant_timestamps_encode_as_zigzag_leb128() -> None:
    encoder = CompactEncoder()
    rng = random.Random(7)
    base = 1_763_950_000_000_000  # µs since the epoch, ~2025-11
    stamps = [base + i for i in range(-20_000, 20_000, 7)]  # crosses many 14-bit boundaries
    stamps += [rng.randrange(0, 1 << 62) for _ in range(2_000)]  # the cached high part changes
    stamps += [0, 1, 8191, 8192, 16383, 16384, (1 << 62) - 1]
    for stamp in stamps:
        assert encoder._timestamp(stamp) == leb128(stamp << 1), stamp
