"""Zipkin v2 JSON on the wire: every body validates against the official ListOfSpans schema and
carries the expected trace tree; short and failed spans; batching; timeouts; failures."""

from __future__ import annotations

import logging
import threading

import jsonschema
import pytest
from gatescope import ExporterContext, ExportError, ExporterStartError
from gatescope.spans import INTERNAL, KIND_CLIENT, KIND_SERVER, NOT_FOUND, SpanRecord
from gatescope.testing import exporter_of, free_port, krakend_config
from gatescope.tracing import current
from gatescope_zipkin import ZipkinConfig, ZipkinExporter

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
START = 1_700_000_000_000_000_000


def make_exporter(url, timeout=2.0, **config):
    context = ExporterContext("krakend", 0, logging.getLogger("test.zipkin"), lambda: None,
                              export_timeout=timeout)
    exporter = ZipkinExporter(ZipkinConfig(collector_url=url, service_name=config.pop(
        "service_name", "gateway"), **config), context)
    exporter.start()
    return exporter


def record(name="op", *, span_id="00f067aa0ba902b7", parent=None, kind=0, duration_ns=1_500_000,
           attributes=None, status=0, message="", trace=TRACE):
    return SpanRecord(name, trace, span_id, parent, kind, START, START + duration_ns,
                      dict(attributes or {}), status, message)


def test_tracer_spans_form_the_expected_tree(gatescope_plugins, zipkin):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"zipkin": {"collector_url": zipkin.url, "service_name": "gateway"}}, sample_rate=100))
    tracer = telemetry.tracer
    root = tracer.start_root("/users/{id}", KIND_SERVER, None)
    token = current.set(root)
    pipe = tracer.start_child("pipe-/users/{id}", 0)
    inner = current.set(pipe)
    client = tracer.start_child("/u/42", KIND_CLIENT)
    client.set_attribute("http.status_code", 200)
    client.end()
    current.reset(inner)
    pipe.end()
    current.reset(token)
    root.end()
    assert telemetry.flush(5)
    assert zipkin.rejected == []
    spans = {s["name"]: s for s in zipkin.spans()}
    assert set(spans) == {"/users/{id}", "pipe-/users/{id}", "/u/42"}
    server, middle, outgoing = spans["/users/{id}"], spans["pipe-/users/{id}"], spans["/u/42"]
    assert {s["traceId"] for s in spans.values()} == {root.trace_id}
    assert server["id"] == root.span_id and "parentId" not in server
    assert middle["parentId"] == server["id"] and outgoing["parentId"] == middle["id"]
    assert (server["kind"], outgoing["kind"]) == ("SERVER", "CLIENT") and "kind" not in middle
    assert outgoing["tags"] == {"http.status_code": "200"}
    assert server["localEndpoint"] == {"serviceName": "gateway"}
    assert server["timestamp"] == root.start_ns // 1000


def test_three_layer_request_end_to_end(gatescope_plugins, zipkin, backend, wire):
    telemetry = gatescope_plugins.telemetry(wire.layered_document(
        {"collector_url": zipkin.url, "service_name": "gateway", "ip": "10.0.0.7", "port": 8080}))
    assert wire.three_layer_request(telemetry, backend) == 200
    assert telemetry.flush(5)
    assert zipkin.rejected == []
    spans = {s["name"]: s for s in zipkin.spans()}
    assert set(spans) == {"/users/{id}", "pipe-/users/{id}", "backend-/u/{id}", "/u/42"}
    assert "parentId" not in spans["/users/{id}"]
    assert spans["pipe-/users/{id}"]["parentId"] == spans["/users/{id}"]["id"]
    assert spans["backend-/u/{id}"]["parentId"] == spans["pipe-/users/{id}"]["id"]
    assert spans["/u/42"]["parentId"] == spans["backend-/u/{id}"]["id"]
    assert len({s["traceId"] for s in spans.values()}) == 1
    assert spans["/users/{id}"]["kind"] == "SERVER" and spans["/u/42"]["kind"] == "CLIENT"
    assert all(isinstance(v, str) for s in spans.values() for v in s.get("tags", {}).values())
    assert next(w for w in telemetry.pipeline.workers if w.name == "zipkin").settles_http_facts
    server_tags = spans["/users/{id}"]["tags"]  # written from the router's facts by the exporter
    assert server_tags == {"http.path": "/users/42", "http.url": "/users/42",
                           "http.host": server_tags["http.host"], "http.method": "GET",
                           "http.user_agent": server_tags["http.user_agent"],
                           "http.status_code": "200"}
    assert server_tags["http.host"] and server_tags["http.user_agent"]
    for span in spans.values():
        assert span["localEndpoint"] == {"serviceName": "gateway", "ipv4": "10.0.0.7", "port": 8080}


def test_one_microsecond_and_error_spans(zipkin):
    exporter = make_exporter(zipkin.url)
    exporter.export_spans([
        record("one-us", duration_ns=1_000),
        record("sub-us", span_id="1111111111111111", duration_ns=300),
        record("zero", span_id="2222222222222222", duration_ns=0),
        record("failed", span_id="3333333333333333", parent="00f067aa0ba902b7", kind=KIND_CLIENT,
               status=INTERNAL, message="backend exploded", attributes={"retried": True}),
        record("not-found", span_id="4444444444444444", status=NOT_FOUND),
        record("rounded", span_id="5555555555555555", duration_ns=2_600),
    ])
    assert zipkin.rejected == []
    spans = {s["name"]: s for s in zipkin.spans()}
    assert spans["one-us"]["duration"] == 1
    assert spans["sub-us"]["duration"] == 1 and spans["zero"]["duration"] == 1
    assert spans["rounded"]["duration"] == 3
    assert spans["failed"]["tags"] == {"retried": "true", "error": "INTERNAL",
                                       "opencensus.status_description": "backend exploded"}
    assert spans["not-found"]["tags"] == {"error": "NOT_FOUND"}
    assert "tags" not in spans["one-us"]


def test_a_zero_duration_body_would_be_rejected_by_the_schema(wire):
    """The validator really checks `duration >= 1` (what upstream opencensus-ext-zipkin breaks)."""
    with pytest.raises(jsonschema.ValidationError):
        wire.validate([{"traceId": TRACE, "id": "00f067aa0ba902b7", "duration": 0}])


def test_64_and_128_bit_trace_ids(zipkin):
    exporter = make_exporter(zipkin.url)
    exporter.export_spans([record("wide"), record("narrow", trace="0" * 16 + "a3ce929d0e0e4736")])
    spans = {s["name"]: s for s in zipkin.spans()}
    assert spans["wide"]["traceId"] == TRACE
    assert spans["narrow"]["traceId"] == "a3ce929d0e0e4736"


def test_tags_are_strings_in_gos_formatting(zipkin):
    exporter = make_exporter(zipkin.url)
    exporter.export_spans([record(attributes={
        "s": "text", "i": -3, "big": 2**70, "f": 0.25, "whole": 3.0, "tiny": 1e-7, "huge": 1e21,
        "t": True, "f2": False, "unicode": "naïve ☃"})])
    [span] = zipkin.spans()
    assert span["tags"] == {"s": "text", "i": "-3", "big": str(2**70), "f": "0.25", "whole": "3",
                            "tiny": "0.0000001", "huge": "1000000000000000000000", "t": "true",
                            "f2": "false", "unicode": "naïve ☃"}


@pytest.mark.parametrize(("ip", "port", "expected"), [
    ("", 0, {"serviceName": "svc"}),
    ("192.168.1.10", 0, {"serviceName": "svc", "ipv4": "192.168.1.10"}),
    ("2001:db8::c001", 9000, {"serviceName": "svc", "ipv6": "2001:db8::c001", "port": 9000}),
    ("::ffff:10.1.2.3", 0, {"serviceName": "svc", "ipv4": "10.1.2.3"}),
    ("", 8080, {"serviceName": "svc", "port": 8080}),
    ("localhost", 0, None),
])
def test_local_endpoint(zipkin, ip, port, expected):
    exporter = make_exporter(zipkin.url, service_name="svc", ip=ip, port=port)
    exporter.export_spans([record()])
    [span] = zipkin.spans()
    endpoint = span["localEndpoint"]
    if expected is None:  # a host name is resolved to its addresses, each in its own field
        assert endpoint["serviceName"] == "svc"
        assert endpoint.get("ipv4") == "127.0.0.1" or endpoint.get("ipv6") == "::1"
        assert "port" not in endpoint
    else:
        assert endpoint == expected
    assert endpoint.get("port") != zipkin.port  # never the Zipkin server's port


def test_unresolvable_host_name_fails_at_start(zipkin):
    with pytest.raises(ExporterStartError, match="cannot resolve"):
        make_exporter(zipkin.url, ip="no-such-host.invalid")


@pytest.mark.parametrize("export_process", [False, True], ids=["in-process", "export-process"])
def test_ten_thousand_spans_in_batches_counted_exactly(gatescope_plugins, zipkin, export_process):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"zipkin": {"collector_url": zipkin.url, "service_name": "gateway"}}, sample_rate=100,
        batch_size=1000, export_process=export_process))
    started = []
    for index in range(10_000):
        span = telemetry.tracer.start_root(f"/r/{index}", KIND_SERVER, None)
        span.end()
        started.append(span.span_id)
    assert telemetry.flush(20)
    assert zipkin.rejected == []
    assert sorted(s["id"] for s in zipkin.spans()) == sorted(started)
    assert len(zipkin.bodies) >= 10 and max(len(b) for b in zipkin.bodies) <= 1000
    assert telemetry.pipeline.workers[0].exported == 10_000
    if not export_process:  # with it, the exporter's own counter lives in its helper process
        assert exporter_of(telemetry, "zipkin").spans_sent == 10_000


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (400, False),
                                                   (429, True)])
def test_collector_errors_raise_export_error_and_recover(zipkin, caplog, status, retryable):
    exporter = make_exporter(zipkin.url)
    zipkin.fail_with = [status]
    with pytest.raises(ExportError) as info:
        exporter.export_spans([record(attributes={"marker": "do-not-log-me"})])
    assert info.value.retryable is retryable
    assert f"HTTP {status}" in caplog.text and "do-not-log-me" not in caplog.text
    exporter.export_spans([record()])
    assert len(zipkin.spans()) == 1


def test_connection_refused_is_retryable(wire, zipkin):
    exporter = make_exporter(f"http://127.0.0.1:{free_port()}/api/v2/spans")
    with pytest.raises(ExportError) as info:
        exporter.export_spans([record()])
    assert info.value.retryable is True


def test_every_request_has_a_timeout(zipkin):
    zipkin.delay = 3.0
    exporter = make_exporter(zipkin.url, timeout=0.3)
    outcome: list[BaseException] = []

    def export() -> None:
        try:
            exporter.export_spans([record()])
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=export, daemon=True)
    thread.start()
    thread.join(2.5)  # well before the server would answer
    assert not thread.is_alive(), "the POST did not time out"
    assert len(outcome) == 1 and isinstance(outcome[0], ExportError)
    assert outcome[0].retryable is True


def test_pipeline_retries_until_the_collector_accepts(gatescope_plugins, zipkin):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"zipkin": {"collector_url": zipkin.url, "service_name": "gateway"}}, sample_rate=100))
    zipkin.fail_with = [500]
    telemetry.tracer.start_root("/retried", KIND_SERVER, None).end()
    assert telemetry.flush(10)
    assert [s["name"] for s in zipkin.spans()] == ["/retried"]
    assert len(zipkin.requests) == 2
