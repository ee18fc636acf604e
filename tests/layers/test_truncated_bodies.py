"""A response body cut short (the upstream closes mid-body) is a failed call: recorded once as 500
with the bytes that did arrive, its error raised to the caller unchanged, the CLIENT span UNKNOWN."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import requests
from gatescope.spans import KIND_CLIENT, UNKNOWN
from layer_helpers import rows, spans_of

ANNOUNCED = 1000  # the upstream sends half of it, then closes the connection


def check(telemetry: Any, sampled: bool, received: float | None) -> None:
    snap = telemetry.metrics()
    assert rows(snap, "client/completed_count") == {("GET", "500"): 1}
    if received is not None:
        assert rows(snap, "client/received_bytes")[("GET", "500")].sum == received
    clients = [s for s in spans_of(telemetry) if s.kind == KIND_CLIENT]
    if not sampled:
        assert clients == []
        return
    [span] = clients
    assert span.name == f"/truncated/{ANNOUNCED}"
    assert span.status_code == UNKNOWN and span.status_message
    assert "http.status_code" not in span.attributes


@pytest.mark.parametrize("sample_rate", [0, 100])
def test_httpx_sync_read(make_telemetry: Any, upstream: Any, sample_rate: int) -> None:
    telemetry = make_telemetry(sample_rate=sample_rate)
    with telemetry.httpx_client(base_url=upstream.url) as client, \
            pytest.raises(httpx.RemoteProtocolError):
        client.get(f"/truncated/{ANNOUNCED}")
    check(telemetry, sample_rate == 100, ANNOUNCED // 2)


@pytest.mark.parametrize("sample_rate", [0, 100])
def test_httpx_async_read(make_telemetry: Any, upstream: Any, sample_rate: int) -> None:
    telemetry = make_telemetry(sample_rate=sample_rate)

    async def run() -> None:
        async with telemetry.async_httpx_client(base_url=upstream.url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(f"/truncated/{ANNOUNCED}")

    asyncio.run(run())
    check(telemetry, sample_rate == 100, ANNOUNCED // 2)


def test_httpx_streamed_read(make_telemetry: Any, upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    chunks = []
    with telemetry.httpx_client(base_url=upstream.url) as client, \
            client.stream("GET", f"/truncated/{ANNOUNCED}") as response:
        assert response.status_code == 200  # the headers were whole
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in response.iter_raw():
                chunks.append(chunk)
    check(telemetry, True, sum(map(len, chunks)))


def test_caller_stopping_a_stream_early_is_not_a_failure(make_telemetry: Any,
                                                         upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    with telemetry.httpx_client(base_url=upstream.url) as client, \
            client.stream("GET", "/bytes/100000") as response:
        next(response.iter_raw(1000))
    snap = telemetry.metrics()
    assert rows(snap, "client/completed_count") == {("GET", "200"): 1}
    [span] = [s for s in spans_of(telemetry) if s.kind == KIND_CLIENT]
    assert span.attributes["http.status_code"] == 200


def test_requests_read(make_telemetry: Any, upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    session = telemetry.requests_session()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        session.get(f"{upstream.url}/truncated/{ANNOUNCED}")
    check(telemetry, True, None)
