"""Round trips to a local Cloud Trace v2 / Cloud Monitoring v3 gRPC server that decodes requests."""

from __future__ import annotations

import logging
import time

import grpc
import pytest
from gatescope import ExportError
from gatescope.exporter import ExporterContext
from gatescope.metrics import COUNT, LATENCY_BOUNDS, MetricsSnapshot, View, ViewData
from gatescope.spans import KIND_SERVER, SpanRecord
from gatescope.testing import REMOTE_PARENT, exporter_of, krakend_config, synthetic_request
from gatescope_stackdriver import StackdriverConfig, StackdriverExporter

REMOTE = REMOTE_PARENT
DOMAIN = "custom.googleapis.com/opencensus/"


def section(address: str, **keys):
    return {"project_id": "my-project", "default_labels": {"env": "prod"}, "endpoint": address,
            **keys}


def test_three_layer_request_spans_arrive_in_cloud_trace(gatescope_plugins, cloud):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"stackdriver": section(cloud.address), "capture": {}}, sample_rate=100))
    synthetic_request(telemetry)
    assert telemetry.flush(10)
    sent = {s.span_id: s for s in exporter_of(telemetry, "capture").wait_for_spans(4)}
    requests = cloud.wait_for("BatchWriteSpans")
    assert {r.name for r in requests} == {"projects/my-project"}
    spans = [span for r in requests for span in r.spans]
    assert len(spans) == 4
    by_name = {}
    for span in spans:
        record = sent[span.span_id]
        assert span.name == f"projects/my-project/traces/{REMOTE.trace_id}/spans/{span.span_id}"
        assert span.start_time.ToNanoseconds() == record.start_ns
        assert span.end_time.ToNanoseconds() == record.end_ns
        assert span.parent_span_id == record.parent_span_id
        assert span.attributes.attribute_map["g.co/agent"].string_value.value.startswith(
            "gatescope-stackdriver ")
        by_name[span.display_name.value] = span
    assert set(by_name) == {"Recv./users/{id}", "pipe-/users/{id}", "backend-/api/users/{id}",
                            "Sent./api/users/42"}
    root, client = by_name["Recv./users/{id}"], by_name["Sent./api/users/42"]
    assert root.parent_span_id == REMOTE.span_id
    assert root.same_process_as_parent_span.value is False
    assert by_name["pipe-/users/{id}"].same_process_as_parent_span.value is True
    assert root.span_kind == 2 and client.span_kind == 3  # SERVER, CLIENT
    assert not root.HasField("status")
    assert client.status.code == 14 and client.status.message == "UNAVAILABLE"
    attributes = client.attributes.attribute_map
    assert attributes["/http/status_code"].int_value == 503
    assert attributes["/http/url"].string_value.value == "http://upstream/api/users/42"
    assert attributes["gatescope.ratio"].string_value.value == "0.5"
    assert attributes["gatescope.cached"].WhichOneof("value") == "bool_value"
    assert root.attributes.attribute_map["/http/method"].string_value.value == "GET"


def test_metrics_arrive_in_cloud_monitoring(gatescope_plugins, cloud):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"stackdriver": section(cloud.address, metric_prefix="gw")}, sample_rate=100))
    synthetic_request(telemetry)
    assert telemetry.flush(10)
    descriptors = {r.metric_descriptor.type: r.metric_descriptor
                   for r in cloud.requests("CreateMetricDescriptor")}
    latency_type = DOMAIN + "opencensus.io/http/client/roundtrip_latency"
    latency = descriptors[latency_type]
    assert latency.name == f"projects/my-project/metricDescriptors/{latency_type}"
    assert latency.display_name == "gw/opencensus.io/http/client/roundtrip_latency"
    assert latency.metric_kind == 3 and latency.value_type == 5  # CUMULATIVE DISTRIBUTION
    assert latency.unit == "ms"
    assert [label.key for label in latency.labels] == ["env", "http_client_method",
                                                        "http_client_status"]
    count = descriptors[DOMAIN + "opencensus.io/http/server/request_count_by_method"]
    assert count.value_type == 2 and count.unit == "1"  # INT64
    assert [label.key for label in count.labels] == ["env", "http_method"]

    series = {(s.metric.type, tuple(sorted(s.metric.labels.items()))): s
              for r in cloud.requests("CreateTimeSeries") for s in r.time_series}
    roundtrip = series[(latency_type, (("env", "prod"), ("http_client_method", "GET"),
                                       ("http_client_status", "503")))]
    assert roundtrip.resource.type == "global"
    (point,) = roundtrip.points
    assert point.interval.start_time.ToNanoseconds() <= point.interval.end_time.ToNanoseconds()
    value = point.value.distribution_value
    assert value.count == 1 and value.mean == 7.5
    assert list(value.bucket_options.explicit_buckets.bounds) == [0.0, *LATENCY_BOUNDS]
    assert len(value.bucket_counts) == len(LATENCY_BOUNDS) + 2
    assert value.bucket_counts[1 + LATENCY_BOUNDS.index(8)] == 1 and sum(value.bucket_counts) == 1
    by_method = series[(DOMAIN + "opencensus.io/http/server/request_count_by_method",
                        (("env", "prod"), ("http_method", "GET")))]
    assert by_method.points[0].value.int64_value == 1

    # The next push reuses the descriptors and sends fresh cumulative points.
    created = len(cloud.requests("CreateMetricDescriptor"))
    synthetic_request(telemetry)
    assert telemetry.flush(10)
    assert len(cloud.requests("CreateMetricDescriptor")) == created
    latest = [s for r in cloud.requests("CreateTimeSeries") for s in r.time_series
              if s.metric.type == DOMAIN + "opencensus.io/http/server/request_count"]
    assert latest[-1].points[0].value.int64_value == 2


def make_exporter(address: str, **keys) -> StackdriverExporter:
    host, port = address.rsplit(":", 1)
    config = StackdriverConfig(**{"project_id": "p1", "endpoint": (host, int(port)), **keys})
    context = ExporterContext("svc", 0, logging.getLogger("test.stackdriver"),
                              lambda: MetricsSnapshot(0, ()), export_timeout=2.0)
    exporter = StackdriverExporter(config, context)
    exporter.start()
    return exporter


def big_snapshot(rows: int) -> MetricsSnapshot:
    view = View("requests", "Requests", "1", COUNT, ("path",))
    now = time.time_ns()
    return MetricsSnapshot(now, (ViewData(view, now - 10**9, {(f"/p{i}",): i for i in range(rows)}),))


def test_at_most_200_series_per_call_and_one_point_each(cloud):
    exporter = make_exporter(cloud.address)
    try:
        exporter.export_metrics(big_snapshot(450))
    finally:
        exporter.shutdown(1)
    calls = cloud.requests("CreateTimeSeries")
    assert [len(r.time_series) for r in calls] == [200, 200, 50]
    for request in calls:
        assert request.name == "projects/p1"
        assert all(len(s.points) == 1 for s in request.time_series)
        keys = [tuple(sorted(s.metric.labels.items())) for s in request.time_series]
        assert len(keys) == len(set(keys))
    values = sorted(s.points[0].value.int64_value for r in calls for s in r.time_series)
    assert values == list(range(450))


def span(name: str, index: int = 1) -> SpanRecord:
    now = time.time_ns()
    return SpanRecord(name, f"{index:032x}", f"{index:016x}", None, KIND_SERVER, now, now + 1000, {})


def test_failing_receiver_raises_and_recovers_after_restart(cloud):
    exporter = make_exporter(cloud.address)
    try:
        cloud.fail_with = grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(ExportError) as info:
            exporter.export_spans([span("bad")])
        assert info.value.retryable is False
        cloud.fail_with = grpc.StatusCode.UNAVAILABLE
        with pytest.raises(ExportError) as info:
            exporter.export_metrics(big_snapshot(3))
        assert info.value.retryable is True
        cloud.fail_with = None
        cloud.stop()
        with pytest.raises(ExportError) as info:
            exporter.export_spans([span("down")])
        assert info.value.retryable is True
        cloud.start()  # same port
        deadline = time.monotonic() + 15
        while True:
            try:
                exporter.export_spans([span("back", 2)])
                exporter.export_metrics(big_snapshot(3))
                break
            except ExportError:
                assert time.monotonic() < deadline, "never recovered"
                time.sleep(0.1)
    finally:
        exporter.shutdown(1)
    assert [s.display_name.value for r in cloud.requests("BatchWriteSpans") for s in r.spans] == \
        ["Recv.back"]
    assert len(cloud.requests("CreateTimeSeries")) == 1


def test_stuck_receiver_never_blocks_the_request_path_and_recovers(gatescope_plugins, cloud):
    cloud.responsive.clear()
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"stackdriver": section(cloud.address)}, sample_rate=100, export_timeout="1s"))
    worker = next(w for w in telemetry.pipeline.workers if w.name == "stackdriver")
    synthetic_request(telemetry)
    deadline = time.monotonic() + 10
    while not worker.busy:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for _ in range(200):
        synthetic_request(telemetry)
    assert worker.busy, "request path waited for the exporter"
    while worker.errors == 0:  # the stuck call hits export_timeout: a retryable failure
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cloud.responsive.set()
    deadline = time.monotonic() + 20
    while sum(len(r.spans) for r in cloud.requests("BatchWriteSpans")) < 4 * 201:
        assert time.monotonic() < deadline, "never recovered"
        telemetry.flush(1)
