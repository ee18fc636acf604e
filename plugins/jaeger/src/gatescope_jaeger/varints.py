"""Thrift compact's zigzag varints for a whole batch of 64-bit words at once.

One value's LEB128 costs Python ~1 µs of shifts, masks and joins. Here every step runs once over
a single integer that holds each word of the batch in a 128-bit lane of its own (a 64-bit word
needs 10 bytes once zigzagged and cut into 7-bit groups), so only the final slicing is per value.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from operator import attrgetter

from gatescope.spans import SpanRecord

LANE_BYTES = 16
ZERO_ID = "0" * 16
_MASK_SETS_KEPT = 24  # lane counts (powers of two) whose masks are kept


def _repeat(pattern: int, width: int, lanes: int) -> int:
    """`pattern` in each of `lanes` consecutive fields of `width` bits."""
    return int.from_bytes(pattern.to_bytes(width // 8, "little") * lanes, "little")


def _bits(low: int, high: int) -> int:
    """Bits low..high-1 set."""
    return (1 << high) - (1 << low)


def _byte_runs(value: int, count: int) -> int:
    return int.from_bytes(bytes((value,)) * count, "little")


class _Masks:
    """The lane masks for up to `count` lanes (lanes beyond a batch's stay zero throughout)."""

    def __init__(self, count: int) -> None:
        def lanes(pattern: int, width: int = 128) -> int:
            return _repeat(pattern, width, count * 128 // width)

        self.sign = lanes(1 << 63)
        self.word = lanes(_bits(0, 64))
        self.low56, self.high8 = lanes(_bits(0, 56)), lanes(_bits(56, 64))
        self.low28, self.high28 = lanes(_bits(0, 28), 64), lanes(_bits(28, 56), 64)
        self.low14, self.high14 = lanes(_bits(0, 14), 32), lanes(_bits(14, 28), 32)
        self.low7, self.high7 = lanes(_bits(0, 7), 16), lanes(_bits(7, 14), 16)
        self.groups = lanes(_byte_runs(0x7F, 10))  # the ten 7-bit groups of each lane
        self.first_two = lanes(_byte_runs(0x7F, 2))
        self.below_last = lanes(_byte_runs(0x7F, 9))  # bytes that may carry a "more" bit
        self.more = lanes(_byte_runs(0x80, 9))


_masks: dict[int, _Masks] = {}


def _masks_for(count: int) -> _Masks:
    """Masks for the next power of two lanes: batches cut by time have any size, and building
    masks for 1,000 lanes costs ~150 µs."""
    lanes = 1 << max(4, (count - 1).bit_length())
    masks = _masks.get(lanes)
    if masks is None:
        if len(_masks) >= _MASK_SETS_KEPT:
            _masks.clear()
        masks = _masks[lanes] = _Masks(lanes)
    return masks


def zigzag_varints(words: array[int]) -> list[bytes]:
    """The zigzag LEB128 of each word (an i64 in two's complement), as Thrift compact writes it.

    `words` is an `array("Q")` whose memory holds little-endian words.
    """
    count = len(words)
    if not count:
        return []
    m = _masks_for(count)
    spaced = array("Q", bytes(LANE_BYTES * count))
    spaced[::2] = words
    u = int.from_bytes(spaced, "little")
    # zigzag: 2u for u >= 0, else 2|u| - 1, i.e. (u XOR sign-fill) << 1 with the sign in bit 0
    sign = (u & m.sign) >> 63
    z = (((u ^ ((sign << 64) - sign)) << 1) & m.word) | sign
    # spread each lane's 64 bits into 7-bit groups, one per byte: 56+8, 28+28, 14+14, 7+7
    z = (z & m.low56) | ((z & m.high8) << 8)
    z = (z & m.low28) | ((z & m.high28) << 4)
    z = (z & m.low14) | ((z & m.high14) << 2)
    z = (z & m.low7) | ((z & m.high7) << 1)
    # a byte is followed by more when any byte above it in its lane is non-zero: smear the
    # groups downwards within the lane (the masks stop the next lane's bytes leaking in)
    seen = z | ((z >> 8) & m.groups)
    seen |= (seen >> 16) & m.groups
    seen |= (seen >> 32) & m.groups
    seen |= (seen >> 64) & m.first_two
    # 0x7F + a 7-bit group sets 0x80 exactly when the group is non-zero
    more = ((((seen >> 8) & m.below_last) + m.below_last) & m.more)
    out = (z | more).to_bytes(LANE_BYTES * count, "little")
    # trailing zero bytes are beyond the value; zero itself is one zero byte
    return [out[i:i + 10].rstrip(b"\0") or b"\0" for i in range(0, LANE_BYTES * count, LANE_BYTES)]


_trace_ids = attrgetter("trace_id")
_span_ids = attrgetter("span_id")
_parent_ids = attrgetter("parent_span_id")


def batch_id_varints(batch: Sequence[SpanRecord]) -> list[bytes] | None:
    """The varints of a batch's ids: each trace id's high and low half, then the span ids, then
    the parent ids (zero for none). None unless every id is canonical hex (32 and 16 digits)."""
    traces = list(map(_trace_ids, batch))
    spans = list(map(_span_ids, batch))
    parents = list(map(_parent_ids, batch))
    roots = not any(parents)  # a batch of root spans only: every parent id is zero
    if not roots:
        parents = [parent or ZERO_ID for parent in parents]
    if set(map(len, traces)) != {32} or set(map(len, spans)) != {16} \
            or not (roots or set(map(len, parents)) == {16}):
        return None
    try:
        raw = bytes.fromhex("".join(traces) + "".join(spans) + ("" if roots else "".join(parents)))
    except ValueError:
        return None
    if len(raw) != (24 if roots else 32) * len(batch):  # fromhex skips whitespace
        return None
    words = array("Q", raw)
    words.byteswap()  # big-endian hex -> the little-endian words zigzag_varints reads
    varints = zigzag_varints(words)
    if roots:
        varints += [b"\x00"] * len(batch)
    return varints
