"""End to end through the three layers (ASGI router, pipe, httpx backend) to a real agent."""

from __future__ import annotations

import asyncio

import httpx
from gatescope.testing import krakend_config

TRACE_ID, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def serve_one_request(telemetry) -> httpx.Response:
    upstream = httpx.MockTransport(lambda request: httpx.Response(200, json={"id": 42}))
    client = telemetry.async_httpx_client(transport=upstream)

    async def app(scope, receive, send):
        async with telemetry.pipe("/users/{id}"), telemetry.backend("/api/users/{id}"):
            answer = await client.get("http://upstream/api/users/42")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer.content})

    gateway = telemetry.asgi(app, endpoints=["/users/{id}"])

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as browser:
            return await browser.get("/users/42",
                                     headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"})

    return asyncio.run(call())


def test_asgi_pipe_and_httpx_spans_and_metrics_reach_the_agent(gatescope_plugins, agent, oc):
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"ocagent": {"address": agent.address, "insecure": True}}, sample_rate=100))
    assert serve_one_request(telemetry).status_code == 200
    assert telemetry.flush(10)
    spans = [s for stream in agent.wait_for(oc.TRACE) for m in stream.messages for s in m.spans]
    by_name = {s.name.value: s for s in spans}
    assert set(by_name) >= {"/users/{id}", "pipe-/users/{id}", "backend-/api/users/{id}"}
    root = by_name["/users/{id}"]
    assert root.trace_id.hex() == TRACE_ID and root.parent_span_id.hex() == PARENT
    assert root.kind == 1
    for client in [s for s in spans if s.kind == 2]:  # the httpx CLIENT span, when made
        assert client.parent_span_id == by_name["backend-/api/users/{id}"].span_id
    assert by_name["backend-/api/users/{id}"].parent_span_id == by_name["pipe-/users/{id}"].span_id
    assert by_name["pipe-/users/{id}"].parent_span_id == root.span_id
    assert {s.trace_id.hex() for s in spans} == {TRACE_ID}
    metrics = {m.metric_descriptor.name: m for stream in agent.wait_for(oc.METRICS)
               for msg in stream.messages for m in msg.metrics}
    assert metrics["opencensus.io/http/server/request_count"].timeseries[0].points[0] \
        .int64_value == 1
    latency = metrics["opencensus.io/http/server/latency"].timeseries[0].points[0]
    assert latency.distribution_value.count == 1
