"""A compressed response body counts as the bytes it decodes to, with every client library, as
OpenCensus defines `client/received_bytes` (uncompressed) and KrakenD's Go client counts it."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import aiohttp
import httpx
import pytest
from gatescope.backend import httpx as backend_httpx
from gatescope.spans import KIND_CLIENT, OK, UNKNOWN
from layer_helpers import rows, spans_of

SIZE = 50_000
WIRE = len(gzip.compress(b"g" * SIZE))  # what the upstream sends (same level, same bytes)


def received(telemetry: Any, status: str = "200") -> Any:
    return rows(telemetry.metrics(), "client/received_bytes")[("GET", status)]


def read_with_httpx(telemetry: Any, url: str) -> bytes:
    with telemetry.httpx_client() as client:
        return client.get(url).content


def read_with_async_httpx(telemetry: Any, url: str) -> bytes:
    async def run() -> bytes:
        async with telemetry.async_httpx_client() as client:
            return (await client.get(url)).content
    return asyncio.run(run())


def read_with_httpx_stream(telemetry: Any, url: str) -> bytes:
    with telemetry.httpx_client() as client, client.stream("GET", url) as response:
        return b"".join(response.iter_bytes(1000))


def read_with_requests(telemetry: Any, url: str) -> bytes:
    return telemetry.requests_session().get(url).content


def read_with_requests_stream(telemetry: Any, url: str) -> bytes:
    with telemetry.requests_session().get(url, stream=True) as response:
        return b"".join(response.iter_content(1000))


def read_with_aiohttp(telemetry: Any, url: str) -> bytes:
    async def run() -> bytes:
        async with aiohttp.ClientSession(trace_configs=[telemetry.aiohttp_trace_config()]) \
                as session, session.get(url) as response:
            return await response.read()
    return asyncio.run(run())


@pytest.mark.parametrize("read", [read_with_httpx, read_with_async_httpx, read_with_httpx_stream,
                                  read_with_requests, read_with_requests_stream, read_with_aiohttp])
@pytest.mark.parametrize("sample_rate", [0, 100])
def test_a_gzipped_body_counts_its_decoded_bytes(make_telemetry: Any, upstream: Any, read: Any,
                                                 sample_rate: int) -> None:
    assert WIRE < SIZE // 10  # the two counts are far apart
    telemetry = make_telemetry(sample_rate=sample_rate)
    assert read(telemetry, upstream.url + f"/gzip/{SIZE}") == b"g" * SIZE
    assert rows(telemetry.metrics(), "client/completed_count") == {("GET", "200"): 1}
    counted = received(telemetry)
    assert (counted.count, counted.sum) == (1, SIZE)


def test_httpx_counts_the_bytes_a_raw_read_took(make_telemetry: Any, upstream: Any) -> None:
    """`iter_raw` reads the body as it came: that is what was received."""
    telemetry = make_telemetry(sample_rate=0)
    with telemetry.httpx_client() as client, \
            client.stream("GET", upstream.url + f"/gzip/{SIZE}") as response:
        raw = b"".join(response.iter_raw())
    assert gzip.decompress(raw) == b"g" * SIZE
    assert received(telemetry).sum == len(raw) == WIRE


def test_httpx_body_given_up_early_counts_what_was_decoded(make_telemetry: Any,
                                                           upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)
    taken = 0
    with telemetry.httpx_client() as client, \
            client.stream("GET", upstream.url + f"/gzip/{SIZE}") as response:
        for chunk in response.iter_bytes():
            taken += len(chunk)
            break
    counted = received(telemetry)
    assert counted.count == 1
    assert 0 < taken <= counted.sum <= SIZE  # decoded so far: at least the chunk handed out


@pytest.mark.parametrize("asynchronous", [False, True])
def test_httpx_body_that_fails_to_decode_is_a_failed_call(make_telemetry: Any, upstream: Any,
                                                          asynchronous: bool) -> None:
    telemetry = make_telemetry(sample_rate=100)
    url = upstream.url + "/badgzip"
    with pytest.raises(httpx.DecodingError):
        if asynchronous:
            read_with_async_httpx(telemetry, url)
        else:
            read_with_httpx(telemetry, url)
    # as a body cut off: the round trip failed (500), once
    assert rows(telemetry.metrics(), "client/completed_count") == {("GET", "500"): 1}
    [span] = [s for s in spans_of(telemetry) if s.kind == KIND_CLIENT]
    assert span.status_code == UNKNOWN


def test_httpx_identity_encoding_counts_as_it_came(make_telemetry: Any, upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    with telemetry.httpx_client() as client:
        assert len(client.get(upstream.url + "/bytes/1234").content) == 1234
    assert received(telemetry).sum == 1234
    [span] = [s for s in spans_of(telemetry) if s.kind == KIND_CLIENT]
    assert span.status_code == OK


@pytest.mark.parametrize("raw_list", [True, False], ids=["raw-list", "public-api"])
@pytest.mark.parametrize(("headers", "encoded"), [
    ([("Content-Encoding", "gzip")], True), ([("content-encoding", "gzip, br")], True),
    ([("Content-Encoding", " Identity ")], False), ([("Content-Type", "text/plain")], False),
    ([], False)])
def test_httpx_tells_an_encoded_body_by_its_header(monkeypatch: Any, raw_list: bool,
                                                   headers: list[tuple[str, str]],
                                                   encoded: bool) -> None:
    monkeypatch.setattr(backend_httpx, "_RAW_LIST", raw_list)
    response = httpx.Response(200, headers=headers, stream=httpx.ByteStream(b""))
    assert backend_httpx._encoded(response) is encoded


@pytest.mark.parametrize("raw_list", [True, False], ids=["raw-list", "public-api"])
def test_httpx_counts_decoded_bytes_on_either_header_path(make_telemetry: Any, upstream: Any,
                                                          monkeypatch: Any,
                                                          raw_list: bool) -> None:
    monkeypatch.setattr(backend_httpx, "_RAW_LIST", raw_list)
    telemetry = make_telemetry(sample_rate=0)
    read_with_httpx(telemetry, upstream.url + f"/gzip/{SIZE}")
    assert received(telemetry).sum == SIZE


def test_httpx_without_its_decoder_hook_counts_the_bytes_on_the_wire(
        make_telemetry: Any, upstream: Any, monkeypatch: Any) -> None:
    """The documented fallback for an httpx without `Response._get_content_decoder`."""
    monkeypatch.setattr(backend_httpx, "_DECODER_HOOK", False)
    telemetry = make_telemetry(sample_rate=0)
    assert read_with_httpx(telemetry, upstream.url + f"/gzip/{SIZE}") == b"g" * SIZE
    assert received(telemetry).sum == WIRE
