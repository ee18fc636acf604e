"""Failures: a hung or absent X-Ray never blocks requests, export recovers, errors are classified,
rejected documents are counted and logged once per interval, and credentials never reach a log."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from gatescope import ExportError
from gatescope.exporter import ExporterContext
from gatescope.metrics import MetricsSnapshot
from gatescope.spans import KIND_SERVER, SpanRecord
from gatescope.testing import exporter_of, krakend_config, wait_for
from gatescope_xray import XRayConfig, XRayExporter

SECRET = "gatescope-test-secret/Zx9+Kq"  # the conftest's credentials
KEY_ID = "AKIAGATESCOPETEST01"


def worker_of(telemetry: Any, name: str = "xray") -> Any:
    return next(w for w in telemetry.pipeline.workers if w.name == name)


class HangingServer:
    """Accepts connections and never answers, like an X-Ray endpoint behind a black hole."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = threading.Event()
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(connection)
            self.accepted.set()

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        self.sock.close()


def test_a_hung_endpoint_never_blocks_requests(gatescope_plugins, upstream, xray_helpers):
    hanging = HangingServer()
    try:
        document = krakend_config(
            {"xray": xray_helpers.xray_section(hanging.endpoint)}, sample_rate=100,
            export_timeout="20s",
            endpoints=[{"endpoint": xray_helpers.ENDPOINT,
                        "backend": [{"url_pattern": xray_helpers.URL_PATTERN}]}])
        telemetry = gatescope_plugins.telemetry(document)
        first = telemetry.kit.tracer.start_root("/first", KIND_SERVER, None)
        first.end()
        assert hanging.accepted.wait(10), "the exporter never connected"
        worker = worker_of(telemetry)
        # The exporter is now stuck inside PutTraceSegments; requests keep flowing.
        statuses = [xray_helpers.three_layer_request(telemetry, upstream) for _ in range(20)]
        assert statuses == [200] * 20
        assert worker.busy and worker.exported == 0  # still hung while the requests finished
        assert telemetry.pipeline.dropped == 0
    finally:
        hanging.close()


def test_export_recovers_when_the_endpoint_comes_back(gatescope_plugins, xray_helpers):
    port = xray_helpers.free_port()  # nothing listens here yet
    server = xray_helpers.MotoServer(xray_helpers.moto_binary(), port)
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"xray": xray_helpers.xray_section(server.endpoint)}, sample_rate=100, export_timeout="2s"))
    worker = worker_of(telemetry)
    span = telemetry.kit.tracer.start_root("/recover", KIND_SERVER, None)
    span.end()
    try:
        assert wait_for(lambda: worker.errors >= 1, timeout=15), "the first attempt should have failed"
        assert worker.exported == 0
        server.start()  # the core retries with backoff (0.5, 1, 2, 4 s)
        assert wait_for(lambda: worker.exported == 1, timeout=20), "export did not recover"
        exporter = exporter_of(telemetry, "xray")
        assert exporter.sent_documents == 1 and worker.failed == 0
        summaries = server.client().get_trace_summaries(StartTime=time.time() - 600,
                                                        EndTime=time.time() + 600)
        assert [s["Id"][11:] for s in summaries["TraceSummaries"]] == [span.trace_id[8:]]
        later = telemetry.kit.tracer.start_root("/after", KIND_SERVER, None)
        later.end()
        assert telemetry.flush(10.0) and exporter.sent_documents == 2
    finally:
        server.stop()


class StubXRay:
    """An HTTP endpoint answering PutTraceSegments with a chosen status and JSON body."""

    def __init__(self) -> None:
        self.status = 200
        self.body: dict[str, Any] = {"UnprocessedTraceSegments": []}
        self.requests: list[dict[str, Any]] = []
        self.fail_request: int | None = None  # answer this request (0-based) with a 503
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                stub.requests.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
                failing = stub.fail_request == len(stub.requests) - 1
                body = {"__type": "ServiceUnavailableException"} if failing else stub.body
                payload = json.dumps(body).encode()
                self.send_response(503 if failing else stub.status)
                self.send_header("Content-Type", "application/json")
                if "__type" in body:
                    self.send_header("x-amzn-ErrorType", body["__type"])
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[StubXRay]:
    server = StubXRay()
    yield server
    server.close()


def make_exporter(endpoint: str, period: int = 0) -> XRayExporter:
    config = XRayConfig(region="us-east-1", access_key_id=KEY_ID, secret_access_key=SECRET,
                        endpoint_url=endpoint)
    context = ExporterContext(service_name="svc", reporting_period=period,
                              logger=logging.getLogger("gatescope.exporter.xray"),
                              metrics=lambda: MetricsSnapshot(0, ()), export_timeout=5.0)
    exporter = XRayExporter(config, context)
    exporter.start()
    return exporter


def spans(count: int) -> list[SpanRecord]:
    start = time.time_ns()
    return [SpanRecord(f"/s/{i}", f"{i + 1:032x}", f"{i + 1:016x}", None, KIND_SERVER, start,
                       start + 1000, {}) for i in range(count)]


@pytest.mark.parametrize(("status", "code", "retryable"), [
    (500, "InternalFailure", True),
    (503, "ServiceUnavailableException", True),
    (429, "ThrottledException", True),
    (400, "ThrottlingException", True),
    (400, "InvalidRequestException", False),
    (403, "UnrecognizedClientException", False),
    (403, "AccessDeniedException", False),
])
def test_failures_are_classified_and_never_echo_credentials(stub, caplog, status, code, retryable):
    caplog.set_level(logging.DEBUG)  # every logger, botocore's request logging included
    stub.status = status
    stub.body = {"__type": code, "message": f"rejected key {KEY_ID} secret {SECRET}"}
    exporter = make_exporter(stub.endpoint)
    with pytest.raises(ExportError) as info:
        exporter.export_spans(spans(3))
    assert info.value.retryable is retryable
    assert code in str(info.value) and str(status) in str(info.value)
    assert SECRET not in str(info.value) and KEY_ID not in str(info.value)
    assert len(stub.requests) == 1  # botocore does not retry: the core owns retries
    assert stub.requests[0]["path"] == "/TraceSegments"
    # the server echoed them (botocore's own DEBUG body log shows that); gatescope's logs do not
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("gatescope"))
    assert SECRET not in ours and KEY_ID not in ours
    exporter.shutdown(1)


def test_an_unreachable_endpoint_is_a_retryable_failure():
    port_without_server = socket.socket()
    port_without_server.bind(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{port_without_server.getsockname()[1]}"
    port_without_server.close()
    exporter = make_exporter(endpoint)
    with pytest.raises(ExportError) as info:
        exporter.export_spans(spans(1))
    assert info.value.retryable is True
    assert "unreachable" in str(info.value)


def test_rejected_documents_are_counted_and_logged_once_per_interval(stub, caplog):
    caplog.set_level(logging.WARNING, logger="gatescope.exporter.xray")
    exporter = make_exporter(stub.endpoint, period=3600)  # one log line per hour at most
    stub.body = {"UnprocessedTraceSegments": [
        {"Id": f"{1:016x}", "ErrorCode": "InvalidTraceId", "Message": f"bad for {SECRET}"}]}
    for _ in range(3):
        exporter.export_spans(spans(4))
    assert exporter.unprocessed_documents == 3 and exporter.sent_documents == 9
    lines = [r.getMessage() for r in caplog.records if r.name == "gatescope.exporter.xray"]
    assert len(lines) == 1, lines
    assert "did not process 1 of 4" in lines[0] and "InvalidTraceId" in lines[0]
    assert SECRET not in caplog.text
    # everything rejected: the core is told (not retryable: resending the same documents fails)
    stub.body = {"UnprocessedTraceSegments": [{"Id": f"{1:016x}", "ErrorCode": "X"}]}
    with pytest.raises(ExportError) as info:
        exporter.export_spans(spans(1))
    assert info.value.retryable is False
    assert exporter.unprocessed_documents == 4


def test_moto_reports_malformed_documents_as_unprocessed(moto, xray_helpers):
    exporter = make_exporter(moto.endpoint)
    good = exporter.encoder.encode_batch(spans(1))
    exporter.encoder.encode_batch = lambda batch: [*good, '{"id": "0000000000000abc"}']  # no name
    exporter.export_spans(spans(2))
    assert (exporter.sent_documents, exporter.unprocessed_documents) == (1, 1)
    exporter.shutdown(1)


def test_batches_are_sent_fifty_documents_at_a_time(stub):
    exporter = make_exporter(stub.endpoint)
    exporter.export_spans(spans(120))
    sizes = [len(r["body"]["TraceSegmentDocuments"]) for r in stub.requests]
    assert sizes == [50, 50, 20]
    assert exporter.sent_documents == 120


def test_a_full_telemetry_run_never_logs_the_secret(gatescope_plugins, stub, caplog, xray_helpers):
    """Every logger at DEBUG (botocore's request dumps included): the secret never appears,
    since SigV4 sends only a signature derived from it."""
    caplog.set_level(logging.DEBUG)
    stub.status = 400
    stub.body = {"__type": "InvalidRequestException", "message": "segment rejected"}
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"xray": xray_helpers.xray_section(stub.endpoint)}, sample_rate=100))
    span = telemetry.kit.tracer.start_root("/secret", KIND_SERVER, None)
    span.end()
    assert telemetry.flush(5.0) is False  # rejected, not retried
    assert worker_of(telemetry).failed == 1
    assert len(stub.requests) == 1
    assert "InvalidRequestException" in caplog.text and "Authorization" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps(stub.requests)
    assert SECRET not in repr(exporter_of(telemetry, "xray").config)


def test_a_forked_child_gets_its_own_client_and_still_exports(stub):
    exporter = make_exporter(stub.endpoint)
    inherited = exporter._client
    exporter.after_fork_in_child()
    assert exporter._client is not inherited
    exporter.export_spans(spans(2))
    assert exporter.sent_documents == 2 and len(stub.requests) == 1
    exporter.shutdown(1)


def test_export_after_shutdown_is_refused_without_a_network_call(stub):
    exporter = make_exporter(stub.endpoint)
    exporter.shutdown(1)
    with pytest.raises(ExportError) as info:
        exporter.export_spans(spans(1))
    assert info.value.retryable is False and stub.requests == []
    exporter.shutdown(1)  # idempotent


def test_a_retried_batch_resumes_after_the_calls_that_succeeded(stub):
    exporter = make_exporter(stub.endpoint)
    batch = spans(120)
    stub.fail_request = 1  # the second call (documents 50..99) fails
    with pytest.raises(ExportError) as info:
        exporter.export_spans(batch)
    assert info.value.retryable
    stub.fail_request = None
    exporter.export_spans(batch)  # the core's retry hands over the same batch
    sent = [json.loads(d)["id"] for r in stub.requests[:1] + stub.requests[2:]
            for d in r["body"]["TraceSegmentDocuments"]]
    assert sent == [s.span_id for s in batch]  # each document delivered exactly once
    assert [len(r["body"]["TraceSegmentDocuments"]) for r in stub.requests] == [50, 50, 50, 20]
    assert exporter.sent_documents == 120
    exporter.export_spans(spans(3))  # a different batch starts from its beginning
    assert len(stub.requests[-1]["body"]["TraceSegmentDocuments"]) == 3
