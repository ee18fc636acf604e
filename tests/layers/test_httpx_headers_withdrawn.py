"""httpx: propagation headers go on the wire once per hop and come off the request afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from gatescope.backend import httpx as backend_httpx

PROPAGATION = {"x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "traceparent"}


@pytest.fixture(params=["raw-list", "public-api"])
def header_path(request: Any, monkeypatch: Any) -> str:
    """Both ways the layer handles headers: httpx's raw list, and the public `Headers` API."""
    monkeypatch.setattr(backend_httpx, "_RAW_LIST", request.param == "raw-list")
    return str(request.param)


def propagation_on(headers: httpx.Headers) -> list[str]:
    return [key for key, _ in headers.multi_items() if key in PROPAGATION]


def sent_once(upstream: Any, hop: int) -> dict[str, str]:
    """The propagation headers of one hop, each checked to have been sent exactly once."""
    lines = [(key, value) for key, value in upstream.raw[hop] if key in PROPAGATION]
    assert sorted(key for key, _ in lines) == sorted(PROPAGATION), lines
    return dict(lines)


@pytest.mark.parametrize("rate", [0, 100])
def test_sync_request_keeps_only_the_callers_headers(make_telemetry: Any, upstream: Any,
                                                    header_path: str, rate: int) -> None:
    telemetry = make_telemetry(sample_rate=rate)
    with telemetry.httpx_client(headers={"X-Caller": "kept"}) as client:
        response = client.get(upstream.url + "/users/1")
    assert response.status_code == 200
    sent = sent_once(upstream, 0)
    assert sent["x-b3-sampled"] == ("1" if rate else "0")
    assert propagation_on(response.request.headers) == []
    assert response.request.headers["x-caller"] == "kept"
    assert upstream.seen[0]["x-caller"] == "kept"


def test_async_request_keeps_only_the_callers_headers(make_telemetry: Any, upstream: Any,
                                                     header_path: str) -> None:
    telemetry = make_telemetry(sample_rate=100)

    async def call() -> httpx.Response:
        async with telemetry.async_httpx_client() as client:
            return await client.get(upstream.url + "/users/1", headers={"X-Caller": "kept"})

    response = asyncio.run(call())
    sent_once(upstream, 0)
    assert propagation_on(response.request.headers) == []
    assert response.request.headers["x-caller"] == "kept"


def test_each_redirect_hop_gets_its_own_single_set(make_telemetry: Any, upstream: Any,
                                                   header_path: str) -> None:
    telemetry = make_telemetry(sample_rate=100)
    with telemetry.httpx_client(follow_redirects=True) as client:
        response = client.get(upstream.url + "/redirect/users/9")
    assert response.status_code == 200 and len(response.history) == 1
    first, second = sent_once(upstream, 0), sent_once(upstream, 1)
    assert first["x-b3-spanid"] != second["x-b3-spanid"]  # one client span per hop
    assert propagation_on(response.request.headers) == []
    assert propagation_on(response.history[0].request.headers) == []


def test_failed_call_takes_its_headers_off_too(make_telemetry: Any, header_path: str) -> None:
    telemetry = make_telemetry(sample_rate=100)
    request_seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        assert len(propagation_on(request.headers)) == 4  # on the wire while sending
        request_seen.append(request)
        raise httpx.ConnectError("refused", request=request)

    with telemetry.httpx_client(transport=httpx.MockTransport(refuse)) as client, \
            pytest.raises(httpx.ConnectError):
        client.get("http://upstream/users/1")
    assert propagation_on(request_seen[0].headers) == []


def test_headers_added_inside_the_transport_stay(make_telemetry: Any, header_path: str) -> None:
    """An inner transport that appends its own header after ours loses nothing."""
    telemetry = make_telemetry(sample_rate=100)

    def sign(request: httpx.Request) -> httpx.Response:
        request.headers["X-Signature"] = "abc"
        return httpx.Response(200, content=b"ok")

    with telemetry.httpx_client(transport=httpx.MockTransport(sign)) as client:
        response = client.get("http://upstream/users/1")
    assert propagation_on(response.request.headers) == []
    assert response.request.headers["x-signature"] == "abc"


def test_callers_own_propagation_headers_are_replaced_once(make_telemetry: Any, upstream: Any,
                                                           header_path: str) -> None:
    """A caller-set traceparent is replaced by this call's (as `headers[name] = value` does) and
    keeps the value sent; the names the caller did not set come off."""
    telemetry = make_telemetry(sample_rate=100)
    stale = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with telemetry.httpx_client() as client:
        response = client.get(upstream.url + "/users/1", headers={"traceparent": stale})
    sent = sent_once(upstream, 0)
    assert sent["traceparent"] != stale
    assert response.request.headers["traceparent"] == sent["traceparent"]
    assert propagation_on(response.request.headers) == ["traceparent"]
