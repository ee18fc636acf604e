"""The agent transport: Thrift compact `emitBatch` over UDP, decoded by thriftpy2 from the IDL."""

from __future__ import annotations

import logging
import time

import pytest
from gatescope import ExporterContext, ExporterStartError
from gatescope.spans import INTERNAL, KIND_CLIENT, KIND_SERVER, NOT_FOUND, SpanRecord
from gatescope.testing import exporter_of, krakend_config
from gatescope.tracing import current
from gatescope_jaeger import JaegerConfig, JaegerExporter
from gatescope_jaeger.agent import MAX_PACKET_BYTES, trim_span
from gatescope_jaeger.thrift import CompactEncoder

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def make_exporter(listener, **overrides):
    config = JaegerConfig(service_name="gateway", agent_endpoint=listener.address, **overrides)
    context = ExporterContext("krakend", 0, logging.getLogger("test.jaeger"), lambda: None,
                              export_timeout=2.0)
    exporter = JaegerExporter(config, context)
    exporter.start()
    return exporter


def record(name="op", *, span_id="00f067aa0ba902b7", parent=None, kind=0, start=1_700_000_000_000_000_000,
           duration_ns=1_500_000, attributes=None, status=0, message="", trace=TRACE):
    return SpanRecord(name, trace, span_id, parent, kind, start, start + duration_ns,
                      dict(attributes or {}), status, message)


@pytest.mark.parametrize("export_process", [False, True], ids=["in-process", "export-process"])
def test_tracer_spans_arrive_as_one_decodable_trace(gatescope_plugins, udp_listener, wire,
                                                    export_process):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"jaeger": {"agent_endpoint": udp_listener.address, "service_name": "gateway"}},
        sample_rate=100, export_process=export_process))
    assert (type(exporter_of(telemetry, "jaeger")).__name__ == "OffloadedExporter") is export_process
    tracer = telemetry.tracer
    root = tracer.start_root("/users/{id}", KIND_SERVER, None)
    root.set_attribute("http.method", "GET")
    token = current.set(root)
    pipe = tracer.start_child("pipe-/users/{id}", 0)
    inner = current.set(pipe)
    client = tracer.start_child("/u/42", KIND_CLIENT)
    client.set_attribute("http.status_code", 404)
    client.set_attribute("latency", 0.25)
    client.set_attribute("retried", False)
    client.set_status(NOT_FOUND, "no such user")
    client.end()
    current.reset(inner)
    pipe.end()
    current.reset(token)
    root.end()
    assert telemetry.flush(5)
    spans = {s.operationName: s for s in udp_listener.wait_for_spans(3)}
    assert set(spans) == {"/users/{id}", "pipe-/users/{id}", "/u/42"}
    batch = udp_listener.batches()[0]
    assert batch.process.serviceName == "gateway"
    server, middle, outgoing = spans["/users/{id}"], spans["pipe-/users/{id}"], spans["/u/42"]
    assert {wire.trace_hex(s) for s in spans.values()} == {root.trace_id}
    assert wire.hex_id(server.spanId) == root.span_id and server.parentSpanId == 0
    assert wire.hex_id(middle.spanId) == pipe.span_id and middle.parentSpanId == server.spanId
    assert wire.hex_id(outgoing.spanId) == client.span_id and outgoing.parentSpanId == middle.spanId
    assert all(s.flags == 1 for s in spans.values())
    assert wire.tags_of(server) == {"http.method": "GET", "span.kind": "server"}
    assert wire.tags_of(middle) == {}
    assert wire.tags_of(outgoing) == {
        "http.status_code": 404, "latency": 0.25, "retried": False, "span.kind": "client",
        "status.code": NOT_FOUND, "status.message": "no such user", "error": True,
    }
    assert server.startTime == root.start_ns // 1000
    assert server.duration == root.end_ns // 1000 - root.start_ns // 1000


def test_three_layer_request_end_to_end(gatescope_plugins, udp_listener, backend, wire):
    telemetry = gatescope_plugins.telemetry(wire.layered_document(
        {"agent_endpoint": udp_listener.address, "service_name": "gateway"}))
    assert wire.three_layer_request(telemetry, backend) == 200
    assert telemetry.flush(5)
    spans = udp_listener.wait_for_spans(4)
    by_name = {s.operationName: s for s in spans}
    assert set(by_name) == {"/users/{id}", "pipe-/users/{id}", "backend-/u/{id}", "/u/42"}, by_name
    server, pipe = by_name["/users/{id}"], by_name["pipe-/users/{id}"]
    backend, client = by_name["backend-/u/{id}"], by_name["/u/42"]
    assert len({wire.trace_hex(s) for s in spans}) == 1
    assert server.parentSpanId == 0
    assert pipe.parentSpanId == server.spanId
    assert backend.parentSpanId == pipe.spanId
    assert client.parentSpanId == backend.spanId
    assert wire.tags_of(server)["span.kind"] == "server"
    assert wire.tags_of(client)["span.kind"] == "client"
    assert "error" not in wire.tags_of(server)
    assert all(b.process.serviceName == "gateway" for b in udp_listener.batches())


def test_failed_backend_marks_error_tags(gatescope_plugins, udp_listener, backend, wire):
    telemetry = gatescope_plugins.telemetry(wire.layered_document(
        {"agent_endpoint": udp_listener.address, "service_name": "gateway"}))
    backend.status = 503
    assert wire.three_layer_request(telemetry, backend) == 502
    assert telemetry.flush(5)
    client = {s.operationName: s for s in udp_listener.wait_for_spans(4)}["/u/42"]
    tags = wire.tags_of(client)
    assert tags["error"] is True
    assert tags["status.code"] != 0
    assert tags["http.status_code"] == 503


def test_one_microsecond_and_error_spans(udp_listener, wire):
    exporter = make_exporter(udp_listener)
    exporter.export_spans([
        record("tiny", duration_ns=1_000),
        record("failed", span_id="1111111111111111", parent="00f067aa0ba902b7",
               status=INTERNAL, message="backend exploded"),
        record("negative-ids", span_id="ffffffffffffffff", trace="8" + "0" * 31),
        record("short-trace", span_id="0000000000000001", trace="0" * 16 + "abcdef0123456789"),
    ])
    spans = {s.operationName: s for s in udp_listener.wait_for_spans(4)}
    assert spans["tiny"].duration == 1
    assert wire.tags_of(spans["failed"]) == {
        "status.code": INTERNAL, "status.message": "backend exploded", "error": True}
    assert spans["failed"].parentSpanId == int("00f067aa0ba902b7", 16)
    assert spans["negative-ids"].spanId == -1
    assert spans["negative-ids"].traceIdHigh == -(2**63) and spans["negative-ids"].traceIdLow == 0
    assert spans["short-trace"].traceIdHigh == 0
    assert wire.hex_id(spans["short-trace"].traceIdLow) == "abcdef0123456789"


def test_ten_thousand_spans_split_into_packets_none_lost(udp_listener, wire):
    exporter = make_exporter(udp_listener)
    spans = [record(f"op-{i}", span_id=f"{i + 1:016x}", attributes={"i": i, "path": f"/items/{i}"})
             for i in range(10_000)]
    for start in range(0, len(spans), 1000):
        exporter.export_spans(spans[start:start + 1000])
    received = udp_listener.wait_for_spans(10_000)
    assert len(udp_listener.packets) == exporter.packets_sent > 10
    assert max(len(p) for p in udp_listener.packets) <= MAX_PACKET_BYTES
    assert sorted(wire.hex_id(s.spanId) for s in received) == sorted(s.span_id for s in spans)
    assert exporter.spans_sent == 10_000
    assert all(wire.tags_of(s)["i"] == int(wire.hex_id(s.spanId), 16) - 1 for s in received)
    seq = [b.seqNo for b in udp_listener.batches()]
    assert seq == list(range(seq[0], seq[0] + len(seq)))


def test_ten_thousand_spans_through_the_pipeline_counted(gatescope_plugins, udp_listener):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"jaeger": {"agent_endpoint": udp_listener.address, "service_name": "gateway"}},
        sample_rate=100))
    for index in range(10_000):
        span = telemetry.tracer.start_root(f"/r/{index}", KIND_SERVER, None)
        span.end()
    assert telemetry.flush(20)
    assert len(udp_listener.wait_for_spans(10_000)) == 10_000
    worker = next(w for w in telemetry.pipeline.workers if w.name == "jaeger")
    assert worker.exported == 10_000 and worker.failed == 0
    assert exporter_of(telemetry, "jaeger").spans_sent == 10_000


def test_span_too_large_for_a_packet_is_trimmed_deterministically(udp_listener, wire, caplog):
    exporter = make_exporter(udp_listener)
    huge = "x" * 70_000
    attributes = {"small": "s", "big": huge, "medium": "m" * 1000, "n": 7}
    exporter.export_spans([record("big-span", attributes=attributes, status=INTERNAL),
                           record("after", span_id="2222222222222222")])
    spans = {s.operationName: s for s in udp_listener.wait_for_spans(2)}
    assert set(spans) == {"big-span", "after"}
    tags = wire.tags_of(spans["big-span"])
    assert tags == {"small": "s", "medium": "m" * 1000, "n": 7, "status.code": INTERNAL,
                    "error": True, "gatescope.dropped_tags": 1}
    assert exporter.spans_trimmed == 1 and exporter.spans_too_large == 0
    assert max(len(p) for p in udp_listener.packets) <= MAX_PACKET_BYTES
    assert "cut 1 tags" in caplog.text and huge not in caplog.text
    # trimming is deterministic: the same span gives the same bytes
    one = trim_span(CompactEncoder(), record("big-span", attributes=attributes), 60_000)
    two = trim_span(CompactEncoder(), record("big-span", attributes=attributes), 60_000)
    assert one is not None and one == two and one[1] == 1


def test_span_too_large_even_without_tags_is_dropped_and_counted(udp_listener, caplog):
    exporter = make_exporter(udp_listener)
    exporter.export_spans([record("n" * 70_000), record("fine", span_id="3333333333333333")])
    spans = udp_listener.wait_for_spans(1)
    time.sleep(0.1)
    assert [s.operationName for s in udp_listener.spans()] == ["fine"] == [s.operationName for s in spans]
    assert exporter.spans_too_large == 1 and exporter.spans_sent == 1
    assert "dropped span" in caplog.text


def test_collector_wins_and_no_udp_is_sent(gatescope_plugins, udp_listener, collector, wire):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"jaeger": {"endpoint": collector.url, "agent_endpoint": udp_listener.address,
                    "service_name": "gateway"}}, sample_rate=100))
    telemetry.tracer.start_root("/only-http", KIND_SERVER, None).end()
    assert telemetry.flush(5)
    assert [s.operationName for s in collector.spans()] == ["/only-http"]
    time.sleep(0.2)
    assert udp_listener.packets == []
    assert exporter_of(telemetry, "jaeger").transport == "collector"


def test_collector_only_opens_no_udp_socket(gatescope_plugins, collector, wire):
    try:
        default_agent = wire.UDPListener(6831)  # where upstream would send regardless
    except OSError:
        pytest.skip("127.0.0.1:6831 is taken; cannot observe the default agent port")
    try:
        telemetry = gatescope_plugins.telemetry(krakend_config(
            {"jaeger": {"endpoint": collector.url, "service_name": "gateway"}}, sample_rate=100))
        telemetry.tracer.start_root("/x", KIND_SERVER, None).end()
        assert telemetry.flush(5)
        assert len(collector.spans()) == 1
        time.sleep(0.2)
        assert default_agent.packets == []
        assert exporter_of(telemetry, "jaeger")._agent is None
    finally:
        default_agent.close()


def test_unresolvable_agent_fails_at_start():
    config = JaegerConfig(service_name="gateway", agent_endpoint="no-such-host.invalid:6831")
    context = ExporterContext("krakend", 0, logging.getLogger("test.jaeger"), lambda: None)
    with pytest.raises(ExporterStartError, match="agent_endpoint"):
        JaegerExporter(config, context).start()
