"""Spans -> X-Ray segment documents: checked against X-Ray's documented rules (segment_schema.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from gatescope.spans import KIND_CLIENT, KIND_SERVER, KIND_UNSPECIFIED, SpanRecord
from gatescope_xray.ids import TraceIdMapper
from gatescope_xray.segments import SegmentEncoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCHEMA_MODULE = Path(__file__).with_name("segment_schema.py")


def _rules():
    import importlib.util

    spec = importlib.util.spec_from_file_location("xray_segment_schema", SCHEMA_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RULES = _rules()
NOW = time.time()
START = int(NOW * 1e9) - 2_000_000_000
TRACE = "5bd1e9955bd1e9955bd1e9955bd1e995"  # first 8 hex are not a recent epoch
ROOT, PIPE, CLIENT = "00f067aa0ba902b7", "1a2b3c4d5e6f7081", "9f8e7d6c5b4a3921"


def span(name="/users/{id}", trace=TRACE, span_id=ROOT, parent=None, kind=KIND_SERVER,
         start=START, duration=5_000_000, attributes=None, status=0, message=""):
    return SpanRecord(name, trace, span_id, parent, kind, start, start + duration,
                      dict(attributes or {}), status, message)


def encode(*spans, version="KrakenD-opencensus"):
    documents = SegmentEncoder(version, sdk_version="9.9").encode_batch(list(spans))
    for text in documents:
        assert RULES.problems(text, time.time()) == [], text
    return [json.loads(text) for text in documents]


def three_layers():
    root = span(attributes={"http.method": "GET", "http.host": "gw.example.com",
                            "http.path": "/users/7", "http.url": "/users/7?x=1",
                            "http.user_agent": "curl/8", "http.status_code": 200})
    pipe = span("pipe-/users/{id}", span_id=PIPE, parent=ROOT, kind=KIND_UNSPECIFIED,
                start=START + 1000, duration=4_000_000)
    client = span("/api/users/7", span_id=CLIENT, parent=PIPE, kind=KIND_CLIENT,
                  start=START + 2000, duration=3_000_000,
                  attributes={"http.method": "GET", "http.url": "http://backend:8080/api/users/7",
                              "http.status_code": 200, "http.response_content_length": 86})
    return root, pipe, client


def test_schema_itself_rejects_what_x_ray_refuses():
    good = {"name": "a", "id": ROOT, "trace_id": "1-" + f"{int(NOW):08x}" + "-" + "a" * 24,
            "start_time": NOW, "end_time": NOW + 1}
    assert RULES.problems(json.dumps(good), NOW) == []
    for bad in ({"id": "XYZ"}, {"trace_id": "1-abc-def"}, {"name": "a{b}"}, {"name": "n" * 201},
                {"annotations": {"a.b": 1}}, {"annotations": {"a": [1]}}, {"type": "subsegment"},
                {"namespace": "remote"}, {"http": {"request": {"url": "u" * 251}}},
                {"cause": {"exceptions": [{"message": "no id"}]}}, {"metadata": {"AWS.x": {}}},
                {"trace_id": "1-00000001-" + "a" * 24}):
        assert RULES.problems(json.dumps({**good, **bad}), NOW), bad
    assert RULES.problems(json.dumps({k: v for k, v in good.items() if k != "end_time"}), NOW)


def test_three_layers_become_a_segment_and_nested_subsegments():
    segment, pipe, client = encode(*three_layers())
    assert segment["id"] == ROOT and "parent_id" not in segment and "type" not in segment
    assert segment["name"] == "gw.example.com"  # the Go exporter names by http.host
    assert segment["service"] == {"version": "KrakenD-opencensus"}
    assert segment["aws"] == {"xray": {"sdk": "gatescope-xray", "sdk_version": "9.9"}}
    assert segment["http"] == {"request": {"method": "GET", "url": "/users/7?x=1",
                                           "user_agent": "curl/8"}, "response": {"status": 200}}
    assert segment["annotations"] == {"http_path": "/users/7"}
    assert segment["metadata"] == {"opencensus": {"span_name": "/users/{id}"}}
    assert (pipe["type"], pipe["parent_id"], pipe["name"]) == ("subsegment", ROOT, "pipe-/users/id")
    assert "namespace" not in pipe and "service" not in pipe
    assert (client["type"], client["parent_id"], client["namespace"]) == ("subsegment", PIPE, "remote")
    assert client["http"]["response"] == {"status": 200, "content_length": 86}
    assert {d["trace_id"] for d in (segment, pipe, client)} == {segment["trace_id"]}
    for document in (segment, pipe, client):
        assert not {"error", "fault", "throttle", "cause"} & set(document)


def test_times_are_float_epoch_seconds_at_microsecond_resolution():
    start = (int(NOW) - 60) * 10**9 + 123_456_789
    (document,) = encode(span(start=start, duration=1_000_000_000))
    assert isinstance(document["start_time"], float)
    assert round(document["start_time"] * 1e6) == (int(NOW) - 60) * 10**6 + 123_456
    assert round(document["end_time"] * 1e6) == (int(NOW) - 59) * 10**6 + 123_456


def test_spans_older_than_x_rays_window_get_the_current_epoch():
    old = 1_700_000_000  # long before this test runs
    mapper = TraceIdMapper()
    assert mapper.convert(TRACE, old, now=old + 40 * 24 * 3600)[2:10] == f"{old + 40 * 24 * 3600:08x}"
    (document,) = SegmentEncoder("v").encode_batch([span(start=old * 10**9)])
    assert RULES.problems(document, time.time()) == []


def test_a_server_span_with_a_remote_parent_is_a_segment_pointing_at_it():
    (document,) = encode(span(parent="abcdefabcdefabcd"))
    assert document["parent_id"] == "abcdefabcdefabcd" and "type" not in document
    assert "service" in document


@pytest.mark.parametrize(("status", "code", "flags"), [
    (200, 0, set()), (302, 0, set()), (404, 5, {"error"}), (400, 3, {"error"}),
    (429, 8, {"error", "throttle"}), (500, 2, {"fault"}), (503, 14, {"fault"}),
    (None, 8, {"error", "throttle"}), (None, 5, {"error"}), (None, 16, {"error"}),
    (None, 13, {"fault"}), (None, 4, {"fault"}), (None, 2, {"fault"}), (None, 0, set()),
])
def test_error_fault_throttle(status, code, flags):
    attributes = {} if status is None else {"http.status_code": status}
    (document,) = encode(span(attributes=attributes, status=code, message="boom" if code else ""))
    assert {k for k in ("error", "fault", "throttle") if document.get(k)} == flags
    assert all(document[k] is True for k in flags)
    if code:
        (exception,) = document["cause"]["exceptions"]
        assert exception["message"] == "boom" and exception["id"] != ROOT
    else:
        assert "cause" not in document


def test_names_are_sanitized_and_bounded():
    for raw, expected in [("/a/{b}", "/a/b"), ("hé llo_.:/%&#=+\\-@", "hé llo_.:/%&#=+\\-@"),
                          ("{}<>!", "span"), ("x" * 300, "x" * 200), ("日本/ä", "日本/ä")]:
        (document,) = encode(span(raw))
        assert document["name"] == expected
        assert document.get("metadata", {}).get("opencensus", {}).get("span_name") == (
            None if expected == raw else raw)


def test_annotation_keys_follow_x_ray_rules_and_overflow_goes_to_metadata():
    attributes = {f"app.key-{i}": i for i in range(60)}
    attributes.update({"flag": True, "ratio": 0.5, "nan": float("nan"), "long": "v" * 5000})
    (document,) = encode(span(attributes=attributes))
    annotations = document["annotations"]
    assert len(annotations) == 50
    assert annotations["app_key_0"] == 0
    overflow = document["metadata"]["opencensus"]["attributes"]
    assert len(annotations) + len(overflow) == len(attributes)
    assert overflow["flag"] is True and overflow["nan"] == "nan"
    assert overflow["long"] == "v" * 1000


def test_colliding_annotation_keys_keep_both_values():
    (document,) = encode(span(attributes={"a.b": 1, "a-b": 2}))
    assert document["annotations"] == {"a_b": 1}
    assert document["metadata"]["opencensus"]["attributes"] == {"a-b": 2}


def test_oversized_documents_are_trimmed_below_64_kb():
    attributes = {f"k{i}": "é" * 1000 for i in range(50)}  # ~100 kB of annotations alone
    attributes.update({f"m{i}": "x" * 1000 for i in range(100)})
    text = SegmentEncoder("v").encode(span(attributes=attributes, status=13, message="m" * 900))
    assert RULES.problems(text, time.time()) == []
    assert len(text.encode()) <= 64_000
    document = json.loads(text)
    assert "metadata" not in document and "annotations" not in document
    assert document["fault"] is True and document["id"] == ROOT


def test_empty_version_omits_the_service_block():
    (document,) = encode(span(), version="")
    assert "service" not in document


def test_time_prefixed_trace_ids_keep_their_epoch():
    epoch = int(NOW) - 3600
    trace = f"{epoch:08x}" + "c" * 24
    (document,) = encode(span(trace=trace))
    assert document["trace_id"] == f"1-{epoch:08x}-{'c' * 24}"


def test_a_trace_maps_to_one_x_ray_id_across_batches():
    encoder = SegmentEncoder("v")
    root, pipe, client = three_layers()
    first = json.loads(encoder.encode_batch([client])[0])  # children end (and ship) first
    later = [json.loads(t) for t in encoder.encode_batch([pipe, root])]
    assert {d["trace_id"] for d in [first, *later]} == {first["trace_id"]}
    assert first["trace_id"] == f"1-{(START + 2000) // 10**9:08x}-{TRACE[8:]}"


def test_earliest_start_in_a_batch_sets_the_epoch():
    _root, pipe, client = three_layers()
    late_root = span(start=START - 5_000_000_000)
    documents = SegmentEncoder("v").encode_batch([client, pipe, late_root])
    epochs = {json.loads(t)["trace_id"][2:10] for t in documents}
    assert epochs == {f"{(START - 5_000_000_000) // 10**9:08x}"}


def test_the_trace_memory_is_bounded():
    mapper = TraceIdMapper(capacity=3)
    for index in range(5):
        mapper.convert(f"{index:032x}", 1_700_000_000 + index, now=1_700_000_100)
    assert len(mapper._epochs) == 3
    # the oldest trace was forgotten: it now maps with the start it is given
    assert mapper.convert(f"{0:032x}", 1_700_000_050, now=1_700_000_100)[2:10] == f"{1_700_000_050:08x}"
    assert mapper.convert(f"{4:032x}", 1_700_000_099, now=1_700_000_100)[2:10] == f"{1_700_000_004:08x}"


ATTRIBUTE_KEYS = st.text(min_size=1, max_size=40)
ATTRIBUTE_VALUES = st.one_of(st.text(max_size=300), st.integers(-(2**63), 2**63 - 1),
                             st.floats(allow_nan=True), st.booleans())
HTTP_ATTRIBUTES = st.fixed_dictionaries({}, optional={
    "http.method": st.text(max_size=300), "http.url": st.text(max_size=400),
    "http.host": st.text(max_size=300), "http.user_agent": st.text(max_size=400),
    "http.status_code": st.integers(0, 999), "http.client_ip": st.text(max_size=300),
    "http.response_size": st.integers(-5, 2**40),
})


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    name=st.text(max_size=260),
    kind=st.sampled_from([KIND_UNSPECIFIED, KIND_SERVER, KIND_CLIENT]),
    has_parent=st.booleans(),
    status=st.integers(0, 16),
    message=st.text(max_size=400),
    http=HTTP_ATTRIBUTES,
    extra=st.dictionaries(ATTRIBUTE_KEYS, ATTRIBUTE_VALUES, max_size=70),
    duration=st.integers(-10**9, 10**11),
    version=st.text(max_size=300),
)
def test_any_span_encodes_to_a_valid_document(name, kind, has_parent, status, message, http, extra,
                                              duration, version):
    record = span(name, parent=PIPE if has_parent else None, kind=kind, duration=duration,
                  attributes={**extra, **http}, status=status, message=message)
    text = SegmentEncoder(version).encode(record)
    assert RULES.problems(text, time.time()) == []
