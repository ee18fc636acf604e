"""UDP to a Jaeger agent: spans packed into emitBatch packets that never exceed the limit."""

from __future__ import annotations

import socket
from bisect import bisect_right
from collections.abc import Iterator
from itertools import accumulate

from gatescope.spans import SpanRecord

from gatescope_jaeger.thrift import (
    AttributeValue,
    CompactEncoder,
    emit_batch_message,
    emit_batch_overhead,
    list_header,
    span_tags,
)

MAX_PACKET_BYTES = 65000  # the agent's UDP read buffer (jaeger-client's udpPacketMaxLength)
DROPPED_TAGS_KEY = "gatescope.dropped_tags"


def trim_span(encoder: CompactEncoder, span: SpanRecord, limit: int) -> tuple[bytes, int] | None:
    """The span without its largest attribute tags so it fits `limit`, and how many were cut.

    Deterministic: attribute tags are dropped largest first (the later one on ties) and a
    `gatescope.dropped_tags` tag says how many. None when even no attribute tags do not fit.
    """
    tags = span_tags(span)
    count = len(span.attributes)
    attributes, fixed = tags[:count], tags[count:]
    sizes = [len(encoder.tag(key, value)) for key, value in attributes]
    order = sorted(range(count), key=lambda i: (-sizes[i], -i))
    dropped: set[int] = set()
    total = sum(sizes)
    for index in order:
        dropped.add(index)
        total -= sizes[index]
        marker: list[tuple[str, AttributeValue]] = [(DROPPED_TAGS_KEY, len(dropped))]
        bare = len(encoder.span(span, fixed + marker))
        if bare + total + 4 > limit:  # list header may grow by up to 4 bytes
            continue
        kept = [attributes[i] for i in range(count) if i not in dropped]
        data = encoder.span(span, kept + fixed + marker)
        if len(data) <= limit:
            return data, len(dropped)
    return None


def pack(spans: list[bytes], budget: int) -> Iterator[list[bytes]]:
    """Consecutive groups of encoded spans whose bytes (with list header) stay within budget;
    each group as long as it can be (a span larger than the budget goes alone)."""
    ends = list(accumulate(map(len, spans)))  # bytes of spans[:i + 1]
    start, total = 0, len(spans)
    while start < total:
        before = ends[start - 1] if start else 0
        # the most spans that fit with a one-byte list header, then fewer while the longer
        # header so many spans need does not fit
        stop = max(bisect_right(ends, before + budget - 1, start), start + 1)
        while stop > start + 1 and ends[stop - 1] - before + len(list_header(stop - start, 0x0C)) \
                > budget:
            stop -= 1
        yield spans[start:stop]
        start = stop


class AgentSender:
    """Sends emitBatch packets to one agent address over an unconnected UDP socket."""

    def __init__(self, host: str, port: int, service_name: str,
                 max_packet: int = MAX_PACKET_BYTES) -> None:
        self.host = host
        self.port = port
        self.process = CompactEncoder.process(service_name)
        self.max_packet = max_packet
        # list header is counted by `pack`, so leave it out of the fixed overhead once
        self.span_budget = max_packet - emit_batch_overhead(self.process) + 6
        self.max_span_bytes = self.span_budget - 1  # a one-span list header is one byte
        self.address: tuple[object, ...] | None = None
        self._socket: socket.socket | None = None
        self._seq_no = 0

    def open(self) -> None:
        """Resolve the agent once (as KrakenD does) and open the socket."""
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        self._socket = sock
        self.address = address

    def packets(self, spans: list[bytes]) -> Iterator[bytes]:
        """emitBatch messages carrying `spans` in order, each within `max_packet` bytes.

        Every packet's Batch gets the next `seqNo` so the agent can count lost packets.
        """
        for group in pack(spans, self.span_budget):
            self._seq_no = (self._seq_no + 1) & 0x7FFFFFFF
            yield emit_batch_message(self.process, group, self._seq_no, self._seq_no)

    def send(self, packet: bytes) -> None:
        if self._socket is None or self.address is None:
            raise OSError("the agent socket is not open")
        self._socket.sendto(packet, self.address)

    def reopen(self) -> None:
        """A fresh socket (after a fork the old one is shared with the parent)."""
        self.close()
        if self.address is not None:
            self._socket = socket.socket(_family(self.address), socket.SOCK_DGRAM)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _family(address: tuple[object, ...]) -> socket.AddressFamily:
    return socket.AF_INET6 if len(address) == 4 else socket.AF_INET
