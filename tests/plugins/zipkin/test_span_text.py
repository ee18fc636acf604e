"""The text encoder against the dict encoder: byte-identical bodies for every kind of span
(server spans still carrying their HTTP facts included), first seen and from its caches."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
from gatescope.spans import INTERNAL, KIND_CLIENT, KIND_SERVER, NOT_FOUND, OK, SpanRecord
from gatescope.tracing import Span, settled
from gatescope_zipkin.encoding import list_of_spans
from gatescope_zipkin.span_text import SpanTextEncoder

ENDPOINT = {"serviceName": "gate\"way ☃", "ipv4": "10.0.0.7", "port": 8080}
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
START = 1_700_000_000_000_000_000
VALUES: list[Any] = [
    "text", "", "quote \" and \\ back", "line\nbreak\ttab\x00nul", "naïve ☃ 😀", "\ud800 lone",
    "x" * 300, -3, 0, 1, 2**70, -(2**63), 0.25, 3.0, -0.0, 1e-7, 1e21, float("nan"), float("inf"),
    True, False,
]
FACTS = [
    ("/users/42", b"", b"gateway.local", "GET", b"curl/8.5", 200),
    ("/users/42", b"expand=1&x=%22", b"gateway.local", "GET", b"curl/8.5", 200),
    ("/users/42", b"", "gateway.local", "GET", "curl/8.5", 200),  # a server that gives str
    ("/users/42", "expand=1", "gateway.local", "GET", "curl/8.5", 200),  # a WSGI environ's text
    ("/users/7", b"", b"other:8080", "POST", b"", 404),
    ("/users/7", b"", b"", "DELETE", b"\xe9t\xe9 \"q\"", 499),
    ("/", b"q", b"gateway.local", "GET", b"curl/8.5", 500),
    ("/users/" + "9" * 200, b"", b"gateway.local", "GET", b"Mozilla/5.0 " + b"x" * 200, 200),
]


def record(rng: random.Random, index: int) -> SpanRecord:
    attributes = {f"k{i}" if rng.random() < 0.8 else rng.choice(["error", "tag \"x\""]):
                  rng.choice(VALUES) for i in range(rng.randrange(5))}
    status = rng.choice([OK, OK, INTERNAL, NOT_FOUND, 99])
    trace = rng.choice([TRACE, "0" * 16 + TRACE[16:], rng.randbytes(16).hex(), "ABCDEF" + TRACE[6:]])
    parent = rng.choice([None, rng.randbytes(8).hex()])
    return SpanRecord(rng.choice(["op", "/users/{id}", "naïve \"op\"", ""]), trace,
                      rng.choice([f"{index + 1:016x}", f"{index + 1:016x}", 'not "hex"']), parent,
                      rng.choice([0, KIND_SERVER, KIND_CLIENT]), START + index,
                      START + index + rng.choice([0, 300, 1_000, 1_500_000]), attributes,
                      status, rng.choice(["", "it \"broke\""]) if status else "")


def server_span(facts: tuple, index: int, *, attributes: dict | None = None,
                kind: int = KIND_SERVER) -> Span:
    span = Span("/users/{id}", TRACE, None, kind, lambda s: None, f"{index + 1:016x}")
    span.end_ns = span.start_ns + 2_500_000
    span.http_facts = facts
    span.attributes.update(attributes or {})
    return span


def batch(seed: int) -> list[SpanRecord]:
    rng = random.Random(seed)
    spans: list[SpanRecord] = [record(rng, i) for i in range(200)]
    spans += [server_span(f, 300 + i) for i, f in enumerate(FACTS)]
    spans += [server_span(FACTS[0], 400, attributes={"tenant": "a"}),
              server_span(FACTS[1], 401, kind=KIND_CLIENT),
              server_span(("/odd", b"", bytearray(b"h"), "GET", b"a", 200), 402)]
    rng.shuffle(spans)
    return spans


@pytest.mark.parametrize("seed", range(4))
def test_bodies_are_byte_identical_to_the_dict_encoder(seed: int) -> None:
    spans = batch(seed)
    expected = list_of_spans([settled(s) for s in spans], ENDPOINT)
    encoder = SpanTextEncoder(ENDPOINT)
    assert encoder.body(spans) == expected  # everything seen for the first time
    assert encoder.body(spans) == expected  # from the caches
    assert encoder.body(spans[::-1]) == list_of_spans([settled(s) for s in spans[::-1]], ENDPOINT)
    assert encoder.take_problems() == (0, None)
    # the spans are shared with the other exporters: encoding leaves them as they were
    assert all(s.attributes == {} for s in spans if type(s) is Span and s.http_facts
               and s.kind == KIND_SERVER and s.span_id != f"{400 + 1:016x}")


def test_kept_pieces_are_bounded(monkeypatch: Any) -> None:
    import gatescope_zipkin.span_text as span_text

    monkeypatch.setattr(span_text, "CACHE_LIMIT", 3)
    encoder = SpanTextEncoder(ENDPOINT)
    spans = batch(9)
    expected = list_of_spans([settled(s) for s in spans], ENDPOINT)
    assert encoder.body(spans) == expected and encoder.body(spans) == expected
    assert max(len(encoder._names), len(encoder._tags), len(encoder._facts)) <= 3


def test_long_facts_are_encoded_every_time_not_kept() -> None:
    encoder = SpanTextEncoder(ENDPOINT)
    encoder.body([server_span(f, i) for i, f in enumerate(FACTS)])
    assert FACTS[-1] not in encoder._facts and FACTS[0] in encoder._facts


def test_facts_that_cannot_be_read_are_counted_and_the_span_sent_without_them(caplog) -> None:
    from gatescope import ExporterContext
    from gatescope_zipkin import ZipkinConfig, ZipkinExporter

    broken = server_span(("/users/42", b"", b"h", "GET", b"a", "two hundred"), 1)
    fine = server_span(FACTS[0], 2)
    encoder = SpanTextEncoder(ENDPOINT)
    body = encoder.body([broken, fine])
    count, last = encoder.take_problems()
    assert count == 1 and isinstance(last, TypeError)
    assert encoder.take_problems() == (0, None)
    assert body == list_of_spans([broken, settled(fine)], ENDPOINT)  # broken: no HTTP tags

    sent: list[bytes] = []
    context = ExporterContext("krakend", 0, logging.getLogger("test.zipkin.facts"), lambda: None,
                              export_timeout=2.0)
    exporter = ZipkinExporter(ZipkinConfig(collector_url="http://127.0.0.1:9/api/v2/spans"),
                              context)
    exporter.start()
    exporter._poster.post = sent.append  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING, logger="test.zipkin.facts"):
        exporter.export_spans([broken, fine])
    assert len(sent) == 1 and b'"http.path":"/users/42"' in sent[0]
    assert "could not make the HTTP tags of 1 server spans" in caplog.text
