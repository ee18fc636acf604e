"""Router layer on a real Starlette app: exact views, tags, the SERVER span, propagation in."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from gatescope.metrics import LATENCY_BOUNDS, SIZE_BOUNDS
from gatescope.spans import KIND_SERVER, NOT_FOUND, OK, UNKNOWN
from layer_helpers import rows, spans_of, tag_keys
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route


async def sized(request: Request) -> Response:
    return Response(b"y" * int(request.path_params["n"]))


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def echo(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.body())))


async def stream(request: Request) -> Response:
    async def chunks() -> Any:
        for _ in range(3):
            yield b"abcd"
    return StreamingResponse(chunks())


def starlette_app() -> Starlette:
    return Starlette(routes=[
        Route("/bytes/{n:int}", sized),
        Route("/boom", boom),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
        Route("/__health", sized),
        Mount("/api", routes=[Route("/users/{id}", sized)]),
    ])


def call(app: Any, *requests: tuple[str, str], **kwargs: Any) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            return [await client.request(method, url, **kwargs) for method, url in requests]
    return asyncio.run(run())


def test_server_views_exact_with_bucket_bounds(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)
    app = telemetry.asgi(starlette_app())
    answers = call(app, ("GET", "/bytes/1023"), ("GET", "/bytes/1024"), ("GET", "/bytes/0"),
                   ("GET", "/missing"))
    assert [a.status_code for a in answers] == [200, 200, 200, 404]
    snap = telemetry.metrics()
    assert rows(snap, "server/request_count") == {(): 4}
    sizes = rows(snap, "server/response_bytes")[()]
    assert sizes.count == 4
    assert sizes.sum == 1023 + 1024 + 0 + len(answers[3].content)
    expected = [0] * (len(SIZE_BOUNDS) + 1)
    expected[0] = 3  # 1023, 0 and the 404 page are below 1024
    expected[1] = 1  # exactly 1024 goes to [1024, 2048): first bound greater than the value
    assert list(sizes.bucket_counts) == expected
    assert sizes.min == 0 and sizes.max == 1024
    requests = rows(snap, "server/request_bytes")[()]
    assert requests.count == 4 and requests.sum == 0 and requests.min == 0  # never negative
    latency = rows(snap, "server/latency")[()]
    assert latency.count == 4 and len(latency.bucket_counts) == len(LATENCY_BOUNDS) + 1
    assert rows(snap, "server/request_count_by_method") == {("GET",): 4}
    assert rows(snap, "server/response_count_by_status_code") == {("200",): 3, ("404",): 1}
    assert tag_keys(snap, "server/request_count") == ()
    assert spans_of(telemetry) == []  # sample_rate 0: nothing traced


@pytest.mark.parametrize(("tags", "keys", "row"), [
    ({"tag_host": True}, ("http.host",), ("gw.test",)),
    ({"tag_path": True}, ("http.path",), ("/bytes/{n}",)),
    ({"tag_method": True}, ("http.method",), ("GET",)),
    ({"tag_statuscode": True}, ("http.status",), ("200",)),
    ({"tag_host": True, "tag_path": True, "tag_method": True, "tag_statuscode": True},
     ("http.host", "http.path", "http.method", "http.status"),
     ("gw.test", "/bytes/{n}", "GET", "200")),
])
def test_tag_options(make_telemetry: Any, tags: dict[str, bool], keys: tuple[str, ...],
                     row: tuple[str, ...]) -> None:
    telemetry = make_telemetry(sample_rate=0, **tags)
    call(telemetry.asgi(starlette_app()), ("GET", "/bytes/5"), ("GET", "/bytes/6"))
    snap = telemetry.metrics()
    assert tag_keys(snap, "server/request_count") == keys
    assert rows(snap, "server/request_count") == {row: 2}
    assert rows(snap, "server/response_bytes")[row].sum == 11
    by_method = tag_keys(snap, "server/request_count_by_method")
    assert by_method[0] == "http.method" and set(by_method) == {"http.method", *keys}


def test_server_span_and_w3c_parent(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    call(telemetry.asgi(starlette_app()), ("GET", "/bytes/3?x=1"),
         headers={"traceparent": parent, "user-agent": "ua/1"})
    [span] = spans_of(telemetry)
    assert span.name == "/bytes/{n}"
    assert span.kind == KIND_SERVER
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id == "b7ad6b7169203331"
    assert span.attributes == {
        "http.path": "/bytes/3", "http.url": "/bytes/3?x=1", "http.host": "gw.test",
        "http.method": "GET", "http.user_agent": "ua/1", "http.status_code": 200,
    }
    assert span.status_code == OK


@pytest.mark.parametrize("headers", [
    {"X-B3-TraceId": "463ac35c9f6413ad48485a3953bb6124", "X-B3-SpanId": "a2fb4a1d1a96d312",
     "X-B3-Sampled": "1"},
    {"b3": "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1"},
])
def test_b3_extraction(make_telemetry: Any, headers: dict[str, str]) -> None:
    telemetry = make_telemetry(sample_rate=100)
    call(telemetry.asgi(starlette_app()), ("GET", "/bytes/1"), headers=headers)
    [span] = spans_of(telemetry)
    assert (span.trace_id, span.parent_span_id) == ("463ac35c9f6413ad48485a3953bb6124",
                                                    "a2fb4a1d1a96d312")


def test_status_on_router_span_and_unknown_route_name(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    call(telemetry.asgi(starlette_app()), ("GET", "/no/such/9f1c"))
    [span] = spans_of(telemetry)
    assert span.name == "unknown route"  # never the raw path
    assert span.attributes["http.status_code"] == 404
    assert span.status_code == NOT_FOUND


def test_mount_prefix_in_template(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=100, tag_path=True)
    call(telemetry.asgi(starlette_app()), ("GET", "/api/users/7"))
    [span] = spans_of(telemetry)
    assert span.name == "/api/users/{id}"
    assert rows(telemetry.metrics(), "server/request_count") == {("/api/users/{id}",): 1}


def test_exception_recorded_once_as_500_and_reraised(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=100, tag_statuscode=True)
    inner = starlette_app()

    async def run() -> None:
        app = telemetry.asgi(inner)
        scope = {"type": "http", "method": "GET", "path": "/boom", "raw_path": b"/boom",
                 "root_path": "", "query_string": b"", "headers": [(b"host", b"h")],
                 "scheme": "http", "server": ("h", 80), "http_version": "1.1"}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            return None

        with pytest.raises(RuntimeError, match="boom") as info:
            await app(scope, receive, send)
        assert type(info.value) is RuntimeError
    asyncio.run(run())
    snap = telemetry.metrics()
    assert rows(snap, "server/request_count") == {("500",): 1}
    assert rows(snap, "server/response_count_by_status_code") == {("500",): 1}
    [span] = spans_of(telemetry)
    assert span.name == "/boom" and span.status_code == UNKNOWN
    assert span.attributes["http.status_code"] == 500


def test_streaming_and_chunked_bodies_are_counted(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=0, tag_path=True)

    async def upload() -> Any:
        for part in (b"12345", b"678"):
            yield part
    answers = call(telemetry.asgi(starlette_app()), ("GET", "/stream"))
    assert answers[0].content == b"abcd" * 3

    async def post() -> None:
        transport = httpx.ASGITransport(app=telemetry.asgi(starlette_app()))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            response = await client.post("/echo", content=upload())
            assert response.text == "8"
    asyncio.run(post())
    snap = telemetry.metrics()
    assert rows(snap, "server/response_bytes")[("/stream",)].sum == 12
    assert rows(snap, "server/request_bytes")[("/echo",)].sum == 8
    assert rows(snap, "server/request_count") == {("/stream",): 1, ("/echo",): 1}


def test_health_checks_not_measured_or_traced(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    call(telemetry.asgi(starlette_app()), ("GET", "/__health"))
    assert rows(telemetry.metrics(), "server/request_count") == {}
    assert spans_of(telemetry) == []


def test_explicit_endpoints_for_a_plain_asgi_app(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=100, tag_path=True)

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = telemetry.asgi(plain, endpoints={"/users/{id}": "lastparam", "/users/me": "pattern"})
    call(app, ("GET", "/users/42"), ("GET", "/users/me"), ("GET", "/other"))
    assert rows(telemetry.metrics(), "server/request_count") == {
        ("/users/{id}",): 1, ("/users/me",): 1, ("unknown route",): 1}
    assert sorted(s.name for s in spans_of(telemetry)) == ["/users/me", "/users/{id}",
                                                           "unknown route"]


def test_real_uvicorn_server(make_telemetry: Any) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    telemetry = make_telemetry(sample_rate=0, tag_statuscode=True)
    server = uvicorn.Server(uvicorn.Config(telemetry.asgi(starlette_app()), host="127.0.0.1",
                                           port=0, log_level="error", lifespan="off"))

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/bytes/2048")).status_code == 200
            assert (await client.get("/boom")).status_code == 500
        server.should_exit = True
        await task
    asyncio.run(run())
    snap = telemetry.metrics()
    assert rows(snap, "server/request_count") == {("200",): 1, ("500",): 1}
    assert rows(snap, "server/response_bytes")[("200",)].bucket_counts[2] == 1  # [2048, 4096)


@pytest.mark.parametrize("tags", [{"tag_method": True, "tag_statuscode": True},
                                  {"tag_method": True, "tag_statuscode": True, "tag_path": True}])
def test_record_only_router_records_what_the_general_one_does(make_telemetry: Any,
                                                               tags: dict[str, bool]) -> None:
    """sample_rate 0 without host/path tags takes a record-only class; the counts must not move."""
    telemetry = make_telemetry(sample_rate=0, **tags)
    app = telemetry.asgi(starlette_app())
    assert (type(app).__name__ == "_RecordOnlyASGIMiddleware") is ("tag_path" not in tags)

    async def upload() -> Any:
        for part in (b"12345", b"678"):
            yield part

    async def run() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            assert (await client.post("/echo", content=upload())).text == "8"  # chunked
            assert (await client.post("/echo", content=b"1234")).text == "4"  # Content-Length
            assert len((await client.get("/stream")).content) == 12
            assert (await client.get("/boom")).status_code == 500
            await client.get("/__health")  # not measured, whatever it answers
            traced = await client.get("/bytes/3", headers={
                "b3": "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-0"})
            assert traced.status_code == 200  # a propagation header: the general path
    asyncio.run(run())
    snap = telemetry.metrics()
    def key(method: str, status: str, path: str) -> tuple[str, ...]:
        return (path, method, status) if "tag_path" in tags else (method, status)

    expected: dict[tuple[str, ...], int] = {}
    for shape in (("POST", "200", "/echo"), ("POST", "200", "/echo"), ("GET", "200", "/stream"),
                  ("GET", "500", "/boom"), ("GET", "200", "/bytes/{n}")):
        expected[key(*shape)] = expected.get(key(*shape), 0) + 1
    assert rows(snap, "server/request_count") == expected
    request_bytes = rows(snap, "server/request_bytes")
    assert request_bytes[key("POST", "200", "/echo")].sum == 12
    streamed = rows(snap, "server/response_bytes")[key("GET", "200", "/stream")].sum
    assert streamed == (12 if "tag_path" in tags else 12 + 3)  # without paths /bytes/3 shares it
    assert spans_of(telemetry) == []


def test_sampled_router_records_and_traces_what_the_general_one_does(make_telemetry: Any) -> None:
    """sample_rate 100 without host/path tags takes its own class; counts and spans must not move."""
    telemetry = make_telemetry(sample_rate=100, tag_method=True, tag_statuscode=True)
    app = telemetry.asgi(starlette_app())
    assert type(app).__name__ == "_SampledASGIMiddleware"

    async def upload() -> Any:
        for part in (b"12345", b"678"):
            yield part

    parent = "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-0"

    async def run() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            assert (await client.post("/echo", content=upload())).text == "8"  # chunked
            assert (await client.post("/echo?a=b", content=b"1234")).text == "4"
            assert len((await client.get("/stream")).content) == 12
            assert (await client.get("/boom")).status_code == 500
            await client.get("/__health")  # not measured, whatever it answers
            traced = await client.get("/bytes/3", headers={"b3": parent})
            assert traced.status_code == 200  # a propagation header: the general path
    asyncio.run(run())
    snap = telemetry.metrics()
    assert rows(snap, "server/request_count") == {("POST", "200"): 2, ("GET", "200"): 2,
                                                  ("GET", "500"): 1}
    assert rows(snap, "server/request_bytes")[("POST", "200")].sum == 12
    spans = spans_of(telemetry)
    assert [(s.name, s.attributes["http.url"], s.attributes["http.status_code"], s.status_code)
            for s in spans] == [("/echo", "/echo", 200, OK), ("/echo", "/echo?a=b", 200, OK),
                                ("/stream", "/stream", 200, OK), ("/boom", "/boom", 500, UNKNOWN),
                                ("/bytes/{n}", "/bytes/3", 200, OK)]
    assert all(s.kind == KIND_SERVER and s.attributes["http.host"] == "gw.test" for s in spans)
    assert len({s.trace_id for s in spans}) == 5 and all(s.parent_span_id is None for s in spans[:4])
    # a sampled-off parent does not stop sample_rate 100; the trace is continued
    assert (spans[4].trace_id, spans[4].parent_span_id) == ("463ac35c9f6413ad48485a3953bb6124",
                                                            "a2fb4a1d1a96d312")


def test_sampled_router_names_repeated_requests_as_the_first(make_telemetry: Any) -> None:
    """From the second request on a route the sampled class names the span from its route cache;
    a mount, a failure or a shared route object must still take the general naming."""
    telemetry = make_telemetry(sample_rate=100, tag_method=True, tag_statuscode=True)
    shared = Route("/bytes/{n:int}", sized)
    app = telemetry.asgi(Starlette(routes=[
        Route("/boom", boom), shared, Mount("/api", routes=[shared]),
    ]))
    assert type(app).__name__ == "_SampledASGIMiddleware"
    call(app, *[("GET", url) for url in (
        "/bytes/3", "/bytes/4?x=1", "/api/bytes/5", "/api/bytes/6", "/bytes/7", "/boom", "/boom",
    )])
    spans = spans_of(telemetry)
    assert [(s.name, s.attributes["http.url"], s.attributes["http.status_code"]) for s in spans] == [
        ("/bytes/{n}", "/bytes/3", 200), ("/bytes/{n}", "/bytes/4?x=1", 200),
        ("/api/bytes/{n}", "/api/bytes/5", 200), ("/api/bytes/{n}", "/api/bytes/6", 200),
        ("/bytes/{n}", "/bytes/7", 200), ("/boom", "/boom", 500), ("/boom", "/boom", 500),
    ]
    assert [s.status_code for s in spans] == [OK] * 5 + [UNKNOWN] * 2
    assert all(s.attributes["http.method"] == "GET" and s.end_ns >= s.start_ns for s in spans)
    assert rows(telemetry.metrics(), "server/request_count") == {("GET", "200"): 5, ("GET", "500"): 2}
