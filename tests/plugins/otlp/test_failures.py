"""Failed deliveries raise ExportError, retryable exactly as the OTLP spec says; nothing leaks."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from gatescope import ExportError
from gatescope.spans import KIND_SERVER, SpanRecord
from gatescope.testing import PluginHarness, exporter_of, free_port, krakend_config
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)

SECRET = "Bearer do-not-log-me"
SPANS = [SpanRecord("secret-span-name", "ab" * 16, "cd" * 8, None, KIND_SERVER, 1, 2,
                    {"user.email": "someone@example.com"})]


class Collector(ThreadingHTTPServer):
    """A real HTTP server answering every POST with a chosen status and body."""

    status = 200
    body = b""
    requests = 0


class Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung collector)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


def otlp(harness: PluginHarness, **section: Any) -> Any:
    section.setdefault("headers", {"Authorization": SECRET})
    telemetry = harness.telemetry(krakend_config({"otlp": section}, sample_rate=100))
    return exporter_of(telemetry, "otlp")


@pytest.mark.parametrize(("status", "retryable"), [
    (429, True), (502, True), (503, True), (504, True), (400, False), (401, False), (404, False),
    (500, False),
])
def test_http_status_decides_retry(gatescope_plugins: PluginHarness, collector: Collector,
                                   status: int, retryable: bool) -> None:
    collector.status = status
    exporter = otlp(gatescope_plugins, endpoint=f"http://127.0.0.1:{collector.server_port}")
    with pytest.raises(ExportError, match=f"answered {status} ") as caught:
        exporter.export_spans(SPANS)
    assert caught.value.retryable is retryable
    assert collector.requests == 1
    assert SECRET not in str(caught.value) and "secret-span-name" not in str(caught.value)


def test_http_partial_success_is_logged_not_retried(gatescope_plugins: PluginHarness,
                                                    collector: Collector,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    collector.body = ExportTraceServiceResponse(partial_success=ExportTracePartialSuccess(
        rejected_spans=1, error_message="span name too long")).SerializeToString()
    exporter = otlp(gatescope_plugins, endpoint=f"http://127.0.0.1:{collector.server_port}")
    with caplog.at_level(logging.WARNING):
        exporter.export_spans(SPANS)  # no exception: the rest was accepted
    assert "otlp: the collector rejected 1 spans: span name too long" in caplog.text


def test_http_timeout_is_retryable(gatescope_plugins: PluginHarness, silent_port: int) -> None:
    exporter = otlp(gatescope_plugins, endpoint=f"http://127.0.0.1:{silent_port}",
                    timeout="200ms")
    with pytest.raises(ExportError, match=r"timed out after 0\.2s") as caught:
        exporter.export_spans(SPANS)
    assert caught.value.retryable


def test_http_connection_refused_is_retryable(gatescope_plugins: PluginHarness) -> None:
    exporter = otlp(gatescope_plugins, endpoint=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ExportError, match="ConnectionRefusedError") as caught:
        exporter.export_spans(SPANS)
    assert caught.value.retryable


def test_http_non_otlp_reply_is_an_error(gatescope_plugins: PluginHarness,
                                         collector: Collector) -> None:
    collector.body = b"<html>proxy login</html>"
    exporter = otlp(gatescope_plugins, endpoint=f"http://127.0.0.1:{collector.server_port}")
    with pytest.raises(ExportError, match="not an OTLP response") as caught:
        exporter.export_spans(SPANS)
    assert not caught.value.retryable


def test_grpc_unreachable_is_retryable(gatescope_plugins: PluginHarness) -> None:
    exporter = otlp(gatescope_plugins, protocol="grpc", endpoint=f"127.0.0.1:{free_port()}",
                    insecure=True, timeout="2s")
    with pytest.raises(ExportError, match="UNAVAILABLE") as caught:
        exporter.export_spans(SPANS)
    assert caught.value.retryable


def test_grpc_deadline_is_retryable(gatescope_plugins: PluginHarness, silent_port: int) -> None:
    exporter = otlp(gatescope_plugins, protocol="grpc", endpoint=f"http://127.0.0.1:{silent_port}",
                    timeout="300ms")
    with pytest.raises(ExportError, match="DEADLINE_EXCEEDED") as caught:
        exporter.export_spans(SPANS)
    assert caught.value.retryable


class Rejecting(TraceServiceServicer):
    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code
        self.metadata: list[tuple[str, str]] = []

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.metadata = list(context.invocation_metadata())
        context.abort(self.code, "rejected by test collector")


@pytest.mark.parametrize(("code", "retryable"), [
    (grpc.StatusCode.INVALID_ARGUMENT, False), (grpc.StatusCode.UNAUTHENTICATED, False),
    (grpc.StatusCode.PERMISSION_DENIED, False), (grpc.StatusCode.RESOURCE_EXHAUSTED, True),
    (grpc.StatusCode.ABORTED, True), (grpc.StatusCode.UNAVAILABLE, True),
])
def test_grpc_status_decides_retry(gatescope_plugins: PluginHarness, code: grpc.StatusCode,
                                   retryable: bool) -> None:
    servicer = Rejecting(code)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        exporter = otlp(gatescope_plugins, protocol="grpc", endpoint=f"http://127.0.0.1:{port}")
        with pytest.raises(ExportError, match=f"{code.name}: rejected by test collector") as caught:
            exporter.export_spans(SPANS)
    finally:
        server.stop(None)
    assert caught.value.retryable is retryable
    assert ("authorization", SECRET) in servicer.metadata  # headers travel as metadata
    assert SECRET not in str(caught.value)


def test_failures_reach_the_core_without_leaking(gatescope_plugins: PluginHarness,
                                                 collector: Collector,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    collector.status = 400
    telemetry = gatescope_plugins.telemetry(krakend_config({"otlp": {
        "endpoint": f"http://127.0.0.1:{collector.server_port}", "metrics": False,
        "headers": {"Authorization": SECRET}}}, sample_rate=100))
    span = telemetry.kit.tracer.start_root("secret-span-name", KIND_SERVER, None)
    span.set_attribute("user.email", "someone@example.com")
    with caplog.at_level(logging.DEBUG):
        span.end()
        assert not telemetry.flush(5.0)  # rejected (400, not retryable): counted, not retried
    assert collector.requests == 1
    errors = telemetry.metrics().view("gatescope/export_errors")
    assert errors is not None and errors.rows[("otlp",)] == 1
    assert "answered 400" in caplog.text
    for leak in (SECRET, "secret-span-name", "someone@example.com"):
        assert leak not in caplog.text
