"""Spans and metrics arrive intact at a real OTLP receiver (ddapm-test-agent) over both protocols."""

from __future__ import annotations

import base64
import itertools
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from gatescope.metrics import LATENCY_BOUNDS
from gatescope.spans import KIND_CLIENT, KIND_SERVER, SpanRecord
from gatescope.testing import PluginHarness, exit_code, fork_child, krakend_config
from gatescope.tracing import Span, current

TOKEN_HEADER = "X-Datadog-Test-Session-Token"  # ddapm-test-agent files what it receives by it
PROTOCOLS = [("http/protobuf", "none"), ("http/protobuf", "gzip"), ("grpc", "none"), ("grpc", "gzip")]


def three_layer_request(telemetry: Any) -> list[Span]:
    """Router, pipe and backend spans of one request, as the layers create them, plus stats."""
    tracer = telemetry.kit.tracer
    router = tracer.start_root("/users/{id}", KIND_SERVER, None)
    assert isinstance(router, Span)
    router_token = current.set(router)
    pipe = tracer.start_child("pipe-/users/{id}", 0)
    assert pipe is not None
    pipe_token = current.set(pipe)
    backend = tracer.start_child("backend-/v1/users/{id}", KIND_CLIENT)
    assert backend is not None
    backend.set_attribute("http.url", "http://users.internal/v1/users/42")
    backend.set_attribute("http.retries", 2)
    backend.set_attribute("gatescope.ratio", 0.25)
    backend.set_attribute("gatescope.cached", False)
    backend.set_http_status(503)
    backend.end()
    current.reset(pipe_token)
    pipe.end()
    current.reset(router_token)
    router.set_http_status(200)
    router.end()
    server, client = telemetry.kit.server, telemetry.kit.client
    server.record("gw", "/users/{id}", "GET", "200", 0, 512, 12.5)
    server.record("gw", "/users/{id}", "GET", "200", 0, 2048, 400.0)
    client.record("users.internal", "/v1/users/42", "GET", "503", 0, 64, 7.0)
    return [router, pipe, backend]


def spans_of(payloads: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    (payload,) = payloads
    (resource_spans,) = payload["resource_spans"]
    (scope_spans,) = resource_spans["scope_spans"]
    assert scope_spans["scope"]["name"] == "gatescope"
    by_id = {base64.b64decode(s["span_id"]).hex(): s for s in scope_spans["spans"]}
    return resource_spans["resource"], by_id


def attributes(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: item["value"] for item in items}


def latest_metrics(payloads: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (resource_metrics,) = payloads[-1]["resource_metrics"]
    (scope_metrics,) = resource_metrics["scope_metrics"]
    return {m["name"]: m for m in scope_metrics["metrics"]}


@pytest.mark.receiver("ddapm-test-agent")
@pytest.mark.parametrize(("protocol", "compression"), PROTOCOLS)
def test_spans_arrive_intact(test_agent: Any, gatescope_plugins: PluginHarness,
                             protocol: str, compression: str) -> None:
    token = test_agent.session()
    telemetry = gatescope_plugins.telemetry(krakend_config({"otlp": {
        "endpoint": test_agent.endpoint(protocol), "protocol": protocol, "compression": compression,
        "headers": {TOKEN_HEADER: token}, "metrics": False,
        "resource_attributes": {"deployment.environment": "test"},
    }}, name="gateway", sample_rate=100))
    router, pipe, backend = three_layer_request(telemetry)
    assert telemetry.flush(10.0)

    resource, spans = spans_of(test_agent.wait_for("traces", token))
    assert attributes(resource["attributes"]) == {
        "service.name": {"string_value": "gateway"},
        "deployment.environment": {"string_value": "test"},
        "telemetry.sdk.name": {"string_value": "gatescope"},
        "telemetry.sdk.language": {"string_value": "python"},
        "telemetry.sdk.version": {"string_value": "0.1.0"},
    }
    assert set(spans) == {router.span_id, pipe.span_id, backend.span_id}
    for record in (router, pipe, backend):
        got = spans[record.span_id]
        assert base64.b64decode(got["trace_id"]).hex() == record.trace_id
        assert got["name"] == record.name
        assert int(got["start_time_unix_nano"]) == record.start_ns
        assert int(got["end_time_unix_nano"]) == record.end_ns
    assert "parent_span_id" not in spans[router.span_id]
    assert base64.b64decode(spans[pipe.span_id]["parent_span_id"]).hex() == router.span_id
    assert base64.b64decode(spans[backend.span_id]["parent_span_id"]).hex() == pipe.span_id
    assert [spans[s.span_id]["kind"] for s in (router, pipe, backend)] == [
        "SPAN_KIND_SERVER", "SPAN_KIND_INTERNAL", "SPAN_KIND_CLIENT"]
    assert spans[router.span_id]["status"] == {"code": "STATUS_CODE_OK"}
    assert spans[backend.span_id]["status"] == {"code": "STATUS_CODE_ERROR",
                                                "message": "UNAVAILABLE"}
    assert attributes(spans[backend.span_id]["attributes"]) == {
        "http.url": {"string_value": "http://users.internal/v1/users/42"},
        "http.retries": {"int_value": "2"},  # int64 is a string in protobuf's JSON
        "gatescope.ratio": {"double_value": 0.25},
        "gatescope.cached": {"bool_value": False},
        "http.status_code": {"int_value": "503"},
    }


@pytest.mark.receiver("ddapm-test-agent")
@pytest.mark.parametrize(("protocol", "compression"), PROTOCOLS)
def test_metrics_arrive_intact(test_agent: Any, gatescope_plugins: PluginHarness,
                               protocol: str, compression: str) -> None:
    token = test_agent.session()
    telemetry = gatescope_plugins.telemetry(krakend_config({"otlp": {
        "endpoint": test_agent.endpoint(protocol), "protocol": protocol, "compression": compression,
        "headers": {TOKEN_HEADER: token}, "traces": False,
    }}, name="gateway", sample_rate=100))
    three_layer_request(telemetry)
    assert telemetry.flush(10.0)
    snapshot = telemetry.metrics()

    metrics = latest_metrics(test_agent.wait_for("metrics", token))
    latency = metrics["opencensus.io/http/server/latency"]
    assert (latency["unit"], latency["description"]) == ("ms", "Latency distribution of HTTP requests")
    histogram = latency["histogram"]
    assert histogram["aggregation_temporality"] == "AGGREGATION_TEMPORALITY_CUMULATIVE"
    (point,) = histogram["data_points"]
    assert point["explicit_bounds"] == [float(b) for b in LATENCY_BOUNDS]
    expected = [0] * (len(LATENCY_BOUNDS) + 1)
    expected[LATENCY_BOUNDS.index(13)] += 1  # 12.5 ms: first bound greater than it
    expected[LATENCY_BOUNDS.index(500)] += 1  # 400 ms lands in [400, 500)
    assert [int(c) for c in point["bucket_counts"]] == expected
    assert (int(point["count"]), point["sum"], point["min"], point["max"]) == (2, 412.5, 12.5, 400.0)
    view = snapshot.view("opencensus.io/http/server/latency")
    assert view is not None and int(point["start_time_unix_nano"]) == view.start_ns
    assert int(point["time_unix_nano"]) >= view.start_ns

    count = metrics["opencensus.io/http/server/request_count"]["sum"]
    assert count["is_monotonic"] is True
    assert count["aggregation_temporality"] == "AGGREGATION_TEMPORALITY_CUMULATIVE"
    assert [int(p["as_int"]) for p in count["data_points"]] == [2]

    sent = metrics["opencensus.io/http/client/received_bytes"]["histogram"]["data_points"]
    (client_point,) = sent
    assert attributes(client_point["attributes"]) == {
        "http_client_method": {"string_value": "GET"},
        "http_client_status": {"string_value": "503"},
    }
    assert int(client_point["count"]) == 1 and client_point["sum"] == 64.0

    queued = metrics["gatescope/spans_queued"]
    assert "gauge" in queued  # gatescope's last-value self-telemetry is a gauge


@pytest.mark.receiver("ddapm-test-agent")
def test_a_big_batch_arrives_whole(test_agent: Any, gatescope_plugins: PluginHarness) -> None:
    token = test_agent.session()
    telemetry = gatescope_plugins.telemetry(krakend_config({"otlp": {
        "endpoint": test_agent.endpoint("grpc"), "protocol": "grpc", "metrics": False,
        "headers": {TOKEN_HEADER: token}}}, sample_rate=100))
    exporter = next(e for e in telemetry.exporters if e.name == "otlp")
    batch = [SpanRecord(f"s{i}", "ab" * 16, f"{i + 1:016x}", None, KIND_SERVER, 10, 20,
                        {"i": i}) for i in range(500)]
    exporter.export_spans(batch)
    (payload,) = test_agent.wait_for("traces", token)
    received = payload["resource_spans"][0]["scope_spans"][0]["spans"]
    assert sorted(s["name"] for s in received) == sorted(f"s{i}" for i in range(500))


@pytest.mark.receiver("ddapm-test-agent")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_forked_worker_exports_on_its_own_connection(test_agent: Any,
                                                       gatescope_plugins: PluginHarness,
                                                       protocol: str) -> None:
    token = test_agent.session()
    telemetry = gatescope_plugins.telemetry(krakend_config({"otlp": {
        "endpoint": test_agent.endpoint(protocol), "protocol": protocol, "metrics": False,
        "headers": {TOKEN_HEADER: token}}}, sample_rate=100))
    three_layer_request(telemetry)
    assert telemetry.flush(10.0)  # the parent's channel is open and used before the fork

    def worker() -> bool:  # a gunicorn worker, say
        three_layer_request(telemetry)
        return telemetry.flush(10.0)

    assert exit_code(fork_child(worker)) == 0
    payloads = test_agent.wait_for("traces", token, count=2)
    assert len(payloads) == 2


class Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"id": 42}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.mark.receiver("ddapm-test-agent")
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_real_layers_trace_arrives(test_agent: Any, gatescope_plugins: PluginHarness,
                                   protocol: str) -> None:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True).start()
    token = test_agent.session()
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"otlp": {"endpoint": test_agent.endpoint(protocol), "protocol": protocol,
                  "metrics": False, "headers": {TOKEN_HEADER: token}}},
        endpoints=[{"endpoint": "/users/{id}",
                    "backend": [{"url_pattern": "/v1/users/{id}"}]}],
        sample_rate=100))
    session = telemetry.requests_session()

    def gateway(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with telemetry.pipe("/users/{id}"), telemetry.backend("/v1/users/{id}"):
            reply = session.get(f"http://127.0.0.1:{upstream.server_port}/v1/users/42", timeout=5)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [reply.content]

    environ: dict[str, Any] = {"PATH_INFO": "/users/42"}
    setup_testing_defaults(environ)
    try:
        body = telemetry.wsgi(gateway)(environ, lambda status, headers, exc_info=None: None)
        assert b"".join(body) == b'{"id": 42}'
        getattr(body, "close", lambda: None)()
        assert telemetry.flush(10.0)
    finally:
        upstream.shutdown()
        upstream.server_close()

    _, spans = spans_of(test_agent.wait_for("traces", token))
    by_name = {s["name"]: s for s in spans.values()}
    assert set(by_name) == {"/users/{id}", "pipe-/users/{id}", "backend-/v1/users/{id}",
                            "/v1/users/42"}
    chain = [by_name[n] for n in ("/users/{id}", "pipe-/users/{id}", "backend-/v1/users/{id}",
                                  "/v1/users/42")]
    assert [s["kind"] for s in chain] == ["SPAN_KIND_SERVER", "SPAN_KIND_INTERNAL",
                                          "SPAN_KIND_INTERNAL", "SPAN_KIND_CLIENT"]
    assert len({s["trace_id"] for s in chain}) == 1
    for parent, child in itertools.pairwise(chain):
        assert child["parent_span_id"] == parent["span_id"]
    assert all(s["status"] == {"code": "STATUS_CODE_OK"} for s in chain)
