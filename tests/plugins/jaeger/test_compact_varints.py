"""The compact encoder's varints (whole-batch ids, cached timestamps and durations) against
plain LEB128."""

from __future__ import annotations

import random
import sys
import threading

import pytest
from gatescope.spans import KIND_SERVER, SpanRecord
from gatescope_jaeger import thrift
from gatescope_jaeger.agent import AgentSender
from gatescope_jaeger.thrift import CompactEncoder
from gatescope_jaeger.varints import SEPARATOR, batch_span_ids


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


CANONICAL = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", None)


def expected_ids(span: SpanRecord, with_parent: bool) -> bytes:
    """Fields 1-3 (and 4) of a compact `jaeger.Span` as generated code writes them, less the
    first field's header."""
    trace = span.trace_id
    values = [trace[16:], trace[:16], span.span_id]
    if with_parent:
        values.append(span.parent_span_id or "0" * 16)
    return b"\x16".join(zigzag_i64(value) for value in values)


def span(trace: str, span_id: str, parent: str | None, name: str = "op") -> SpanRecord:
    return SpanRecord(name, trace, span_id, parent, KIND_SERVER, 1_700_000_000_000_000_000,
                      1_700_000_000_001_500_000, {"http.method": "GET", "http.status_code": 200})


def random_batch(rng: random.Random, count: int, roots: bool) -> list[SpanRecord]:
    def some_id() -> str:
        return rng.choice(EDGE_IDS) if rng.random() < 0.3 else rng.randbytes(8).hex()

    # a batch of children has a parent id in its first span, and then any
    return [span(some_id() + some_id(), some_id(),
                 None if roots else some_id() if not n else rng.choice([None, "", some_id()]))
            for n in range(count)]


@pytest.mark.parametrize("roots", [True, False], ids=["roots", "children"])
@pytest.mark.parametrize("count", [1, 2, 3, 17, 1000, 4096])
def test_every_spans_ids_match_the_reference(count: int, roots: bool) -> None:
    batch = random_batch(random.Random(count), count, roots)
    found = batch_span_ids(batch)
    assert found is not None
    pieces, with_parents = found
    assert with_parents is not roots
    assert pieces == [expected_ids(s, with_parents) for s in batch]


def test_edge_ids_next_to_each_other_do_not_leak_into_their_neighbours() -> None:
    # every 10-byte value beside zero and one-byte values, in every field, both ways round
    values = [x for edge in EDGE_IDS for x in (edge, "0" * 16, "0" * 15 + "1")]
    for _ in range(2):
        batch = [span(values[i - 1] + values[i - 2], values[i], values[i - 3])
                 for i in range(len(values))]
        found = batch_span_ids(batch)
        assert found is not None and found[1]
        assert found[0] == [expected_ids(s, True) for s in batch]
        values.reverse()


def test_zero_ids_survive_the_padding() -> None:
    # a zero value is one 0x00 byte, like the padding deleted around it
    batch = [span("0" * 32, "0" * 16, None), span("0" * 16 + "1" * 16, "2" * 16, "0" * 16)]
    found = batch_span_ids(batch)
    assert found is not None
    assert found[0] == [expected_ids(s, True) for s in batch]
    assert found[0][0] == b"\x00\x16\x00\x16\x00\x16\x00"


def separator_inside() -> str:
    """A span id whose varint holds six 0xFE bytes in a row: the separator."""
    zigzag = sum(0x7E << (7 * k) for k in range(6)) | (1 << 42)  # even: a positive i64
    return f"{zigzag >> 1:016x}"


def test_a_separator_inside_a_varint_encodes_the_batch_one_span_at_a_time() -> None:
    odd = separator_inside()
    assert SEPARATOR in zigzag_i64(odd)
    batch = [span(*CANONICAL), span(CANONICAL[0], odd, None), span(*CANONICAL)]
    assert batch_span_ids(batch) is None
    assert CompactEncoder().spans(batch) == [CompactEncoder().span(s) for s in batch]


def test_no_spans_no_ids() -> None:
    assert batch_span_ids([]) is None
    assert CompactEncoder().spans([]) == []


@pytest.mark.parametrize("odd", [
    ("4bf92f3577b34da6", "00f067aa0ba902b7", None),  # a 64-bit trace id
    ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "f067aa0ba902b7"),  # short parent
], ids=["64-bit-trace", "short-parent"])
def test_a_batch_with_an_id_of_another_length_is_encoded_one_span_at_a_time(
        odd: tuple[str, str, str | None]) -> None:
    batch = [span(*CANONICAL), span(*odd), span(*CANONICAL)]
    assert batch_span_ids(batch) is None
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
    assert batch_span_ids(batch) is None
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
    found = batch_span_ids(batch)
    assert found is not None and not found[1]  # no parent ids: each span's field 4 is constant
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


def test_a_span_that_ends_before_it_starts_lasts_zero(wire) -> None:
    # the wall clock stepped back: Jaeger's duration is never negative
    start = STAMP_BASE * 1000
    batch = [SpanRecord("op", CANONICAL[0], f"{n + 1:016x}", None, 0, start, start - took, {})
             for n, took in enumerate([1, 999, 1000, 8_192_000, 10**12])]
    for encoded in (CompactEncoder().spans(batch), [CompactEncoder().span(s) for s in batch]):
        packet = next(AgentSender("127.0.0.1", 9, "svc").packets(encoded))
        assert [s.duration for s in wire.decode_emit_batch(packet).spans] == [0] * 5


def test_tables_first_filled_by_several_threads_at_once_are_whole() -> None:
    # two jaeger exporters (two Telemetry objects) may make their first packets together: no
    # thread may see a table half filled
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as it can be
    try:
        for _ in range(20):
            del thrift._PAIRS[:], thrift._durations[:]
            failures: list[Exception] = []

            def first_use(failures: list[Exception] = failures) -> None:
                try:
                    thrift._build_durations()
                    thrift._build_pairs()
                    assert thrift._PAIRS[16383] == b"\xff\xff" and thrift._durations[8191]
                except Exception as exc:
                    failures.append(exc)

            threads = [threading.Thread(target=first_use) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not failures
            assert len(thrift._PAIRS) == 1 << 14 and len(thrift._durations) == thrift.DURATIONS_KEPT
    finally:
        sys.setswitchinterval(interval)
