"""Real round trips to an OpenCensus agent receiver on 127.0.0.1, decoded with classes compiled from
the official .proto files (not the plugin's own)."""

from __future__ import annotations

import gzip
import logging
import time

import grpc
import pytest
from gatescope import ExportError
from gatescope.exporter import ExporterContext
from gatescope.metrics import COUNT, LATENCY_BOUNDS, MetricsSnapshot, View, ViewData
from gatescope.spans import KIND_SERVER, SpanRecord
from gatescope.testing import REMOTE_PARENT, exporter_of, krakend_config, synthetic_request
from gatescope_ocagent import OcagentConfig, OcagentExporter

REMOTE = REMOTE_PARENT


def ocagent_section(address: str, **keys):
    return {"address": address, "insecure": True, **keys}


def all_spans(streams):
    return [span for stream in streams if stream.method.endswith("TraceService/Export")
            for message in stream.messages for span in message.spans]


def test_three_layer_request_spans_and_metrics_arrive(gatescope_plugins, agent, oc):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"ocagent": ocagent_section(agent.address, service_name="gw-test"), "capture": {}},
        sample_rate=100))
    synthetic_request(telemetry)
    assert telemetry.flush(10)
    sent = {s.span_id: s for s in exporter_of(telemetry, "capture").wait_for_spans(4)}

    streams = agent.wait_for(oc.TRACE)
    first = streams[0].messages[0]
    assert first.node.service_info.name == "gw-test"
    assert first.node.identifier.pid > 0 and first.node.identifier.host_name
    assert first.node.library_info.language == 8  # PYTHON
    assert first.node.library_info.exporter_version.startswith("gatescope-ocagent ")

    spans = all_spans(streams)
    assert len(spans) == 4
    by_id = {span.span_id.hex(): span for span in spans}
    assert set(by_id) == set(sent)
    for span_id, span in by_id.items():
        record: SpanRecord = sent[span_id]
        assert span.trace_id == bytes.fromhex(REMOTE.trace_id)
        assert span.name.value == record.name
        assert span.parent_span_id == bytes.fromhex(record.parent_span_id)
        assert span.kind == record.kind
        assert span.start_time.ToNanoseconds() == record.start_ns
        assert span.end_time.ToNanoseconds() == record.end_ns
        assert span.status.code == record.status_code
    names = {span.name.value: span for span in spans}
    root, client = names["/users/{id}"], names["/api/users/42"]
    assert root.parent_span_id.hex() == REMOTE.span_id
    assert root.same_process_as_parent_span.value is False
    assert names["pipe-/users/{id}"].parent_span_id == root.span_id
    assert names["pipe-/users/{id}"].same_process_as_parent_span.value is True
    assert names["backend-/api/users/{id}"].parent_span_id == names["pipe-/users/{id}"].span_id
    assert client.parent_span_id == names["backend-/api/users/{id}"].span_id
    assert root.kind == 1 and client.kind == 2
    attributes = client.attributes.attribute_map
    assert attributes["http.status_code"].int_value == 503
    assert attributes["http.url"].string_value.value == "http://upstream/api/users/42"
    assert attributes["gatescope.ratio"].double_value == 0.5
    assert attributes["gatescope.cached"].WhichOneof("value") == "bool_value"
    assert client.status.code == 14 and client.status.message == "UNAVAILABLE"

    metric_streams = agent.wait_for(oc.METRICS)
    message = metric_streams[-1].messages[0]
    assert message.node.service_info.name == "gw-test"
    metrics = {m.metric_descriptor.name: m for s in metric_streams[-1:] for msg in s.messages
               for m in msg.metrics}
    count = metrics["opencensus.io/http/server/request_count"]
    assert count.metric_descriptor.type == 4  # CUMULATIVE_INT64
    assert count.timeseries[0].points[0].int64_value == 1
    assert count.timeseries[0].start_timestamp.ToNanoseconds() > 0
    latency = metrics["opencensus.io/http/client/roundtrip_latency"]
    descriptor = latency.metric_descriptor
    assert descriptor.type == 6 and descriptor.unit == "ms"  # CUMULATIVE_DISTRIBUTION
    assert [k.key for k in descriptor.label_keys] == ["http_client_method", "http_client_status"]
    (series,) = latency.timeseries
    assert [(v.value, v.has_value) for v in series.label_values] == [("GET", True), ("503", True)]
    value = series.points[0].distribution_value
    assert value.count == 1 and value.sum == 7.5
    assert list(value.bucket_options.explicit.bounds) == list(LATENCY_BOUNDS)
    counts = [b.count for b in value.buckets]
    assert len(counts) == len(LATENCY_BOUNDS) + 1
    assert counts[LATENCY_BOUNDS.index(8)] == 1 and sum(counts) == 1  # 7.5 is in [6, 8)
    assert series.points[0].timestamp.ToNanoseconds() >= series.start_timestamp.ToNanoseconds()


def make_exporter(address: str, **keys) -> OcagentExporter:
    host, port = address.rsplit(":", 1)
    config = OcagentConfig(**{"address": (host, int(port)), "insecure": True, **keys})
    context = ExporterContext("svc", 0, logging.getLogger("test.ocagent"),
                              lambda: MetricsSnapshot(0, ()), export_timeout=5.0)
    exporter = OcagentExporter(config, context)
    exporter.start()
    return exporter


def span(name: str, index: int = 1) -> SpanRecord:
    now = time.time_ns()
    return SpanRecord(name, f"{index:032x}", f"{index:016x}", None, KIND_SERVER, now, now + 1000,
                      {"i": index})


def test_headers_and_gzip_are_on_the_wire(agent, oc):
    for compressed in (True, False):
        proxy = oc.TapProxy(agent.port)
        exporter = make_exporter(f"127.0.0.1:{proxy.port}", enable_compression=compressed,
                                 headers={"X-Api-Key": "s3cret", "tenant": "t1"})
        try:
            exporter.export_spans([span(f"zipped-{compressed}")])
        finally:
            exporter.shutdown(1)
            proxy.close()
        stream = agent.streams[-1]
        assert stream.metadata["x-api-key"] == "s3cret" and stream.metadata["tenant"] == "t1"
        assert all_spans([stream])[0].name.value == f"zipped-{compressed}"
        messages = proxy.grpc_messages()
        assert len(messages) == 1
        flag, payload = messages[0]
        assert flag == (1 if compressed else 0)
        raw = gzip.decompress(payload) if compressed else payload
        decoded = agent.protos.TraceRequest.FromString(raw)
        assert decoded.spans[0].name.value == f"zipped-{compressed}"
        assert (f"zipped-{compressed}".encode() in payload) is not compressed


def test_node_is_on_the_first_message_of_each_stream_only(agent, oc):
    exporter = make_exporter(agent.address)
    try:
        exporter.export_spans([span("s", i) for i in range(1, 1100)])
        exporter.export_spans([span("t", 5000)])
    finally:
        exporter.shutdown(1)
    first, second = agent.wait_for(oc.TRACE, 2)
    assert [len(m.spans) for m in first.messages] == [512, 512, 75]
    assert [m.HasField("node") for m in first.messages] == [True, False, False]
    assert second.messages[0].HasField("node")
    assert len({s.span_id for s in all_spans([first])}) == 1099


def test_agent_errors_raise_export_error(agent):
    exporter = make_exporter(agent.address)
    try:
        agent.fail_with = grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(ExportError) as info:
            exporter.export_spans([span("rejected")])
        assert info.value.retryable is False and "INVALID_ARGUMENT" in str(info.value)
        agent.fail_with = grpc.StatusCode.RESOURCE_EXHAUSTED
        view = View("requests", "Requests", "1", COUNT, ("method",))
        snapshot = MetricsSnapshot(time.time_ns(), (ViewData(view, 1, {("GET",): 3}),))
        with pytest.raises(ExportError) as info:
            exporter.export_metrics(snapshot)
        assert info.value.retryable is True and "RESOURCE_EXHAUSTED" in str(info.value)
        agent.fail_with = None
        exporter.export_metrics(snapshot)
        (metric,) = agent.streams[-1].messages[0].metrics
        assert metric.timeseries[0].points[0].int64_value == 3
    finally:
        exporter.shutdown(1)


def test_reconnects_after_the_agent_restarts_on_the_same_port(agent, oc):
    exporter = make_exporter(agent.address, reconnection=0.3)
    try:
        exporter.export_spans([span("before", 1)])
        agent.stop()
        with pytest.raises(ExportError) as info:
            exporter.export_spans([span("during", 2)])
        assert info.value.retryable and "UNAVAILABLE" in str(info.value)
        with pytest.raises(ExportError) as info:  # inside the reconnection delay: no dialing
            exporter.export_spans([span("during", 3)])
        assert "reconnecting in" in str(info.value)
        agent.start()  # same port
        deadline = time.monotonic() + 10
        while True:
            try:
                exporter.export_spans([span("after", 4)])
                break
            except ExportError:
                assert time.monotonic() < deadline, "never reconnected"
                time.sleep(0.05)
    finally:
        exporter.shutdown(1)
    names = [s.name.value for s in all_spans(agent.streams)]
    assert names == ["before", "after"]


def test_stuck_agent_never_blocks_the_request_path_and_recovers(gatescope_plugins, agent):
    agent.responsive.clear()  # the agent accepts streams and never finishes them
    document = krakend_config({"ocagent": ocagent_section(agent.address, reconnection="100ms")},
                              sample_rate=100, export_timeout="1s")
    telemetry = gatescope_plugins.telemetry(document)
    worker = next(w for w in telemetry.pipeline.workers if w.name == "ocagent")
    synthetic_request(telemetry)
    deadline = time.monotonic() + 10
    while not worker.busy:  # the export call is now stuck on the unresponsive agent
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for _ in range(200):  # ... while the request path keeps going
        synthetic_request(telemetry)
    assert worker.busy, "request path waited for the exporter"
    assert not telemetry.flush(0.2)
    while worker.errors == 0:  # the stuck stream hits export_timeout and fails (retryable)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    agent.responsive.set()  # the agent comes back: what was queued is delivered
    deadline = time.monotonic() + 20
    while len(all_spans(agent.streams)) < 4 * 201:
        assert time.monotonic() < deadline, f"never recovered ({len(all_spans(agent.streams))})"
        telemetry.flush(1)


def test_tls_is_the_default(agent):
    config = OcagentConfig(address=("127.0.0.1", agent.port))  # insecure defaults to false
    context = ExporterContext("svc", 0, logging.getLogger("test.ocagent"),
                              lambda: MetricsSnapshot(0, ()), export_timeout=3.0)
    exporter = OcagentExporter(config, context)
    exporter.start()
    try:
        with pytest.raises(ExportError) as info:  # a TLS handshake against a plaintext agent
            exporter.export_spans([span("tls")])
        assert "UNAVAILABLE" in str(info.value)
    finally:
        exporter.shutdown(1)
    assert agent.streams == []
