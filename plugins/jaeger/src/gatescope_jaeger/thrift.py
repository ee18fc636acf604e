"""Jaeger's Thrift structs (jaeger.thrift, agent.thrift) written by hand in both wire protocols.

Upstream's generated types encode ~13k spans/s with pure-Python thrift and fail with thrift
0.2x's accelerated protocol, so the plugin writes the few structs it needs directly: each span
is encoded once, independently of its neighbours, so batches can be cut anywhere.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import partial
from itertools import repeat

from gatescope.spans import KIND_CLIENT, KIND_SERVER, OK, SpanRecord
from gatescope.tracing import Span

from gatescope_jaeger.server_tags import ServerSpanTags
from gatescope_jaeger.varints import batch_span_ids

# jaeger.thrift TagType
STRING, DOUBLE, BOOL, LONG = 0, 1, 2, 3
MIN_I64, MAX_I64 = -(2**63), 2**63 - 1
TAG_CACHE_LIMIT = 4096  # distinct (key, value) tags remembered per encoder
ID_CACHE_LIMIT = 8192  # trace and span ids remembered per compact encoder
CACHEABLE_VALUE_LENGTH = 64  # longer string values are encoded every time
TAG_COUNT_AT = 8  # index of the tag list header among a compact span's parts
ROOT_PARENT = b"\x16\x00"  # field 4 of a root span: parentSpanId 0

_KIND_NAMES = {KIND_SERVER: "server", KIND_CLIENT: "client"}
_pack_binary_ids = struct.Struct(">bhqbhqbhqbhq").pack
_pack_binary_times = struct.Struct(">bhibhqbhq").pack
_pack_i32 = struct.Struct(">i").pack
_pack_be_double = struct.Struct(">d").pack
_pack_le_double = struct.Struct("<d").pack
_pack_be_i64 = struct.Struct(">q").pack
_BYTES = [bytes((n,)) for n in range(256)]
_STRUCT_LISTS = [bytes(((n << 4) | 0x0C,)) for n in range(15)]  # compact list<struct> headers

AttributeValue = str | int | float | bool


DURATIONS_KEPT = 1 << 13  # µs: fields 9 (duration) and 10's header kept below this (~0.4 MB)
_durations: list[bytes] = []


def _timing(took: int) -> bytes:
    """Field 9 (duration, µs > 0: its zigzag is 2 * took) and field 10's header."""
    return b"\x16" + varint(took << 1) + b"\x19"


def _build_durations() -> None:
    """Fill `_durations` on first use: spans of up to ~8 ms skip the varint. Made aside and put
    in with one slice assignment, which no other thread can see half done."""
    if not _durations:
        _durations[:] = [_timing(took) for took in range(DURATIONS_KEPT)]


_PAIRS: list[bytes] = []  # 14-bit value -> its two LEB128 bytes, both with the "more" bit


def _build_pairs() -> None:
    """Fill `_PAIRS` on first use (~0.6 MB; only processes that encode compact pay for it), in
    one slice assignment like `_durations`."""
    if not _PAIRS:
        _PAIRS[:] = [bytes(((v & 127) | 128, (v >> 7) | 128)) for v in range(1 << 14)]


def _two(n: int) -> bytes:
    """LEB128 of 0 <= n < 2**14."""
    return _BYTES[n] if n < 128 else bytes(((n & 127) | 128, n >> 7))


def varint(n: int) -> bytes:
    """Unsigned LEB128, as Thrift compact writes lengths, sizes and zigzag integers.

    Unrolled by magnitude (timestamps have ~51 bits, zigzag ids 64): 14 bits per table lookup.
    """
    if n < 128:
        return _BYTES[n]
    if n < 16384:
        return bytes(((n & 127) | 128, n >> 7))
    if not _PAIRS:
        _build_pairs()
    pairs = _PAIRS
    if n < 1 << 28:
        return pairs[n & 16383] + _two(n >> 14)
    if n < 1 << 42:
        return b"".join((pairs[n & 16383], pairs[(n >> 14) & 16383], _two(n >> 28)))
    if n < 1 << 56:
        return b"".join((pairs[n & 16383], pairs[(n >> 14) & 16383], pairs[(n >> 28) & 16383],
                         _two(n >> 42)))
    if n < 1 << 70:
        return b"".join((pairs[n & 16383], pairs[(n >> 14) & 16383], pairs[(n >> 28) & 16383],
                         pairs[(n >> 42) & 16383], _two(n >> 56)))
    parts = []
    while n >= 16384:
        parts.append(pairs[n & 16383])
        n >>= 14
    parts.append(_two(n))
    return b"".join(parts)


_ZIGZAG_NEGATIVE = (1 << 65) - 1  # zigzag(u - 2**64) == 2**65 - 1 - 2u for u > MAX_I64


def id_varint(hex_id: str) -> bytes:
    """A 16-hex-digit id as its signed i64's zigzag varint, without the intermediate steps."""
    value = int(hex_id, 16)
    return varint(value << 1 if value <= MAX_I64 else _ZIGZAG_NEGATIVE - (value << 1))


def zigzag_varint(n: int) -> bytes:
    """A signed i32/i64 in Thrift compact's zigzag form."""
    return varint((n << 1) ^ (n >> 63))


def signed_i64(hex_id: str) -> int:
    """A 16-hex-digit id as the signed i64 Jaeger's IDL carries."""
    value = int(hex_id, 16)
    return value - (1 << 64) if value > MAX_I64 else value


def trace_id_parts(trace_id: str) -> tuple[int, int]:
    """(high, low) signed halves of a 32-hex-digit trace id (high is 0 for 64-bit ids)."""
    return signed_i64(trace_id[:-16] or "0"), signed_i64(trace_id[-16:])


def typed_tag(value: AttributeValue) -> tuple[int, AttributeValue]:
    """The Jaeger tag type for an attribute value; integers outside i64 travel as text."""
    if isinstance(value, bool):
        return BOOL, value
    if isinstance(value, int):
        return (LONG, value) if MIN_I64 <= value <= MAX_I64 else (STRING, str(value))
    if isinstance(value, float):
        return DOUBLE, value
    return STRING, value if isinstance(value, str) else str(value)


def span_tags(span: SpanRecord) -> list[tuple[str, AttributeValue]]:
    """Tags for one span: attributes, then span.kind, status.code/status.message and error."""
    tags: list[tuple[str, AttributeValue]] = list(span.attributes.items())
    kind = _KIND_NAMES.get(span.kind)
    if kind is not None:
        tags.append(("span.kind", kind))
    if span.status_code != OK:
        tags.append(("status.code", span.status_code))
        if span.status_message:
            tags.append(("status.message", span.status_message))
        tags.append(("error", True))
    return tags


def _remember(cache: dict[tuple[str, type, AttributeValue], bytes],
              cache_key: tuple[str, type, AttributeValue], encoded: bytes) -> None:
    """Keep short text, integer and boolean tags (floats vary and -0.0 == 0.0 would alias)."""
    value = cache_key[2]
    if isinstance(value, float) or (isinstance(value, str) and len(value) > CACHEABLE_VALUE_LENGTH):
        return
    if len(cache) >= TAG_CACHE_LIMIT:
        cache.clear()
    cache[cache_key] = encoded


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "replace")  # lone surrogates are not UTF-8


class _TagEncoder:
    """A `jaeger.Tag` struct per (key, value), encoded once: tags repeat from span to span."""

    def __init__(self) -> None:
        self._tags: dict[tuple[str, type, AttributeValue], bytes] = {}

    def tag(self, key: str, value: AttributeValue) -> bytes:
        cache_key = (key, type(value), value)
        encoded = self._tags.get(cache_key)
        if encoded is None:
            vtype, typed = typed_tag(value)
            encoded = self._encode_tag(_utf8(key), vtype, typed)
            _remember(self._tags, cache_key, encoded)
        return encoded

    def _encode_tag(self, raw_key: bytes, vtype: int, typed: AttributeValue) -> bytes:
        raise NotImplementedError


class CompactEncoder(_TagEncoder):
    """Thrift compact protocol: spans for `Agent.emitBatch` UDP packets."""

    def __init__(self) -> None:
        super().__init__()
        # a trace's spans share its id and a child names its parent: encode each id once
        self._ids: dict[str, bytes] = {}
        self._names: dict[str, bytes] = {}
        # Timestamps of neighbouring spans share all but their low 14 bits: keep those bytes.
        self._high = -1
        self._high_bytes = b""
        self._server = ServerSpanTags(self.tag, span_tags, partial(list_header, element_type=0x0C))
        self._kind_tags = {kind: self.tag("span.kind", name) for kind, name in _KIND_NAMES.items()}

    def take_fact_problems(self) -> tuple[int, Exception | None]:
        """Server spans whose HTTP facts could not be made into tags since the last call, and
        the last reason."""
        return self._server.view.take_problems()

    def view(self, span: SpanRecord) -> SpanRecord:
        """The span as its tags describe it (a server span's facts made into attributes)."""
        return self._server.view(span)

    def _timestamp(self, start_us: int) -> bytes:
        """Zigzag varint of a non-negative microsecond timestamp (field 8)."""
        n = start_us << 1
        high = n >> 14
        if not high:
            return varint(n)
        if high != self._high:
            if not _PAIRS:
                _build_pairs()
            self._high_bytes = varint(high)
            self._high = high
        return _PAIRS[n & 16383] + self._high_bytes

    def _id(self, hex_id: str) -> bytes:
        """One id's varint, cached: a trace's spans share its id and a child names its parent."""
        encoded = self._ids.get(hex_id)
        if encoded is None:
            encoded = id_varint(hex_id)
            self._remember_id(hex_id, encoded)
        return encoded

    def _remember_id(self, hex_id: str, encoded: bytes) -> None:
        if len(self._ids) >= ID_CACHE_LIMIT:
            self._ids.clear()
        self._ids[hex_id] = encoded

    def _encode_tag(self, raw_key: bytes, vtype: int, typed: AttributeValue) -> bytes:
        head = b"\x18" + varint(len(raw_key)) + raw_key + b"\x15" + _BYTES[vtype * 2]
        if vtype == STRING:
            raw = _utf8(typed)  # type: ignore[arg-type]
            return head + b"\x18" + varint(len(raw)) + raw + b"\x00"
        if vtype == BOOL:
            return head + (b"\x31" if typed else b"\x32") + b"\x00"
        if vtype == LONG:
            return head + b"\x46" + zigzag_varint(typed) + b"\x00"  # type: ignore[arg-type]
        return head + b"\x27" + _pack_le_double(typed) + b"\x00"  # type: ignore[arg-type]

    def _name(self, name: str) -> bytes:
        """Field 5 (operationName) with its header, cached per name (routes repeat)."""
        encoded = self._names.get(name)
        if encoded is None:
            raw = _utf8(name)
            encoded = b"\x18" + varint(len(raw)) + raw
            if len(self._names) >= TAG_CACHE_LIMIT:
                self._names.clear()
            self._names[name] = encoded
        return encoded

    def span(self, span: SpanRecord, tags: list[tuple[str, AttributeValue]] | None = None) -> bytes:
        """One `jaeger.Span` struct (fields 1-5, 7-10), ending with its stop byte."""
        if not _durations:
            _build_durations()
        trace_id, parent = span.trace_id, span.parent_span_id
        ids = b"\x16".join((self._id(trace_id[-16:]), self._id(trace_id[:-16] or "0"),
                             self._id(span.span_id), self._id(parent) if parent else b"\x00"))
        return self._encode(span, ids, b"", tags)

    def spans(self, batch: Sequence[SpanRecord]) -> list[bytes]:
        """`span` of each span in a batch, the varints of all their ids made at once."""
        if not _durations:
            _build_durations()
        found = batch_span_ids(batch)
        if found is None:  # an id not in its canonical form: one span at a time
            return [self.span(s) for s in batch]
        ids, with_parents = found
        return list(map(self._encode, batch, ids, repeat(b"" if with_parents else ROOT_PARENT)))

    def _encode(self, span: SpanRecord, ids: bytes, parent: bytes,
                tags: list[tuple[str, AttributeValue]] | None = None) -> bytes:
        """The span's struct around `ids` (fields 1-4 but the first header) and `parent`
        (field 4 when `ids` ends with field 3)."""
        start_us = span.start_ns // 1000
        n = start_us << 1  # the zigzag of a timestamp after 1970
        if n >= 0 and n >> 14 == self._high:  # _timestamp's common case, inline, in two parts
            stamp, high = _PAIRS[n & 16383], self._high_bytes
        else:
            stamp, high = self._timestamp(start_us) if n >= 0 else zigzag_varint(start_us), b""
        took = span.end_ns // 1000 - start_us
        name = self._names.get(span.name) or self._name(span.name)
        # field 9's varint and field 10's header: kept below DURATIONS_KEPT (a negative took is 0)
        timing = _durations[took if took > 0 else 0] if took < DURATIONS_KEPT else _timing(took)
        facts = span.http_facts if tags is None and type(span) is Span else None
        if facts is not None:  # a server span's facts, not yet made into attributes
            return b"".join((b"\x16", ids, parent, name, b"\x25\x02\x16", stamp, high, timing,
                             self._server.block(span, facts), b"\x00"))  # type: ignore[arg-type]
        tag = self.tag
        parts = [b"\x16", ids, parent, name, b"\x25\x02\x16", stamp, high, timing,
                 b""]  # the tag list header, once the count is known
        if tags is None:  # span_tags' order, without building its list of pairs
            cached = self._tags.get
            append = parts.append
            for key, value in span.attributes.items():
                append(cached((key, type(value), value)) or tag(key, value))
            kind = self._kind_tags.get(span.kind)
            if kind is not None:
                append(kind)
            if span.status_code != OK:
                parts.append(tag("status.code", span.status_code))
                if span.status_message:
                    parts.append(tag("status.message", span.status_message))
                parts.append(tag("error", True))
        else:
            parts.extend([tag(key, value) for key, value in tags])
        count = len(parts) - TAG_COUNT_AT - 1
        parts[TAG_COUNT_AT] = _STRUCT_LISTS[count] if count < 15 else list_header(count, 0x0C)
        parts.append(b"\x00")
        return b"".join(parts)

    @staticmethod
    def process(service_name: str) -> bytes:
        """A `jaeger.Process` struct with the service name and no tags."""
        raw = _utf8(service_name)
        return b"\x18" + varint(len(raw)) + raw + b"\x00"


def list_header(count: int, element_type: int) -> bytes:
    """Compact list header: size in the high nibble below 15, else a varint after 0xF_."""
    if count < 15:
        return _BYTES[(count << 4) | element_type]
    return bytes((0xF0 | element_type,)) + varint(count)


AGENT_METHOD = b"emitBatch"
MESSAGE_OVERHEAD_MAX = 2 + 5 + 1 + len(AGENT_METHOD)  # protocol id, version|type, seqid, name
BATCH_OVERHEAD_MAX = 2 + 1 + 6 + 1 + 10 + 2  # struct headers, list header, seqNo, stop bytes


def emit_batch_message(
    process: bytes, spans: list[bytes], seq_no: int, message_seq_id: int
) -> bytes:
    """A oneway `Agent.emitBatch(batch)` message in Thrift compact, as the agent reads it."""
    return b"".join([
        b"\x82\x81", varint(message_seq_id & 0x7FFFFFFF), varint(len(AGENT_METHOD)), AGENT_METHOD,
        b"\x1c\x1c", process, b"\x19", list_header(len(spans), 0x0C), *spans,
        b"\x16", zigzag_varint(seq_no), b"\x00\x00",
    ])


def emit_batch_overhead(process: bytes) -> int:
    """Upper bound of the bytes an emitBatch message adds around its spans."""
    return MESSAGE_OVERHEAD_MAX + BATCH_OVERHEAD_MAX + len(process)


class BinaryEncoder(_TagEncoder):
    """Thrift binary protocol: the bare `jaeger.Batch` a collector's /api/traces reads."""

    def _encode_tag(self, raw_key: bytes, vtype: int, typed: AttributeValue) -> bytes:
        head = b"\x0b\x00\x01" + _pack_i32(len(raw_key)) + raw_key + b"\x08\x00\x02" + _pack_i32(vtype)
        if vtype == STRING:
            raw = _utf8(typed)  # type: ignore[arg-type]
            return head + b"\x0b\x00\x03" + _pack_i32(len(raw)) + raw + b"\x00"
        if vtype == BOOL:
            return head + (b"\x02\x00\x05\x01" if typed else b"\x02\x00\x05\x00") + b"\x00"
        if vtype == LONG:
            return head + b"\x0a\x00\x06" + _pack_be_i64(typed) + b"\x00"  # type: ignore[arg-type]
        return head + b"\x04\x00\x04" + _pack_be_double(typed) + b"\x00"  # type: ignore[arg-type]

    def span(self, span: SpanRecord) -> bytes:
        """One `jaeger.Span` struct in Thrift binary, ending with its stop byte."""
        high, low = trace_id_parts(span.trace_id)
        parent = signed_i64(span.parent_span_id) if span.parent_span_id else 0
        name = _utf8(span.name)
        start_us = span.start_ns // 1000
        items = span_tags(span)
        tag = self.tag
        parts = [
            _pack_binary_ids(10, 1, low, 10, 2, high, 10, 3, signed_i64(span.span_id), 10, 4, parent),
            b"\x0b\x00\x05", _pack_i32(len(name)), name,
            _pack_binary_times(8, 7, 1, 10, 8, start_us, 10, 9,
                               max(0, span.end_ns // 1000 - start_us)),
            b"\x0f\x00\x0a\x0c", _pack_i32(len(items)),
        ]
        parts.extend([tag(key, value) for key, value in items])
        parts.append(b"\x00")
        return b"".join(parts)

    @staticmethod
    def batch(service_name: str, spans: list[bytes], seq_no: int) -> bytes:
        """A bare `jaeger.Batch` (no message envelope): process, spans, seqNo."""
        raw = _utf8(service_name)
        return b"".join([
            b"\x0c\x00\x01\x0b\x00\x01", _pack_i32(len(raw)), raw, b"\x00",
            b"\x0f\x00\x02\x0c", _pack_i32(len(spans)), *spans,
            b"\x0a\x00\x03", _pack_be_i64(seq_no), b"\x00",
        ])

