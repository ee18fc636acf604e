"""The compact encoder's varints (whole-batch ids, cached timestamps) against plain LEB128."""

from __future__ import annotations

import random
from array import array

import pytest
from gatescope.spans import KIND_SERVER, SpanRecord
from gatescope_jaeger.agent import AgentSender
from gatescope_jaeger.thrift import CompactEncoder
from gatescope_jaeger.varints import batch_id_varints, zigzag_varints


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


def zigzag_i64(hex_id: str) -> bytes:
    """The id as Jaeger's signed i64, zigzagged, as Thrift compact writes it."""
    value = int(hex_id, 16)
    signed = value - (1 << 64) if value >= 1 << 63 else value
    return leb128((signed << 1) ^ (signed >> 63))


EDGE_IDS = (
    ["0" * 16, "0" * 15 + "1", "7fffffffffffffff", "8000000000000000", "ffffffffffffffff",
     "4000000000000000", "00000000000000ff", "0100000000000000", "00000000000000" + "7f"]
    + [f"{1 << bit:016x}" for bit in range(64)]
    + [f"{(1 << bit) - 1:016x}" for bit in range(1, 65)]
    + [f"{(1 << 64) - (1 << bit):016x}" for bit in range(64)]
)


def words(hex_ids: list[str]) -> array[int]:
    packed = array("Q", bytes.fromhex("".join(hex_ids)))
    packed.byteswap()
    return packed


@pytest.mark.parametrize("count", [1, 2, 3, 17, 1000, 4096])
def test_every_lane_matches_the_reference(count: int) -> None:
    rng = random.Random(count)
    ids = [rng.choice(EDGE_IDS) if rng.random() < 0.3 else rng.randbytes(8).hex()
           for _ in range(count)]
    assert zigzag_varints(words(ids)) == [zigzag_i64(i) for i in ids]


def test_edge_ids_next_to_each_other_do_not_leak_into_their_neighbours() -> None:
    # every 10-byte value next to zero and one-byte values, both ways round
    ids = [x for edge in EDGE_IDS for x in (edge, "0" * 16, "0" * 15 + "1")]
    assert zigzag_varints(words(ids)) == [zigzag_i64(i) for i in ids]
    ids.reverse()
    assert zigzag_varints(words(ids)) == [zigzag_i64(i) for i in ids]


def test_no_words_no_varints() -> None:
    assert zigzag_varints(array("Q")) == []


def span(trace: str, span_id: str, parent: str | None, name: str = "op") -> SpanRecord:
    return SpanRecord(name, trace, span_id, parent, KIND_SERVER, 1_700_000_000_000_000_000,
                      1_700_000_000_001_500_000, {"http.method": "GET", "http.status_code": 200})


def test_batch_ids_in_order_high_low_then_spans_then_parents() -> None:
    batch = [span("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", None),
             span("ffffffffffffffff0000000000000001", "8000000000000000", "00f067aa0ba902b7")]
    expected = [zigzag_i64(h) for h in ("4bf92f3577b34da6", "a3ce929d0e0e4736",
                                        "ffffffffffffffff", "0000000000000001",
                                        "00f067aa0ba902b7", "8000000000000000",
                                        "0000000000000000", "00f067aa0ba902b7")]
    assert batch_id_varints(batch) == expected


CANONICAL = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", None)


@pytest.mark.parametrize("odd", [
    ("4bf92f3577b34da6", "00f067aa0ba902b7", None),  # a 64-bit trace id
    ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "f067aa0ba902b7"),  # short parent
], ids=["64-bit-trace", "short-parent"])
def test_a_batch_with_an_id_of_another_length_is_encoded_one_span_at_a_time(
        odd: tuple[str, str, str | None]) -> None:
    batch = [span(*CANONICAL), span(*odd), span(*CANONICAL)]
    assert batch_id_varints(batch) is None
    assert CompactEncoder().spans(batch) == [CompactEncoder().span(s) for s in batch]


def test_upper_case_ids_encode_as_their_value() -> None:
    batch = [span(*CANONICAL), span("4BF92F3577B34DA6A3CE929D0E0E4736", "00F067AA0BA902B7", None)]
    whole = CompactEncoder().spans(batch)
    assert whole[0] == whole[1] == CompactEncoder().span(batch[1])


@pytest.mark.parametrize("odd", [
    ("4bf92f3577b34da6a3ce929d0e0e473g", "00f067aa0ba902b7", None),
    ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa 0ba902b", None),
], ids=["not-hex", "whitespace"])
def test_a_batch_with_an_id_that_is_not_hex_fails_as_one_span_at_a_time(
        odd: tuple[str, str, str | None]) -> None:
    batch = [span(*CANONICAL), span(*odd)]
    assert batch_id_varints(batch) is None
    with pytest.raises(ValueError):
        CompactEncoder().span(batch[1])
    with pytest.raises(ValueError):
        CompactEncoder().spans(batch)


def test_a_batch_encodes_as_its_spans_one_at_a_time() -> None:
    rng = random.Random(3)
    batch = []
    for n in range(500):
        trace = rng.choice([rng.randbytes(16).hex(), "0" * 16 + rng.randbytes(8).hex(), "f" * 32])
        batch.append(span(trace, rng.randbytes(8).hex(),
                          rng.choice([None, rng.randbytes(8).hex(), "8000000000000000"]),
                          name=f"/route/{n % 7}"))
    assert CompactEncoder().spans(batch) == [CompactEncoder().span(s) for s in batch]


def test_a_batch_of_root_spans_encodes_as_its_spans_one_at_a_time() -> None:
    rng = random.Random(4)
    batch = [span(rng.randbytes(16).hex(), rng.randbytes(8).hex(), rng.choice([None, ""]))
             for _ in range(300)]
    ids = batch_id_varints(batch)
    assert ids is not None and ids[900:] == [b"\x00"] * 300
    assert CompactEncoder().spans(batch) == [CompactEncoder().span(s) for s in batch]


STAMP_BASE = 1_763_950_000_000_000  # µs since the epoch, ~2025-11


def stamps() -> list[int]:
    rng = random.Random(7)
    found = [STAMP_BASE + i for i in range(-20_000, 20_000, 7)]  # crosses 14-bit boundaries
    found += [rng.randrange(0, 1 << 62) for _ in range(2_000)]  # the cached high part changes
    return [*found, 0, 1, 8191, 8192, 16383, 16384, (1 << 62) - 1]


def test_neighbouring_and_distant_timestamps_encode_as_zigzag_leb128() -> None:
    encoder = CompactEncoder()
    for stamp in stamps():
        assert encoder._timestamp(stamp) == leb128(stamp << 1), stamp


def test_timestamps_and_durations_decode_as_written(wire) -> None:
    rng = random.Random(8)
    every = stamps()
    took = [rng.choice([0, 1, 127, 128, 8191, 8192, 10**9]) for _ in every]
    batch = [SpanRecord("op", "4bf92f3577b34da6a3ce929d0e0e4736", f"{n + 1:016x}", None, 0,
                        stamp * 1000 + 999, (stamp + us) * 1000 + 999, {})
             for n, (stamp, us) in enumerate(zip(every, took, strict=True))]
    sender = AgentSender("127.0.0.1", 9, "svc")
    decoded = [span for packet in sender.packets(CompactEncoder().spans(batch))
               for span in wire.decode_emit_batch(packet).spans]
    assert [(s.startTime, s.duration) for s in decoded] == list(zip(every, took, strict=True))
