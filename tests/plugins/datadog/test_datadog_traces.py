"""Traces read back from Datadog's own test agent, with its trace checks (count header, ...) on."""

from __future__ import annotations

import io
import socket
import urllib.request
from typing import Any
from wsgiref.util import setup_testing_defaults

import msgpack
import pytest
from gatescope import ExportError
from gatescope.spans import KIND_CLIENT, KIND_SERVER, SpanRecord
from gatescope.testing import exporter_of, krakend_config

TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "00000000000000000000000000000abc"


def udp_sink() -> socket.socket:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    return sink


@pytest.fixture
def sink():
    with udp_sink() as sock:
        yield sock


def datadog_section(agent: Any, sink: socket.socket, **extra: Any) -> dict[str, Any]:
    return {"namespace": "krakend", "service": "gateway",
            "trace_address": f"127.0.0.1:{agent.port}",
            "stats_address": f"127.0.0.1:{sink.getsockname()[1]}", "tags": ["env:test"],
            "global_tags": {"env": "test", "build": 42, "canary": True, "owners": ["a", "b"]},
            "disable_count_per_buckets": False, **extra}


def span(name: str, trace: str, span_id: str, parent: str | None, kind: int, status: int = 0,
         message: str = "", **attributes: Any) -> SpanRecord:
    return SpanRecord(name, trace, span_id, parent, kind, 1_700_000_000_000_000_000,
                      1_700_000_000_250_000_000, attributes, status, message)


def by_resource(traces: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {s["resource"]: s for trace in traces for s in trace}


def test_spans_read_back_from_the_test_agent(dd_agent, gatescope_plugins, sink):
    token = "gatescope-fields"
    dd_agent.start_session(token)
    telemetry = gatescope_plugins.telemetry(krakend_config({"datadog": datadog_section(dd_agent, sink)}))
    exporter = exporter_of(telemetry, "datadog")
    exporter.export_spans([
        span("/users/{id}", TRACE_A, "00f067aa0ba902b7", None, KIND_SERVER, 13, "boom",
             **{"http.status_code": 500, "http.method": "GET"}),
        span("backend-/u", TRACE_A, "1111111111111111", "00f067aa0ba902b7", KIND_CLIENT, 5),
        span("pipe-/x", TRACE_B, "2222222222222222", None, 0),  # no attributes at all
    ])
    traces = dd_agent.traces(token)
    assert sorted(len(t) for t in traces) == [1, 2]  # grouped by trace
    spans = by_resource(traces)

    server = spans["/users/{id}"]
    assert server["name"] == "opencensus" and server["service"] == "gateway"
    assert server["type"] == "server"
    assert server["trace_id"] == int(TRACE_A[16:], 16)  # the low 64 bits
    assert server["span_id"] == 0x00f067aa0ba902b7 and server.get("parent_id", 0) == 0
    assert (server["start"], server["duration"]) == (1_700_000_000_000_000_000, 250_000_000)
    assert server["error"] == 1
    assert server["meta"]["error.type"] == "internal" and server["meta"]["error.msg"] == "boom"
    assert server["meta"]["opencensus.status_code"] == "13"
    assert server["meta"]["opencensus.status"] == "internal"
    assert server["meta"]["opencensus.status_description"] == "boom"
    assert server["meta"]["http.method"] == "GET"
    assert server["metrics"]["http.status_code"] == 500.0
    assert server["meta"]["env"] == "test" and server["meta"]["canary"] == "true"
    assert server["meta"]["owners"] == '["a","b"]' and server["metrics"]["build"] == 42.0
    assert server["metrics"]["_sampling_priority_v1"] == 1.0

    client = spans["backend-/u"]
    assert client["type"] == "client" and client["parent_id"] == 0x00f067aa0ba902b7
    assert client["error"] == 1 and client["meta"]["error.type"] == "not_found"  # 404 on a client

    pipe = spans["pipe-/x"]
    assert pipe["trace_id"] == 0xABC and pipe["error"] == 0 and pipe.get("type", "") == ""
    assert pipe["meta"]["opencensus.status"] == "ok" and "error.type" not in pipe["meta"]
    assert exporter.traces_sent == 2


def test_server_not_found_is_not_an_error_but_unavailable_is(dd_agent, gatescope_plugins, sink):
    token = "gatescope-errors"
    dd_agent.start_session(token)
    telemetry = gatescope_plugins.telemetry(krakend_config({"datadog": datadog_section(dd_agent, sink)}))
    exporter_of(telemetry, "datadog").export_spans([
        span("s404", "0" * 31 + "1", "0000000000000001", None, KIND_SERVER, 5),
        span("s503", "0" * 31 + "2", "0000000000000002", None, KIND_SERVER, 14, "down"),
        span("c503", "0" * 31 + "3", "0000000000000003", None, KIND_CLIENT, 14),
        span("attr", "0" * 31 + "4", "0000000000000004", None, KIND_SERVER, 0, error="bad thing"),
    ])
    spans = by_resource(dd_agent.traces(token))
    assert {name: s["error"] for name, s in spans.items()} == {
        "s404": 0, "s503": 1, "c503": 0, "attr": 1}
    assert spans["s503"]["meta"]["error.msg"] == "down"
    assert spans["attr"]["meta"]["error.msg"] == "bad thing"


def test_end_to_end_wsgi_router_span_and_checks_pass(dd_agent, gatescope_plugins, sink):
    token = "gatescope-e2e"
    dd_agent.start_session(token)
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"datadog": datadog_section(dd_agent, sink, global_tags={})}, sample_rate=100))

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = telemetry.wsgi(app)
    for _ in range(3):
        environ: dict[str, Any] = {"PATH_INFO": "/hello", "REQUEST_METHOD": "GET",
                                   "wsgi.input": io.BytesIO()}
        setup_testing_defaults(environ)
        result = wrapped(environ, lambda status, headers, exc=None: None)
        b"".join(result)
        getattr(result, "close", lambda: None)()
    assert telemetry.flush(10)
    traces = dd_agent.traces(token)
    assert len(traces) == 3 and all(len(t) == 1 for t in traces)
    for (root,) in traces:
        assert root["name"] == "opencensus" and root["type"] == "server"
        assert root["service"] == "gateway" and root["error"] == 0

    status, summary = dd_agent.get("/test/trace_check/summary", None)
    assert status == 200
    for check in dd_agent.checks:
        assert summary[check]["Failed_Checks"] == 0, summary
        assert summary[check]["Passed_Checks"] >= 1, summary


def test_trace_count_header_check_is_live(dd_agent):
    """The agent's check really fails a wrong X-Datadog-Trace-Count (so passing it means something)."""
    token = "gatescope-negative"
    dd_agent.start_session(token)
    body = msgpack.packb([[{"trace_id": 1, "span_id": 1, "parent_id": 0, "name": "x", "resource": "x",
                            "service": "s", "type": "", "start": 1, "duration": 1, "error": 0,
                            "meta": {}, "metrics": {}}]])
    request = urllib.request.Request(
        f"{dd_agent.url}/v0.4/traces", data=body, method="POST",
        headers={"Content-Type": "application/msgpack", "X-Datadog-Trace-Count": "7",
                 "Datadog-Meta-Tracer-Version": "t", "X-Datadog-Test-Session-Token": token})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    status, summary = dd_agent.get("/test/trace_check/summary", token)
    assert status == 200
    assert summary["trace_count_header"]["Failed_Checks"] == 1


def test_agent_down_is_a_retryable_export_error(gatescope_plugins, sink):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    telemetry = gatescope_plugins.telemetry(krakend_config({"datadog": {
        "trace_address": f"127.0.0.1:{port}", "stats_address": f"127.0.0.1:{sink.getsockname()[1]}"}}))
    with pytest.raises(ExportError) as info:
        exporter_of(telemetry, "datadog").export_spans([span("x", TRACE_A, "1" * 16, None, KIND_SERVER)])
    assert info.value.retryable
    assert f"cannot reach the Datadog agent at http://127.0.0.1:{port}/v0.4/traces" in str(info.value)


def test_large_batches_are_split_with_matching_trace_counts(dd_agent, gatescope_plugins, sink, monkeypatch):
    import gatescope_datadog.agent as agent_module

    token = "gatescope-split"
    dd_agent.start_session(token)
    telemetry = gatescope_plugins.telemetry(krakend_config({"datadog": datadog_section(dd_agent, sink)}))
    monkeypatch.setattr(agent_module, "MAX_PAYLOAD_BYTES", 2000)  # force several requests
    monkeypatch.setattr(agent_module.payloads, "__defaults__", (2000,))
    spans = [span(f"r{i}", f"{i + 1:032x}", f"{i + 1:016x}", None, KIND_SERVER, big="x" * 300)
             for i in range(20)]
    exporter_of(telemetry, "datadog").export_spans(spans)
    traces = dd_agent.traces(token)
    assert len(traces) == 20
    status, summary = dd_agent.get("/test/trace_check/summary", None)
    assert status == 200 and summary["trace_count_header"]["Failed_Checks"] == 0
    requests = [r for r in dd_agent.get("/test/session/requests", token)[1] if r["url"].endswith("/v0.4/traces")]
    assert len(requests) > 1
