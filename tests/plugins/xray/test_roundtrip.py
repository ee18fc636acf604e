"""Real round trips: spans -> PutTraceSegments -> moto's X-Ray server -> BatchGetTraces back."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gatescope import tracing
from gatescope.spans import KIND_CLIENT, KIND_SERVER, KIND_UNSPECIFIED
from gatescope.testing import exporter_of, krakend_config

SCHEMA_MODULE = Path(__file__).with_name("segment_schema.py")


def _rules():
    import importlib.util

    spec = importlib.util.spec_from_file_location("xray_segment_schema_rt", SCHEMA_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RULES = _rules()


def expected_xray_id(trace_id: str, start_ns: int) -> str:
    """The documented mapping, stated independently: 8 hex of time + the last 24 hex."""
    prefix = int(trace_id[:8], 16)
    epoch = prefix if -300 <= time.time() - prefix <= 28 * 86400 else start_ns // 10**9
    return f"1-{epoch:08x}-{trace_id[8:]}"


def read_trace(moto, xray_id: str, expected_segments: int, timeout: float = 10.0) -> dict:
    client = moto.client()
    deadline = time.monotonic() + timeout
    while True:
        traces = client.batch_get_traces(TraceIds=[xray_id])["Traces"]
        if (traces and len(traces[0]["Segments"]) >= expected_segments) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert traces, f"trace {xray_id} not found in moto"
    return traces[0]


def summaries(moto) -> dict[str, dict]:
    now = time.time()
    found = moto.client().get_trace_summaries(StartTime=now - 3600, EndTime=now + 3600)
    return {s["Id"]: s for s in found["TraceSummaries"]}


def documents_of(trace: dict) -> dict[str, dict]:
    for segment in trace["Segments"]:
        assert RULES.problems(segment["Document"], time.time()) == [], segment["Document"]
    return {s["Id"]: json.loads(s["Document"]) for s in trace["Segments"]}


def test_tracer_spans_arrive_as_linked_segments(gatescope_plugins, moto, xray_helpers):
    telemetry = gatescope_plugins.telemetry(
        krakend_config({"xray": xray_helpers.xray_section(moto.endpoint, version="2.4.1")}, sample_rate=100))
    tracer = telemetry.kit.tracer
    root = tracer.start_root("/orders/{id}", KIND_SERVER, None)
    root.attributes.update({"http.method": "POST", "http.host": "gw.example.com",
                            "http.path": "/orders/9", "http.url": "/orders/9",
                            "http.user_agent": "curl/8", "order.tier": "gold"})
    outer = tracing.current.set(root)
    pipe = tracer.start_child("pipe-/orders/{id}", KIND_UNSPECIFIED)
    inner = tracing.current.set(pipe)
    client = tracer.start_child("/api/orders/9", KIND_CLIENT)
    client.attributes.update({"http.host": "orders.internal", "http.method": "GET",
                              "http.url": "http://orders.internal/api/orders/9"})
    client.set_http_status(429)
    client.end()
    tracing.current.reset(inner)
    pipe.end()
    tracing.current.reset(outer)
    root.set_http_status(503)
    root.end()
    assert telemetry.flush(10.0)

    xray_id = expected_xray_id(root.trace_id, root.start_ns)
    documents = documents_of(read_trace(moto, xray_id, 3))
    assert set(documents) == {root.span_id, pipe.span_id, client.span_id}
    segment, pipe_doc, client_doc = (documents[s.span_id] for s in (root, pipe, client))
    assert segment["name"] == "gw.example.com" and segment["service"] == {"version": "2.4.1"}
    assert segment["fault"] is True and "parent_id" not in segment
    assert segment["http"]["request"] == {"method": "POST", "url": "/orders/9", "user_agent": "curl/8"}
    assert segment["annotations"] == {"http_path": "/orders/9", "order_tier": "gold"}
    assert (pipe_doc["type"], pipe_doc["parent_id"]) == ("subsegment", root.span_id)
    assert (client_doc["parent_id"], client_doc["namespace"]) == (pipe.span_id, "remote")
    assert client_doc["name"] == "orders.internal"
    assert client_doc["throttle"] is True and client_doc["error"] is True

    summary = summaries(moto)[xray_id]
    assert (summary["HasFault"], summary["HasError"], summary["HasThrottle"]) == (True, True, True)
    exporter = exporter_of(telemetry, "xray")
    assert (exporter.sent_documents, exporter.unprocessed_documents) == (3, 0)


def test_a_three_layer_request_through_the_integrations(gatescope_plugins, moto, upstream,
                                                        xray_helpers):
    ENDPOINT, URL_PATTERN = xray_helpers.ENDPOINT, xray_helpers.URL_PATTERN
    document = krakend_config(
        {"xray": xray_helpers.xray_section(moto.endpoint), "capture": {}}, sample_rate=100,
        endpoints=[{"endpoint": ENDPOINT, "backend": [{"url_pattern": URL_PATTERN}]}])
    telemetry = gatescope_plugins.telemetry(document)
    upstream.status = 404
    assert xray_helpers.three_layer_request(telemetry, upstream) == 502
    assert telemetry.flush(10.0)
    spans = exporter_of(telemetry, "capture").spans
    assert len(spans) == 4, [s.name for s in spans]
    root = next(s for s in spans if s.parent_span_id is None)

    xray_id = expected_xray_id(root.trace_id, root.start_ns)
    documents = documents_of(read_trace(moto, xray_id, 4))
    by_name = {s.name: documents[s.span_id] for s in spans}
    router = by_name[ENDPOINT]
    assert "type" not in router and router["service"] == {"version": "KrakenD-opencensus"}
    assert router["http"]["request"]["method"] == "GET"
    assert router["http"]["request"]["user_agent"] == "xray-test/1"
    assert router["http"]["response"]["status"] == 502 and router["fault"] is True
    pipe = by_name[f"pipe-{ENDPOINT}"]
    backend = by_name[f"backend-{URL_PATTERN}"]
    client = next(d for d in documents.values() if d.get("namespace") == "remote")
    assert pipe["parent_id"] == root.span_id and pipe["type"] == "subsegment"
    assert backend["parent_id"] == pipe["id"]
    assert client["parent_id"] == backend["id"]
    assert client["http"]["response"]["status"] == 404 and client["error"] is True
    assert client["http"]["request"]["url"].startswith(upstream.url + "/u/42")
    assert len({d["trace_id"] for d in documents.values()}) == 1
    summary = summaries(moto)[xray_id]
    assert summary["HasFault"] and summary["HasError"] and not summary["HasThrottle"]


def test_large_batches_are_split_into_fifty_document_calls(gatescope_plugins, moto, xray_helpers):
    telemetry = gatescope_plugins.telemetry(
        krakend_config({"xray": xray_helpers.xray_section(moto.endpoint)}, sample_rate=100, batch_size=500))
    tracer = telemetry.kit.tracer
    roots = []
    for index in range(120):
        span = tracer.start_root(f"/bulk/{index}", KIND_SERVER, None)
        span.end()
        roots.append(span)
    assert telemetry.flush(10.0)
    exporter = exporter_of(telemetry, "xray")
    assert exporter.sent_documents == 120
    assert exporter.calls >= 3  # never more than 50 documents per PutTraceSegments
    ids = [expected_xray_id(s.trace_id, s.start_ns) for s in roots]
    found = moto.client().batch_get_traces(TraceIds=ids[:5])["Traces"]
    assert {t["Id"] for t in found} == set(ids[:5])
    assert ids[-1] in summaries(moto)
