"""The collector transport: a bare binary `Batch` POSTed with application/x-thrift, as Jaeger's
collector /api/traces reads it; failures raise ExportError and recover."""

from __future__ import annotations

import logging

import pytest
from gatescope import ExporterContext, ExportError
from gatescope.spans import KIND_CLIENT, KIND_SERVER, UNKNOWN, SpanRecord
from gatescope.testing import exporter_of, free_port, krakend_config
from gatescope_jaeger import JaegerConfig, JaegerExporter
from thriftpy2.protocol import TBinaryProtocolFactory
from thriftpy2.thrift import TMessageType
from thriftpy2.transport import TMemoryBuffer

TRACE = "0af7651916cd43dd8448eb211c80319c"


def make_exporter(url, timeout=2.0):
    config = JaegerConfig(service_name="gateway", endpoint=url)
    context = ExporterContext("krakend", 0, logging.getLogger("test.jaeger.http"), lambda: None,
                              export_timeout=timeout)
    exporter = JaegerExporter(config, context)
    exporter.start()
    return exporter


def spans(count=3, name="op"):
    start = 1_700_000_000_000_000_000
    return [SpanRecord(f"{name}-{i}", TRACE, f"{i + 1:016x}", None if i == 0 else f"{i:016x}",
                       KIND_SERVER if i == 0 else KIND_CLIENT, start, start + 2_000_000,
                       {"secret.payload.marker": "do-not-log-me", "i": i})
            for i in range(count)]


def test_collector_receives_a_bare_batch(collector, wire):
    exporter = make_exporter(collector.url)
    exporter.export_spans(spans(3))
    assert collector.rejected == 0
    [batch] = collector.batches
    assert batch.process.serviceName == "gateway"
    assert [s.operationName for s in batch.spans] == ["op-0", "op-1", "op-2"]
    assert [s.parentSpanId for s in batch.spans] == [0, 1, 2]
    assert {wire.trace_hex(s) for s in batch.spans} == {TRACE}
    assert wire.tags_of(batch.spans[1]) == {"secret.payload.marker": "do-not-log-me", "i": 1,
                                            "span.kind": "client"}
    request = collector.requests[0]
    assert request["headers"]["Content-Type"] == "application/x-thrift"
    assert exporter.requests_sent == 1 and exporter.spans_sent == 3


def test_fake_collector_rejects_what_upstream_sends(collector, wire):
    """The stand-in is as strict as Jaeger: a `submitBatches` message envelope gets 400."""
    import urllib.request

    buffer = TMemoryBuffer()
    protocol = TBinaryProtocolFactory().get_protocol(buffer)
    protocol.write_message_begin("submitBatches", TMessageType.CALL, 0)
    args = wire.JAEGER.Collector.submitBatches_args(batches=[wire.JAEGER.Batch(
        process=wire.JAEGER.Process(serviceName="s"), spans=[])])
    args.write(protocol)
    protocol.write_message_end()
    envelope = buffer.getvalue()
    for body, content_type in ((envelope, "application/x-thrift"), (b"", "application/json")):
        request = urllib.request.Request(collector.url, data=body, method="POST",
                                         headers={"Content-Type": content_type})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 400
    assert collector.rejected == 2 and collector.batches == []


def test_three_layer_request_reaches_the_collector(gatescope_plugins, collector, backend, wire):
    telemetry = gatescope_plugins.telemetry(wire.layered_document(
        {"endpoint": collector.url, "service_name": "gateway"}))
    assert wire.three_layer_request(telemetry, backend) == 200
    assert telemetry.flush(5)
    by_name = {s.operationName: s for s in collector.spans()}
    assert set(by_name) == {"/users/{id}", "pipe-/users/{id}", "backend-/u/{id}", "/u/42"}
    assert by_name["/u/42"].parentSpanId == by_name["backend-/u/{id}"].spanId
    assert by_name["backend-/u/{id}"].parentSpanId == by_name["pipe-/users/{id}"].spanId
    assert by_name["pipe-/users/{id}"].parentSpanId == by_name["/users/{id}"].spanId
    assert by_name["/users/{id}"].parentSpanId == 0
    assert wire.tags_of(by_name["/u/42"])["http.status_code"] == 200
    assert collector.rejected == 0


def test_ten_thousand_spans_in_batches_counted_exactly(gatescope_plugins, collector):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"jaeger": {"endpoint": collector.url, "service_name": "gateway"}}, sample_rate=100,
        batch_size=1000))
    started = []
    for index in range(10_000):
        span = telemetry.tracer.start_root(f"/r/{index}", KIND_SERVER, None)
        span.end()
        started.append(span.span_id)
    assert telemetry.flush(20)
    received = collector.spans()
    assert len(received) == 10_000
    assert sorted(f"{s.spanId & (2**64 - 1):016x}" for s in received) == sorted(started)
    assert len(collector.batches) >= 10 and max(len(b.spans) for b in collector.batches) <= 1000
    assert exporter_of(telemetry, "jaeger").spans_sent == 10_000
    assert collector.rejected == 0


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (400, False),
                                                   (413, False), (429, True)])
def test_collector_errors_raise_export_error_and_recover(collector, caplog, status, retryable):
    exporter = make_exporter(collector.url)
    collector.fail_with = [status]
    with pytest.raises(ExportError) as info:
        exporter.export_spans(spans(2))
    assert info.value.retryable is retryable
    assert str(status) in str(info.value)
    assert f"HTTP {status}" in caplog.text
    assert "do-not-log-me" not in caplog.text and "op-1" not in caplog.text
    exporter.export_spans(spans(2))  # the collector is fine again: so is the exporter
    assert len(collector.spans()) == 2


def test_repeated_failures_are_logged_once_per_interval(collector, caplog):
    exporter = make_exporter(collector.url)
    collector.fail_with = [500] * 5
    for _ in range(5):
        with pytest.raises(ExportError):
            exporter.export_spans(spans(1))
    assert caplog.text.count("answered HTTP 500") == 1


def test_connection_refused_is_retryable_then_recovers(collector, wire, caplog):
    exporter = make_exporter(f"http://127.0.0.1:{free_port()}/api/traces")
    with pytest.raises(ExportError) as info:
        exporter.export_spans(spans(1))
    assert info.value.retryable is True
    assert "cannot reach" in caplog.text and "do-not-log-me" not in caplog.text
    working = make_exporter(collector.url)
    working.export_spans(spans(1))
    assert len(collector.spans()) == 1


def test_pipeline_retries_a_failing_collector_until_it_accepts(gatescope_plugins, collector):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"jaeger": {"endpoint": collector.url, "service_name": "gateway"}}, sample_rate=100))
    collector.fail_with = [503]
    span = telemetry.tracer.start_root("/retried", KIND_SERVER, None)
    span.set_status(UNKNOWN, "boom")
    span.end()
    assert telemetry.flush(10)
    assert [s.operationName for s in collector.spans()] == ["/retried"]
    assert len(collector.requests) == 2


def test_credentials_in_the_url_become_basic_auth_and_stay_out_of_logs(collector, caplog):
    url = collector.url.replace("http://", "http://user:s3cr%40t@")
    exporter = make_exporter(url)
    exporter.export_spans(spans(1))
    assert collector.requests[0]["headers"]["Authorization"] == "Basic dXNlcjpzM2NyQHQ="
    collector.fail_with = [500]
    with pytest.raises(ExportError) as info:
        exporter.export_spans(spans(1))
    assert "s3cr" not in caplog.text and "s3cr" not in str(info.value)
