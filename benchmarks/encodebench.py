"""Encode throughput of the jaeger and zipkin exporters per CPU-second of one core (process time,
so other load on the machine does not skew it): `python benchmarks/encodebench.py`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from gatescope.spans import KIND_CLIENT, KIND_SERVER, SpanRecord

SPANS = 30_000


def realistic_spans(count: int) -> list[SpanRecord]:
    """Three-layer traces (server, pipe, client) with the attributes the layers record."""
    spans: list[SpanRecord] = []
    start = time.time_ns()
    while len(spans) < count:
        trace = f"{random.getrandbits(128):032x}"
        server, pipe, client = (f"{random.getrandbits(64):016x}" for _ in range(3))
        at = start + len(spans) * 1000
        attributes = {"http.method": "GET", "http.path": f"/api/users/{len(spans)}",
                      "http.host": "api.local", "http.user_agent": "curl/8.5",
                      "http.status_code": 200}
        # finished order: innermost first, as the queue receives them
        spans.append(SpanRecord("/api/users/{id}", trace, client, pipe, KIND_CLIENT, at + 10,
                                at + 900_000, dict(attributes, **{"http.url": "http://u/x"})))
        spans.append(SpanRecord("pipe-/api/users/{id}", trace, pipe, server, 0, at + 5,
                                at + 950_000, {}))
        spans.append(SpanRecord("/api/users/{id}", trace, server, None, KIND_SERVER, at,
                                at + 1_000_000, attributes))
    return spans[:count]


def best_rate(run: Callable[[], object], spans: int, repeats: int = 5) -> float:
    """The best spans per CPU-second over `repeats` runs."""
    best = 0.0
    for _ in range(repeats):
        began = time.process_time()
        run()
        best = max(best, spans / (time.process_time() - began))
    return best


def main() -> None:
    from gatescope_jaeger.agent import AgentSender
    from gatescope_jaeger.thrift import BinaryEncoder, CompactEncoder
    from gatescope_zipkin.encoding import list_of_spans
    from gatescope_zipkin.span_text import SpanTextEncoder

    spans = realistic_spans(SPANS)
    binary, compact = BinaryEncoder(), CompactEncoder()
    agent = AgentSender("127.0.0.1", 6831, "bench")
    endpoint = {"serviceName": "bench", "ipv4": "10.0.0.1", "port": 8080}

    text = SpanTextEncoder(endpoint)

    def zipkin() -> None:
        for offset in range(0, SPANS, 1000):  # the core's default batch_size
            text.body(spans[offset:offset + 1000])

    def zipkin_dicts() -> None:
        for offset in range(0, SPANS, 1000):
            list_of_spans(spans[offset:offset + 1000], endpoint)

    for label, run in (
        ("jaeger collector (binary Batch)",
         lambda: BinaryEncoder.batch("bench", [binary.span(s) for s in spans], 1)),
        ("jaeger agent (compact emitBatch packets)",
         lambda: list(agent.packets(compact.spans(spans)))),
        ("zipkin (JSON v2 ListOfSpans, as the exporter writes it)", zipkin),
        ("zipkin through dicts and json (the reference it matches)", zipkin_dicts),
    ):
        print(f"{label}: {best_rate(run, SPANS):,.0f} spans/s")


if __name__ == "__main__":
    main()
