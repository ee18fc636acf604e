"""A whole batch's span ids as Thrift compact writes them, in one pass over one big integer.

One value's LEB128 costs Python ~1 µs of shifts, masks and joins, and cutting each value out of
a shared buffer afterwards costs ~0.25 µs more. Here every step runs once over a single integer
that holds each id in a 128-bit lane of its own (a 64-bit word needs 10 bytes once zigzagged and
cut into 7-bit groups). Each lane's spare bytes carry the next field's header, or a separator
after a span's last id; the zero padding is then deleted and the buffer split at the separators
in C, so a span's ids come out as one piece: `low 0x16 high 0x16 spanId [0x16 parentId]`.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from operator import attrgetter

from gatescope.spans import SpanRecord

LANE_BYTES = 16
ZERO_ID = "0" * 16
FIELD = b"\x16"  # the next i64 field's header (field id delta 1, compact type i64)
# After a span's ids. Six bytes with the high bit set: a varint's other bytes are at most nine
# such bytes in a row, so six can appear inside one (~1 id in 2**40); the pieces are counted and
# the batch is encoded one span at a time when they do not match.
SEPARATOR = b"\xfe" * 6
# Where a zero value goes: its one byte (0x00) would be deleted with the padding. No varint has
# ten bytes with the high bit set in a row, and a separator's are 0xFE.
ZERO_MARK = b"\xff" * 10
_ZERO_MARK_WIDTH = 8 * len(ZERO_MARK)
_MASK_SETS_KEPT = 24  # lane counts (powers of two: ~2x the largest set's memory in all) kept
# Exact batch sizes whose constants are kept: the dispatcher's full batch and a few remainders
# (each set is 32 bytes a lane: 128 KiB for 1,000 spans with parents).
_CONSTANT_SETS_KEPT = 4


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
        self.first = lanes(0x7F)
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


def _span_lanes(ids: int) -> bytes:
    """One span's lanes before its values go in: a field header in the last byte of each lane
    but the last, whose last six bytes are the separator."""
    header = bytes(LANE_BYTES - 1) + FIELD
    return header * (ids - 1) + bytes(LANE_BYTES - len(SEPARATOR)) + SEPARATOR


_LAYOUTS = {ids: _span_lanes(ids) for ids in (3, 4)}  # root spans only; with parent ids
_FIRST_BYTE_HIGH = b"\x80" + bytes(LANE_BYTES - 1)
_constants: dict[tuple[int, int], tuple[int, int]] = {}


def _constants_for(spans: int, ids: int) -> tuple[int, int]:
    """The headers and separators of `spans` spans of `ids` lanes, and a high bit in the first
    byte of each of their lanes (exact: a lane past the batch must stay zero)."""
    key = (spans, ids)
    found = _constants.get(key)
    if found is None:
        if len(_constants) >= _CONSTANT_SETS_KEPT:
            _constants.clear()
        found = _constants[key] = (int.from_bytes(_LAYOUTS[ids] * spans, "little"),
                                   int.from_bytes(_FIRST_BYTE_HIGH * (ids * spans), "little"))
    return found


def _varint_pieces(words: array[int], spans: int, ids: int) -> list[bytes] | None:
    """Each span's `ids` consecutive words (i64s in two's complement) as zigzag LEB128 with a
    field header between them; None when the pieces cannot be told apart (see SEPARATOR)."""
    m = _masks_for(len(words))
    layout, first_high = _constants_for(spans, ids)
    spaced = array("Q", bytes(LANE_BYTES * len(words)))
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
    z |= (((seen >> 8) & m.below_last) + m.below_last) & m.more
    zeros = 0 in words
    if zeros:  # a lane whose first byte saw no group holds zero: ZERO_MARK in its ten bytes
        flags = ((((seen & m.first) + m.first) & first_high) ^ first_high) >> 7
        z |= (flags << _ZERO_MARK_WIDTH) - flags
    packed = (z | layout).to_bytes(LANE_BYTES * len(words), "little").translate(None, b"\0")
    pieces = (packed.replace(ZERO_MARK, b"\0") if zeros else packed).split(SEPARATOR)
    if len(pieces) != spans + 1:  # a separator's bytes inside a varint
        return None
    pieces.pop()  # after the last separator: nothing
    return pieces


_trace_ids = attrgetter("trace_id")
_span_ids = attrgetter("span_id")
_parent_ids = attrgetter("parent_span_id")


def batch_span_ids(batch: Sequence[SpanRecord]) -> tuple[list[bytes], bool] | None:
    """Per span, Jaeger's `traceIdLow`, `traceIdHigh`, `spanId` (and `parentSpanId`, unless
    every span is a root) as compact varints, each after the first behind its field header;
    and whether the parent ids are in. None unless every id is canonical hex (32 and 16
    digits)."""
    count = len(batch)
    traces = list(map(_trace_ids, batch))
    spans = list(map(_span_ids, batch))
    parents = list(map(_parent_ids, batch))
    roots = not any(parents)  # a batch of root spans only: every parent id is zero
    if not roots:
        parents = [parent or ZERO_ID for parent in parents]
    if not count or set(map(len, traces)) != {32} or set(map(len, spans)) != {16} \
            or not (roots or set(map(len, parents)) == {16}):
        return None
    try:
        raw = bytes.fromhex("".join(traces) + "".join(spans) + ("" if roots else "".join(parents)))
    except ValueError:
        return None
    if len(raw) != (24 if roots else 32) * count:  # fromhex skips whitespace
        return None
    found = array("Q", raw)
    found.byteswap()  # big-endian hex -> the little-endian words the lanes read
    ids = 3 if roots else 4
    words = array("Q", bytes(8 * ids * count))  # per span: low, high, span id(, parent id)
    words[0::ids] = found[1:2 * count:2]
    words[1::ids] = found[0:2 * count:2]
    words[2::ids] = found[2 * count:3 * count]
    if not roots:
        words[3::ids] = found[3 * count:]
    pieces = _varint_pieces(words, count, ids)
    return None if pieces is None else (pieces, not roots)
