"""httpx responses a transport has already read (MockTransport, caches) are recorded once too."""

from __future__ import annotations

import asyncio

import httpx
from gatescope.testing import exporter_of, krakend_config


def test_prebuffered_responses_are_recorded_sync_and_async(gatescope_plugins):
    telemetry = gatescope_plugins.telemetry(krakend_config({"capture": {}}, sample_rate=100))

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404 if request.url.path == "/missing" else 200, content=b"12345")

    with telemetry.httpx_client(transport=httpx.MockTransport(reply)) as client:
        assert client.get("http://upstream/ok").status_code == 200
        assert client.get("http://upstream/missing").status_code == 404

    async def run() -> None:
        async with telemetry.async_httpx_client(transport=httpx.MockTransport(reply)) as client:
            assert (await client.get("http://upstream/ok")).content == b"12345"

    asyncio.run(run())
    snapshot = telemetry.metrics()
    assert snapshot.view("opencensus.io/http/client/completed_count").rows == {
        ("GET", "200"): 2, ("GET", "404"): 1}
    received = snapshot.view("opencensus.io/http/client/received_bytes").rows[("GET", "200")]
    assert (received.count, received.sum) == (2, 10.0)
    assert telemetry.flush(5)
    spans = exporter_of(telemetry, "capture").spans
    assert sorted((s.name, s.attributes["http.status_code"]) for s in spans) == [
        ("/missing", 404), ("/ok", 200), ("/ok", 200)]
