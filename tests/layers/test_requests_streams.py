"""requests calls made with `stream=True` are recorded when the caller's read of the body ends (or
is closed first), with the body bytes read: chunked bodies count, and a call is recorded once."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from gatescope.spans import KIND_CLIENT, KIND_SERVER, OK, UNKNOWN
from gatescope.tracing import current
from layer_helpers import rows, spans_of

ENDPOINTS = [{
    "endpoint": "/gw",
    "backend": [{"host": ["http://u"], "url_pattern": "/chunked/{n}"}],
}]


@pytest.fixture
def sampled_root() -> Any:
    """Run a call under a sampled root span (ended after)."""
    def run(telemetry: Any, body: Any) -> None:
        span = telemetry.kit.tracer.start_root("root", KIND_SERVER, None)
        token = current.set(span)
        try:
            body()
        finally:
            current.reset(token)
            if span is not None:
                span.end()
    return run


def client_span(telemetry: Any) -> Any:
    [span] = [s for s in spans_of(telemetry) if s.kind == KIND_CLIENT]
    return span


def test_a_chunked_stream_counts_its_bytes_and_is_timed_to_its_end(
        make_telemetry: Any, upstream: Any, sampled_root: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    session = telemetry.requests_session()
    before_body: dict[str, Any] = {}

    def body() -> None:
        with session.get(upstream.url + "/chunked/3000", stream=True) as response:
            before_body.update(rows(telemetry.metrics(), "client/completed_count"))
            assert sum(map(len, response.iter_content(100))) == 3000

    sampled_root(telemetry, body)
    assert before_body == {}
    snap = telemetry.metrics()
    assert rows(snap, "client/completed_count") == {("GET", "200"): 1}
    assert rows(snap, "client/received_bytes")[("GET", "200")].sum == 3000
    assert rows(snap, "client/roundtrip_latency")[("GET", "200")].sum >= 30.0  # ms
    span = client_span(telemetry)
    assert span.status_code == OK and span.attributes["http.status_code"] == 200


def test_raw_reads_count(make_telemetry: Any, upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)
    session = telemetry.requests_session()
    response = session.get(upstream.url + "/bytes/5000", stream=True)
    assert len(response.raw.read(1000)) == 1000
    assert rows(telemetry.metrics(), "client/completed_count") == {}
    assert len(response.raw.read()) == 4000  # to the end
    response.close()
    snap = telemetry.metrics()
    assert rows(snap, "client/completed_count") == {("GET", "200"): 1}
    assert rows(snap, "client/received_bytes")[("GET", "200")].sum == 5000


def test_content_of_a_streamed_response(make_telemetry: Any, upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)
    response = telemetry.requests_session().get(upstream.url + "/chunked/900", stream=True)
    assert response.content == b"c" * 900
    assert rows(telemetry.metrics(), "client/received_bytes")[("GET", "200")].sum == 900


def test_a_stream_given_up_early_is_recorded_once_and_not_failed(
        make_telemetry: Any, upstream: Any, sampled_root: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    session = telemetry.requests_session()

    def body() -> None:
        with session.get(upstream.url + "/chunked/300000", stream=True) as response:
            assert len(next(response.iter_content(10))) == 10
        response.close()  # again: still one record

    sampled_root(telemetry, body)
    snap = telemetry.metrics()
    assert rows(snap, "client/completed_count") == {("GET", "200"): 1}
    assert 10 <= rows(snap, "client/received_bytes")[("GET", "200")].sum < 300000
    span = client_span(telemetry)
    assert span.status_code == OK and span.attributes["http.status_code"] == 200


def test_a_body_cut_off_is_a_failed_call(make_telemetry: Any, upstream: Any,
                                         sampled_root: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    session = telemetry.requests_session()
    read: list[bytes] = []

    def body() -> None:
        with session.get(upstream.url + "/truncated/1000", stream=True) as response, \
                pytest.raises(requests.exceptions.ChunkedEncodingError):
            for chunk in response.iter_content(100):
                read.append(chunk)

    sampled_root(telemetry, body)
    snap = telemetry.metrics()
    assert rows(snap, "client/completed_count") == {("GET", "500"): 1}
    assert rows(snap, "client/received_bytes")[("GET", "500")].sum == sum(map(len, read)) == 500
    span = client_span(telemetry)
    assert span.status_code == UNKNOWN and span.status_message


def test_the_path_tag_is_the_backend_the_call_was_made_in(make_telemetry: Any,
                                                          upstream: Any) -> None:
    """The body is read after the `telemetry.backend(...)` block has closed."""
    telemetry = make_telemetry(sample_rate=0, endpoints=ENDPOINTS, tag_path=True)
    session = telemetry.requests_session()
    with telemetry.backend("/chunked/{n}"):
        response = session.get(upstream.url + "/chunked/30", stream=True)
    assert response.content == b"c" * 30
    assert rows(telemetry.metrics(), "client/completed_count") == {
        ("GET", "200", "/chunked/{n}"): 1}


def test_a_response_without_a_body_is_recorded_at_once(make_telemetry: Any,
                                                       upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)
    telemetry.requests_session().get(upstream.url + "/status/204", stream=True)
    assert rows(telemetry.metrics(), "client/completed_count") == {("GET", "204"): 1}
    assert rows(telemetry.metrics(), "client/received_bytes")[("GET", "204")].sum == 0


def test_a_stream_dropped_without_close_is_recorded_when_its_reader_goes(
        make_telemetry: Any, upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)
    response = telemetry.requests_session().get(upstream.url + "/chunked/300000", stream=True)
    chunks = response.iter_content(10)
    assert len(next(chunks)) == 10
    assert rows(telemetry.metrics(), "client/completed_count") == {}
    chunks.close()  # what dropping the generator does
    assert rows(telemetry.metrics(), "client/completed_count") == {("GET", "200"): 1}
