"""aiohttp calls are recorded when their response body ends (or is given up), with the body bytes
that arrived: chunked bodies count, streamed reads count, and a call is recorded exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from gatescope.spans import KIND_CLIENT, KIND_SERVER, OK, UNKNOWN
from gatescope.tracing import current
from layer_helpers import rows, spans_of

ENDPOINTS = [{
    "endpoint": "/gw",
    "backend": [{"host": ["http://u"], "url_pattern": "/chunked/{n}"},
                {"host": ["http://u"], "url_pattern": "/bytes/{n}"}],
}]


def call(telemetry: Any, body: Callable[[aiohttp.ClientSession], Awaitable[None]],
         connections: int = 100) -> None:
    """Run `body` with an instrumented session under a sampled root span."""
    async def run() -> None:
        span = telemetry.kit.tracer.start_root("root", KIND_SERVER, None)
        token = current.set(span)
        try:
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=connections),
                    trace_configs=[telemetry.aiohttp_trace_config()]) as session:
                await body(session)
        finally:
            current.reset(token)
            if span is not None:  # None when unsampled
                span.end()
    asyncio.run(run())


def client_span(telemetry: Any) -> Any:
    [span] = [s for s in spans_of(telemetry) if s.kind == KIND_CLIENT]
    return span


@pytest.mark.parametrize("sample_rate", [0, 100])
def test_a_chunked_body_counts_its_bytes(make_telemetry: Any, upstream: Any,
                                         sample_rate: int) -> None:
    telemetry = make_telemetry(sample_rate=sample_rate)

    async def body(session: aiohttp.ClientSession) -> None:
        async with session.get(upstream.url + "/chunked/3000") as response:
            assert len(await response.read()) == 3000

    call(telemetry, body)
    snap = telemetry.metrics()
    assert rows(snap, "client/completed_count") == {("GET", "200"): 1}
    assert rows(snap, "client/received_bytes")[("GET", "200")].sum == 3000


def test_the_record_waits_for_the_body_and_times_it(make_telemetry: Any, upstream: Any) -> None:
    """Three chunks 20 ms apart: nothing is recorded at the headers, and the latency covers the
    whole body."""
    telemetry = make_telemetry(sample_rate=100)
    before_body: dict[str, Any] = {}

    async def body(session: aiohttp.ClientSession) -> None:
        async with session.get(upstream.url + "/chunked/3000") as response:
            before_body.update(rows(telemetry.metrics(), "client/completed_count"))
            total = 0
            async for chunk in response.content.iter_chunked(100):
                total += len(chunk)
            assert total == 3000

    call(telemetry, body)
    assert before_body == {}
    snap = telemetry.metrics()
    assert rows(snap, "client/received_bytes")[("GET", "200")].sum == 3000
    assert rows(snap, "client/roundtrip_latency")[("GET", "200")].sum >= 30.0  # ms
    span = client_span(telemetry)
    assert span.status_code == OK
    assert span.attributes["http.status_code"] == 200


def test_the_path_tag_comes_from_the_callers_backend(make_telemetry: Any, upstream: Any) -> None:
    """The body ends in aiohttp's connection callbacks; the record still sees the caller's
    `telemetry.backend(...)`, so the path tag is the backend's pattern, not the raw path."""
    telemetry = make_telemetry(sample_rate=0, endpoints=ENDPOINTS, tag_path=True)

    async def body(session: aiohttp.ClientSession) -> None:
        # The pooled connection (and so the context of its callbacks) is made outside the backend.
        async with session.get(upstream.url + "/bytes/1") as response:
            await response.read()
        with telemetry.backend("/chunked/{n}"):
            async with session.get(upstream.url + "/chunked/30") as response:
                assert len(await response.read()) == 30

    call(telemetry, body)
    assert rows(telemetry.metrics(), "client/completed_count") == {
        ("GET", "200", "/bytes/1"): 1, ("GET", "200", "/chunked/{n}"): 1}


def test_a_response_given_up_early_is_recorded_once_and_not_failed(make_telemetry: Any,
                                                                    upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)

    async def body(session: aiohttp.ClientSession) -> None:
        async with session.get(upstream.url + "/chunked/300000") as response:
            assert len(await response.content.read(10)) == 10
        response.release()  # again: still one record
        response.close()

    call(telemetry, body)
    snap = telemetry.metrics()
    assert rows(snap, "client/completed_count") == {("GET", "200"): 1}
    received = rows(snap, "client/received_bytes")[("GET", "200")].sum
    assert 10 <= received < 300000
    span = client_span(telemetry)
    assert span.status_code == OK and span.attributes["http.status_code"] == 200


def test_a_response_read_without_a_context_manager(make_telemetry: Any, upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)

    async def body(session: aiohttp.ClientSession) -> None:
        response = await session.get(upstream.url + "/chunked/900")
        assert (await response.text()) == "c" * 900

    call(telemetry, body)
    assert rows(telemetry.metrics(), "client/received_bytes")[("GET", "200")].sum == 900
    assert client_span(telemetry).attributes["http.status_code"] == 200


def test_the_response_is_left_as_aiohttp_made_it(make_telemetry: Any, upstream: Any) -> None:
    """Once recorded, the response's own `release` and `close` are back (no lingering watch)."""
    telemetry = make_telemetry(sample_rate=0)
    kept: list[aiohttp.ClientResponse] = []

    async def body(session: aiohttp.ClientSession) -> None:
        async with session.get(upstream.url + "/chunked/300000") as response:
            assert "release" in vars(response) and "close" in vars(response)
            await response.content.read(10)
            kept.append(response)
        async with session.get(upstream.url + "/bytes/10") as whole:
            await whole.read()
            kept.append(whole)

    call(telemetry, body)
    for response in kept:
        assert "release" not in vars(response) and "close" not in vars(response)
    assert rows(telemetry.metrics(), "client/completed_count") == {("GET", "200"): 2}


def test_a_body_cut_off_by_the_upstream_is_a_failed_call(make_telemetry: Any,
                                                         upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)

    async def body(session: aiohttp.ClientSession) -> None:
        async with session.get(upstream.url + "/truncated/1000") as response:
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()

    call(telemetry, body)
    snap = telemetry.metrics()
    assert rows(snap, "client/completed_count") == {("GET", "500"): 1}
    assert rows(snap, "client/received_bytes")[("GET", "500")].sum == 500
    span = client_span(telemetry)
    assert span.status_code == UNKNOWN and span.status_message
    assert "http.status_code" not in span.attributes


def test_concurrent_calls_on_pooled_connections_each_count_once_under_their_backend(
        make_telemetry: Any, upstream: Any) -> None:
    """Tasks share a session (so bodies end in callbacks of connections other tasks opened);
    each call is recorded once, with its own bytes and its own backend's path tag."""
    telemetry = make_telemetry(sample_rate=0, endpoints=ENDPOINTS, tag_path=True)
    calls = 60

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        pattern, path = ("/chunked/{n}", f"/chunked/{30 + i}") if i % 2 else \
            ("/bytes/{n}", f"/bytes/{i}")
        with telemetry.backend(pattern):
            async with session.get(upstream.url + path) as response:
                assert len(await response.read()) == int(path.rsplit("/", 1)[1])

    async def body(session: aiohttp.ClientSession) -> None:
        await asyncio.gather(*(one(session, i) for i in range(calls)))

    call(telemetry, body, connections=3)  # each connection serves calls of both backends
    snap = telemetry.metrics()
    assert rows(snap, "client/completed_count") == {("GET", "200", "/chunked/{n}"): calls // 2,
                                                    ("GET", "200", "/bytes/{n}"): calls // 2}
    received = rows(snap, "client/received_bytes")
    assert received[("GET", "200", "/chunked/{n}")].sum == sum(30 + i for i in range(1, calls, 2))
    assert received[("GET", "200", "/bytes/{n}")].sum == sum(range(0, calls, 2))
