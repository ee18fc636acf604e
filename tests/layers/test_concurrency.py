"""N requests from many threads and tasks give exactly N in every count view."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from layer_helpers import rows
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

TASKS, THREADS, PER_THREAD = 300, 8, 50


def test_counts_exact_under_concurrency(make_telemetry: Any, upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=50, tag_statuscode=True)

    async def hello(request: Request) -> PlainTextResponse:
        await asyncio.sleep(0)
        return PlainTextResponse("hi")

    asgi = telemetry.asgi(Starlette(routes=[Route("/hi", hello)]))

    def wsgi_app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [])
        return [b"hi"]

    wsgi = telemetry.wsgi(wsgi_app)

    async def many_tasks() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi),
                                     base_url="http://gw") as client:
            await asyncio.gather(*(client.get("/hi") for _ in range(TASKS)))

    def thread_work() -> None:
        with telemetry.httpx_client() as client:
            for _ in range(PER_THREAD):
                body = wsgi({"PATH_INFO": "/w", "REQUEST_METHOD": "GET"}, lambda *a: None)
                b"".join(body)
                body.close()
                client.get(upstream.url + "/bytes/1")

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(thread_work) for _ in range(THREADS)]
        asyncio.run(many_tasks())
        for future in futures:
            future.result()
    server_total = TASKS + THREADS * PER_THREAD
    snap = telemetry.metrics()
    assert rows(snap, "server/request_count") == {("200",): server_total}
    assert rows(snap, "server/request_count_by_method") == {("GET", "200"): server_total}
    assert rows(snap, "server/response_count_by_status_code") == {("200",): server_total}
    assert rows(snap, "server/latency")[("200",)].count == server_total
    assert rows(snap, "server/response_bytes")[("200",)].sum == 2 * server_total
    assert rows(snap, "client/completed_count") == {("GET", "200"): THREADS * PER_THREAD}
    assert rows(snap, "client/roundtrip_latency")[("GET", "200")].count == THREADS * PER_THREAD
