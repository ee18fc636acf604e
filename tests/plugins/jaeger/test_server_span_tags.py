"""Server spans' tags made by the agent encoder straight from the router's HTTP facts."""

from __future__ import annotations

import logging

import pytest
from gatescope import ExporterContext
from gatescope.spans import KIND_CLIENT, KIND_SERVER
from gatescope.testing import exporter_of
from gatescope.tracing import Span, settled
from gatescope_jaeger import JaegerConfig, JaegerExporter
from gatescope_jaeger.thrift import CompactEncoder

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

FACTS = [
    ("/users/42", b"", b"gateway.local", "GET", b"curl/8.5", 200),
    ("/users/42", b"expand=1&x=%20", b"gateway.local", "GET", b"curl/8.5", 200),
    ("/users/42", b"", "gateway.local", "GET", "curl/8.5", 200),  # a server that gives str
    ("/users/42", "expand=1", "gateway.local", "GET", "curl/8.5", 200),  # a WSGI environ's text
    ("/users/7", b"", b"other.local:8080", "POST", b"wrk/4.2", 404),
    ("/users/7", b"", b"other.local:8080", "POST", b"", 500),
    ("/users/7", b"", b"", "DELETE", b"\xe9t\xe9", 499),
    ("/", b"q", b"gateway.local", "GET", b"curl/8.5", 302),
]


def server_span(facts: tuple, *, kind: int = KIND_SERVER, attributes: dict | None = None,
                span_id: str = "00f067aa0ba902b7") -> Span:
    span = Span("/users/{id}", TRACE, None, kind, lambda s: None, span_id)
    span.end_ns = span.start_ns + 1_500_000
    span.http_facts = facts
    if attributes:
        span.attributes.update(attributes)
    return span


def test_server_spans_encode_exactly_as_their_settled_copies() -> None:
    encoder = CompactEncoder()
    batch = [server_span(f) for f in FACTS]
    batch.append(server_span(FACTS[0], attributes={"http.method": "PATCH", "tenant": "a"}))
    batch.append(server_span(FACTS[3], kind=KIND_CLIENT))
    expected = CompactEncoder().spans([settled(s) for s in batch])
    assert encoder.spans(batch) == expected  # facts seen for the first time
    assert encoder.spans(batch) == expected  # every fact now remembered
    assert encoder.spans(batch[::-1]) == expected[::-1]
    # the spans are shared with the other exporters: encoding leaves them as they were
    assert [s.http_facts for s in batch[:len(FACTS)]] == FACTS
    assert all(s.attributes == {} for s in batch[:len(FACTS)])


def test_mixed_facts_from_remembered_values_encode_as_their_settled_copies() -> None:
    encoder = CompactEncoder()
    encoder.spans([server_span(f) for f in FACTS])
    # every value seen before, in combinations never seen
    n = len(FACTS)
    mixed = [server_span((FACTS[i][0], FACTS[i][1], FACTS[(i + 1) % n][2], FACTS[(i + 2) % n][3],
                          FACTS[(i + 3) % n][4], FACTS[(i + 4) % n][5])) for i in range(n)]
    assert encoder.spans(mixed) == CompactEncoder().spans([settled(s) for s in mixed])


def test_remembered_facts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import gatescope_jaeger.server_tags as server_tags

    monkeypatch.setattr(server_tags, "FACT_CACHE_LIMIT", 3)
    encoder = CompactEncoder()
    batch = [server_span((f"/users/{n}", b"", b"h", "GET", b"a", 200)) for n in range(10)]
    expected = CompactEncoder().spans([settled(s) for s in batch])
    assert encoder.spans(batch) == expected
    assert encoder.spans(batch) == expected
    remembered = encoder._server
    assert max(len(remembered._paths), len(remembered._urls), len(remembered._blocks)) <= 3


def make_exporter(listener) -> JaegerExporter:
    config = JaegerConfig(service_name="gateway", agent_endpoint=listener.address)
    context = ExporterContext("krakend", 0, logging.getLogger("test.jaeger"), lambda: None,
                              export_timeout=2.0)
    exporter = JaegerExporter(config, context)
    exporter.start()
    return exporter


def test_facts_that_cannot_be_read_are_reported_and_the_span_still_sent(udp_listener, wire,
                                                                         caplog) -> None:
    exporter = make_exporter(udp_listener)
    assert exporter.settles_http_facts
    broken = server_span(("/users/1", b"", b"h", "GET", b"a", "two hundred"),
                         span_id="1111111111111111")
    caplog.set_level(logging.WARNING, logger="gatescope.exporter.jaeger")
    exporter.export_spans([server_span(FACTS[0]), broken])
    spans = {wire.hex_id(s.spanId): s for s in udp_listener.wait_for_spans(2)}
    assert wire.tags_of(spans["00f067aa0ba902b7"])["http.status_code"] == 200
    assert wire.tags_of(spans["1111111111111111"]) == {"span.kind": "server"}
    assert "could not make the HTTP tags of 1 server spans" in caplog.text
    assert "two hundred" in caplog.text or "TypeError" in caplog.text


def test_the_collector_transport_gets_settled_spans() -> None:
    config = JaegerConfig(service_name="gateway", endpoint="http://127.0.0.1:1/api/traces")
    context = ExporterContext("krakend", 0, logging.getLogger("test.jaeger"), lambda: None,
                              export_timeout=2.0)
    assert not JaegerExporter(config, context).settles_http_facts


@pytest.mark.parametrize("beside", [None, "capture"], ids=["alone", "with-an-exporter-that-"
                                                                     "needs-attributes"])
def test_router_requests_arrive_with_their_http_tags(gatescope_plugins, udp_listener, backend,
                                                     wire, beside) -> None:
    document = wire.layered_document({"agent_endpoint": udp_listener.address,
                                      "service_name": "gateway"})
    if beside:
        document["extra_config"]["telemetry/opencensus"]["exporters"][beside] = {}
    telemetry = gatescope_plugins.telemetry(document)
    worker = next(w for w in telemetry.pipeline.workers if w.name == "jaeger")
    assert worker.settles_http_facts
    requests = [("/users/42", "curl/8.5"), ("/users/42?expand=1", "curl/8.5"),
                ("/users/42", "wrk/4.2"), ("/users/42", "curl/8.5")]
    for path, agent in requests:
        assert wire.three_layer_request(telemetry, backend, path,
                                        headers={"user-agent": agent}) == 200
    assert telemetry.flush(5)
    servers = [s for s in udp_listener.wait_for_spans(4 * len(requests))
               if wire.tags_of(s).get("span.kind") == "server"]
    assert [(wire.tags_of(s)["http.url"], wire.tags_of(s)["http.user_agent"]) for s in servers] \
        == requests
    for server in servers:
        tags = wire.tags_of(server)
        assert tags["http.path"] == "/users/42"
        assert tags["http.host"] == "gateway.local"
        assert tags["http.method"] == "GET"
        assert tags["http.status_code"] == 200
        assert "error" not in tags
    if beside:
        kept = [s for s in exporter_of(telemetry, beside).spans if s.kind == KIND_SERVER]
        assert [s.attributes["http.url"] for s in kept] == [p for p, _ in requests]


def test_long_facts_are_encoded_every_time_not_remembered() -> None:
    agent = b"Mozilla/5.0 " + b"x" * 200
    long_path = "/users/" + "9" * 200
    facts = [("/users/42", b"", b"gateway.local", "GET", agent, 200),
             (long_path, b"", b"gateway.local", "GET", b"curl/8.5", 200),
             ("/users/42", b"q=" + b"z" * 200, b"gateway.local", "GET", b"curl/8.5", 200)]
    encoder = CompactEncoder()
    batch = [server_span(f) for f in facts]
    expected = CompactEncoder().spans([settled(s) for s in batch])
    assert encoder.spans(batch) == expected
    assert encoder.spans(batch) == expected
    remembered = encoder._server
    assert agent not in remembered._agents and b"curl/8.5" in remembered._agents
    assert long_path not in remembered._paths and "/users/42" in remembered._paths
    assert all(len(key) < 128 for key in remembered._urls if isinstance(key, str))
    assert not any(isinstance(key, tuple) for key in remembered._urls)
    assert list(remembered._blocks) == []  # a tag list is kept only when each of its facts is


def test_repeated_facts_reuse_their_whole_tag_list_and_stay_exact() -> None:
    encoder = CompactEncoder()
    first = [server_span(f, span_id=f"{n + 1:016x}") for n, f in enumerate(FACTS)]
    encoder.spans(first)
    kept = dict(encoder._server._blocks)
    assert set(kept) == set(FACTS)  # every fact here is short: each whole list is kept
    again = [server_span(f, span_id=f"{n + 100:016x}") for n, f in enumerate(FACTS)]
    # the same facts on other spans, with the app's attributes, and on a client span
    again.append(server_span(FACTS[1], attributes={"tenant": "a"}))
    again.append(server_span(FACTS[2], kind=KIND_CLIENT))
    assert encoder.spans(again) == CompactEncoder().spans([settled(s) for s in again])
    assert encoder._server._blocks == kept  # found, not made again


def test_facts_that_cannot_be_keys_are_encoded_not_kept() -> None:
    """A server giving an unhashable header value (a bytearray) must not cost the batch."""
    odd = [server_span(("/users/42", b"", bytearray(b"gateway.local"), "GET", b"curl/8.5", 200)),
           server_span(("/users/42", b"", b"gateway.local", "GET", bytearray(b"curl"), 201))]
    batch = [*odd, server_span(FACTS[0])]
    encoder = CompactEncoder()
    expected = CompactEncoder().spans([settled(s) for s in batch])
    assert encoder.spans(batch) == expected
    assert encoder.spans(batch) == expected
    assert list(encoder._server._blocks) == [FACTS[0]]


def test_wsgi_requests_arrive_with_their_http_tags(gatescope_plugins, udp_listener, wire) -> None:
    """The WSGI router leaves its facts as text (an environ has no bytes); the agent encoder
    writes the same tags from them."""
    telemetry = gatescope_plugins.telemetry(wire.layered_document(
        {"agent_endpoint": udp_listener.address, "service_name": "gateway"}))
    worker = next(w for w in telemetry.pipeline.workers if w.name == "jaeger")
    assert worker.settles_http_facts

    def app(environ: dict, start_response) -> list[bytes]:
        status = "404 Not Found" if environ["PATH_INFO"] == "/gone" else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = telemetry.wsgi(app)
    requests = [("/users/42", "expand=1", "curl/8.5", 200), ("/users/42", "", "wrk/4.2", 200),
                ("/gone", "", "curl/8.5", 404), ("/users/42", "expand=1", "curl/8.5", 200)]
    for path, query, agent, _ in requests:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query,
                   "HTTP_HOST": "gateway.local", "HTTP_USER_AGENT": agent,
                   "SERVER_NAME": "gateway.local", "SERVER_PORT": "80",
                   "wsgi.input": __import__("io").BytesIO(b""), "wsgi.url_scheme": "http"}
        body = wrapped(environ, lambda status, headers, exc_info=None: None)
        assert b"".join(body) == b"ok"
        getattr(body, "close", lambda: None)()
    assert telemetry.flush(5)
    spans = udp_listener.wait_for_spans(len(requests))
    got = [(wire.tags_of(s)["http.url"], wire.tags_of(s)["http.user_agent"],
            wire.tags_of(s)["http.status_code"]) for s in spans]
    assert got == [(f"{p}?{q}" if q else p, a, status) for p, q, a, status in requests]
    assert all(wire.tags_of(s)["http.host"] == "gateway.local" for s in spans)
    assert [wire.tags_of(s).get("error") for s in spans] == [None, None, True, None]
