"""Backend layer: real httpx (sync+async), requests and aiohttp calls to a real local upstream."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from gatescope import hookimpl
from gatescope.filters import LayerFilter
from gatescope.spans import (
    CANCELLED,
    KIND_CLIENT,
    KIND_SERVER,
    KIND_UNSPECIFIED,
    NOT_FOUND,
    OK,
    UNKNOWN,
)
from gatescope.tracing import current
from layer_helpers import rows, spans_of, tag_keys
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ENDPOINTS = [{
    "endpoint": "/gw/{id}",
    "backend": [
        {"host": ["http://u"], "url_pattern": "/users/{id}"},
        {"host": ["http://u"], "url_pattern": "/bytes/{n}",
         "extra_config": {"telemetry/opencensus": {"path_aggregation": "off"}}},
        {"host": ["http://u"], "url_pattern": "/items/{id}",
         "extra_config": {"telemetry/opencensus": {"path_aggregation": "lastparam"}}},
    ],
}]


@pytest.fixture
def root(make_telemetry: Any) -> Any:
    """A sampled root span made current, for sync clients called outside a server."""
    def start(telemetry: Any) -> Iterator[Any]:
        span = telemetry.kit.tracer.start_root("root", KIND_SERVER, None)
        token = current.set(span)
        try:
            yield span
        finally:
            current.reset(token)
            span.end()
    return start


def check_propagated(upstream: Any, client_span: Any) -> None:
    seen = upstream.seen[-1]
    assert seen["x-b3-traceid"] == client_span.trace_id
    assert seen["x-b3-spanid"] == client_span.span_id
    assert seen["x-b3-sampled"] == "1"
    assert seen["traceparent"] == f"00-{client_span.trace_id}-{client_span.span_id}-01"


def test_three_layers_through_a_starlette_gateway(make_telemetry: Any, upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=100, endpoints=ENDPOINTS, tag_path=True)
    client = telemetry.async_httpx_client(base_url=upstream.url)

    @telemetry.pipe("/gw/{id}")
    async def merge(user_id: str) -> dict[str, Any]:
        async with telemetry.backend("/users/{id}"):
            first = (await client.get(f"/users/{user_id}")).json()
        async with telemetry.backend("/bytes/{n}"):
            size = len((await client.get("/bytes/1024")).content)
        return {"path": first["path"], "size": size}

    async def handler(request: Request) -> JSONResponse:
        return JSONResponse(await merge(request.path_params["id"]))

    app = telemetry.asgi(Starlette(routes=[Route("/gw/{id}", handler)]))

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gw") as gw:
            answer = (await gw.get("/gw/9")).json()
        await client.aclose()
        return answer
    assert asyncio.run(run()) == {"path": "/users/9", "size": 1024}

    spans = {s.name: s for s in spans_of(telemetry)}
    assert set(spans) == {"/gw/{id}", "pipe-/gw/{id}", "backend-/users/{id}",
                          "backend-/bytes/{n}", "/users/9", "/bytes/1024"}
    router, pipe = spans["/gw/{id}"], spans["pipe-/gw/{id}"]
    assert len({s.trace_id for s in spans.values()}) == 1
    assert pipe.parent_span_id == router.span_id and pipe.kind == KIND_UNSPECIFIED
    assert pipe.attributes == {"complete": True, "canceled": False}
    backend = spans["backend-/users/{id}"]
    assert backend.parent_span_id == pipe.span_id
    assert backend.attributes == {"complete": True, "canceled": False}
    client_span = spans["/users/9"]
    assert client_span.parent_span_id == backend.span_id and client_span.kind == KIND_CLIENT
    assert client_span.attributes == {
        "http.host": upstream.host, "http.method": "GET", "http.path": "/users/9",
        "http.url": f"{upstream.url}/users/9", "http.user_agent": f"python-httpx/{httpx.__version__}",
        "http.status_code": 200}
    assert client_span.status_code == OK
    snap = telemetry.metrics()
    assert tag_keys(snap, "client/completed_count") == (
        "http_client_method", "http_client_status", "http_client_path")
    assert rows(snap, "client/completed_count") == {
        ("GET", "200", "/users/{id}"): 1, ("GET", "200", "/bytes/1024"): 1}  # pattern, off
    received = rows(snap, "client/received_bytes")[("GET", "200", "/bytes/1024")]
    assert received.sum == 1024 and received.bucket_counts[1] == 1
    assert rows(snap, "server/request_count") == {("/gw/{id}",): 1}


def test_httpx_sync_views_and_headers(make_telemetry: Any, upstream: Any, root: Any) -> None:
    telemetry = make_telemetry(sample_rate=100, endpoints=ENDPOINTS, tag_host=True,
                               tag_path=True)
    with telemetry.httpx_client(base_url=upstream.url) as client:
        for span in root(telemetry):  # noqa: B007 - the root span is checked below
            with telemetry.backend("/items/{id}"):
                assert client.post("/items/77", content=b"x" * 1024).status_code == 200
            assert client.get("/status/404").status_code == 404
    spans = {s.name: s for s in spans_of(telemetry)}
    check_propagated(upstream, spans["/status/404"])
    assert spans["/items/77"].parent_span_id == spans["backend-/items/{id}"].span_id
    assert spans["/status/404"].status_code == NOT_FOUND
    assert spans["/status/404"].parent_span_id == span.span_id
    snap = telemetry.metrics()
    host = upstream.host
    sent = rows(snap, "client/sent_bytes")
    assert sent[("POST", "200", host, "/items/{id}")].sum == 1024  # lastparam
    assert sent[("POST", "200", host, "/items/{id}")].bucket_counts[1] == 1
    assert sent[("GET", "404", host, "/status/404")].sum == 0  # no call named: KrakenD's raw path


def test_requests_session(make_telemetry: Any, upstream: Any, root: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    session = telemetry.requests_session()
    for _ in root(telemetry):
        assert len(session.get(upstream.url + "/bytes/2048").content) == 2048
        assert session.put(upstream.url + "/echo", data=b"abc").status_code == 200
    [_get, put] = [s for s in spans_of(telemetry) if s.kind == KIND_CLIENT]
    check_propagated(upstream, put)
    snap = telemetry.metrics()
    assert rows(snap, "client/completed_count") == {("GET", "200"): 1, ("PUT", "200"): 1}
    assert rows(snap, "client/received_bytes")[("GET", "200")].sum == 2048
    assert rows(snap, "client/sent_bytes")[("PUT", "200")].sum == 3


def test_aiohttp_trace_config(make_telemetry: Any, upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)

    async def run() -> None:
        span = telemetry.kit.tracer.start_root("root", KIND_SERVER, None)
        current.set(span)
        config = telemetry.aiohttp_trace_config()
        async with aiohttp.ClientSession(trace_configs=[config]) as s, \
                s.get(upstream.url + "/bytes/10") as response:
            assert len(await response.read()) == 10
        span.end()
    asyncio.run(run())
    [client_span] = [s for s in spans_of(telemetry) if s.kind == KIND_CLIENT]
    check_propagated(upstream, client_span)
    assert client_span.name == "/bytes/10"
    assert rows(telemetry.metrics(), "client/received_bytes")[("GET", "200")].sum == 10


def test_unsampled_remote_parent_is_propagated(make_telemetry: Any, upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)
    client = telemetry.async_httpx_client()

    async def handler(request: Request) -> JSONResponse:
        await client.get(upstream.url + "/users/1")
        return JSONResponse({})

    app = telemetry.asgi(Starlette(routes=[Route("/", handler)]))

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gw") as gw:
            await gw.get("/", headers={"b3": "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312"})
        await client.aclose()
    asyncio.run(run())
    seen = upstream.seen[-1]
    assert seen["x-b3-traceid"] == "463ac35c9f6413ad48485a3953bb6124"
    assert seen["x-b3-sampled"] == "0" and seen["x-b3-spanid"] != "a2fb4a1d1a96d312"
    assert seen["traceparent"].startswith("00-463ac35c9f6413ad48485a3953bb6124-")
    assert spans_of(telemetry) == []


def test_rate_zero_without_parent_propagates_fresh_unsampled_ids(make_telemetry: Any,
                                                                  upstream: Any) -> None:
    """The lean path (never-sampler, no host/path tags): fresh ids, sampled 0, one record."""
    telemetry = make_telemetry(sample_rate=0)
    pipe = telemetry.pipe("/")

    def handler() -> int:
        return 1

    assert pipe(handler) is handler  # nothing could ever be recorded around it
    seen_ids = set()
    with telemetry.httpx_client() as client:
        for _ in range(3):
            with telemetry.backend("/users/{id}"):
                assert client.get(upstream.url + "/users/1").status_code == 200
            seen = upstream.seen[-1]
            trace_id, span_id = seen["x-b3-traceid"], seen["x-b3-spanid"]
            assert len(trace_id) == 32 and len(span_id) == 16 and int(trace_id, 16) and int(span_id, 16)
            assert seen["x-b3-sampled"] == "0"
            assert seen["traceparent"] == f"00-{trace_id}-{span_id}-00"
            seen_ids.add(trace_id)
    assert len(seen_ids) == 3  # a new trace per call
    assert sum(rows(telemetry.metrics(), "client/completed_count").values()) == 3
    assert spans_of(telemetry) == []


def test_a_lean_layer_inside_another_telemetrys_span_describes_the_call(make_telemetry: Any,
                                                                         root: Any,
                                                                         upstream: Any) -> None:
    """The lean path reads only the length and the propagation names; when a sampled span of
    another Telemetry is current it takes the full start, which still finds Host and
    User-Agent for the span it makes."""
    lean, sampled = make_telemetry(sample_rate=0), make_telemetry(sample_rate=100)
    with lean.httpx_client() as client:
        for span in root(sampled):
            assert current.get() is span
            assert client.get(upstream.url + "/users/1", headers={
                "Host": "gw.example", "User-Agent": "probe/2"}).status_code == 200
    [client_span] = [s for s in spans_of(lean) if s.kind == KIND_CLIENT]
    assert (client_span.trace_id, client_span.parent_span_id) == (span.trace_id, span.span_id)
    assert client_span.attributes["http.host"] == "gw.example"
    assert client_span.attributes["http.user_agent"] == "probe/2"
    check_propagated(upstream, client_span)


def test_rate_zero_with_a_path_tag_still_names_the_backend(make_telemetry: Any,
                                                            upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=0, tag_path=True)
    with telemetry.httpx_client() as client, telemetry.backend("/users/{id}"):
        client.get(upstream.url + "/users/1")
    assert upstream.seen[-1]["x-b3-sampled"] == "0"
    completed = rows(telemetry.metrics(), "client/completed_count")
    assert [key for key in completed if "/users/{id}" in key], completed


def test_connect_error_recorded_as_500_and_raised(make_telemetry: Any, root: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    with telemetry.httpx_client() as client:
        for _ in root(telemetry):
            with pytest.raises(httpx.ConnectError):
                client.get("http://127.0.0.1:9/nothing")  # discard port: refused
    assert rows(telemetry.metrics(), "client/completed_count") == {("GET", "500"): 1}
    [client_span] = [s for s in spans_of(telemetry) if s.kind == KIND_CLIENT]
    assert client_span.status_code == UNKNOWN and "http.status_code" not in client_span.attributes


def test_pipe_marks_errors_cancels_and_incomplete(make_telemetry: Any, root: Any) -> None:
    telemetry = make_telemetry(sample_rate=100)
    pipe = telemetry.pipe("/p")
    for _ in root(telemetry):
        with pytest.raises(ValueError, match="bad"), pipe:
            raise ValueError("bad")
        with pipe as call:
            call.complete = False
        assert pipe(lambda: None)() is None

        async def cancelled() -> None:
            async with telemetry.pipe("/p"):
                raise asyncio.CancelledError
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(cancelled())
    pipes = [s.attributes for s in spans_of(telemetry) if s.name == "pipe-/p"]
    assert pipes == [
        {"error": "bad", "complete": False, "canceled": False},
        {"complete": False, "canceled": False},
        {"complete": False, "canceled": False},  # a None result is KrakenD's nil response
        {"complete": False, "canceled": True},
    ]


class _Result:
    def __init__(self, complete: bool) -> None:
        self.complete = complete


class _Unreadable:
    @property
    def complete(self) -> bool:
        raise RuntimeError("no flag")


def test_decorated_scopes_end_their_spans_and_restore_the_context(make_telemetry: Any,
                                                                   root: Any) -> None:
    """A decorated pipe or backend keeps its span in the wrapper (no `LayerCall`): the span is
    current inside, the backend names its endpoint inside, both are reset after, and the span
    ends with KrakenD's attributes whatever the call did."""
    from gatescope.pipe import backend_endpoint

    telemetry = make_telemetry(sample_rate=100, tag_path=True)  # a backend names its endpoint
    pipe, backend = telemetry.pipe("/d"), telemetry.backend("/items/{id}")
    inside: list[tuple[str, Any]] = []

    @backend
    async def fetch(outcome: str) -> Any:
        inside.append((current.get().name, backend_endpoint.get()))
        if outcome == "error":
            raise ValueError("bad")
        if outcome == "cancel":
            raise asyncio.CancelledError
        if outcome == "unreadable":  # reading its `complete` raises, as a `with` body would
            return _Unreadable()
        return _Result(outcome == "complete")

    @pipe
    async def handle(outcome: str) -> Any:
        inside.append((current.get().name, backend_endpoint.get()))
        try:
            return await fetch(outcome)
        finally:  # the backend's span and endpoint are reset as it returns or raises
            inside.append((current.get().name, backend_endpoint.get()))

    @pipe
    def handle_sync(fail: bool) -> Any:
        inside.append((current.get().name, backend_endpoint.get()))
        if fail:
            raise KeyError("gone")
        return None

    for span in root(telemetry):
        for outcome, raised in (("complete", None), ("incomplete", None), ("error", ValueError),
                                ("cancel", asyncio.CancelledError), ("unreadable", RuntimeError)):
            if raised is None:
                asyncio.run(handle(outcome))
            else:
                with pytest.raises(raised):
                    asyncio.run(handle(outcome))
        assert handle_sync(False) is None
        with pytest.raises(KeyError):
            handle_sync(True)
        assert current.get() is span and backend_endpoint.get() is None
    assert [(name, endpoint is not None) for name, endpoint in inside] == [
        ("pipe-/d", False), ("backend-/items/{id}", True), ("pipe-/d", False)] * 5 \
        + [("pipe-/d", False)] * 2
    assert {endpoint.pattern for _, endpoint in inside if endpoint is not None} == {"/items/{id}"}
    spans = spans_of(telemetry)
    by_id = {s.span_id: s for s in spans}
    ended = [(s.name, s.attributes, s.status_code, by_id[s.parent_span_id].name)
             for s in spans if s.name != "root"]
    assert ended == [
        ("backend-/items/{id}", {"complete": True, "canceled": False}, OK, "pipe-/d"),
        ("pipe-/d", {"complete": True, "canceled": False}, OK, "root"),
        ("backend-/items/{id}", {"complete": False, "canceled": False}, OK, "pipe-/d"),
        ("pipe-/d", {"complete": False, "canceled": False}, OK, "root"),
        ("backend-/items/{id}", {"error": "bad", "complete": False, "canceled": False}, UNKNOWN,
         "pipe-/d"),
        ("pipe-/d", {"error": "bad", "complete": False, "canceled": False}, UNKNOWN, "root"),
        ("backend-/items/{id}", {"complete": False, "canceled": True}, CANCELLED, "pipe-/d"),
        ("pipe-/d", {"complete": False, "canceled": True}, CANCELLED, "root"),
        ("backend-/items/{id}", {"error": "no flag", "complete": False, "canceled": False},
         UNKNOWN, "pipe-/d"),
        ("pipe-/d", {"error": "no flag", "complete": False, "canceled": False}, UNKNOWN, "root"),
        ("pipe-/d", {"complete": False, "canceled": False}, OK, "root"),  # None: KrakenD's nil
        ("pipe-/d", {"error": "'gone'", "complete": False, "canceled": False}, UNKNOWN, "root"),
    ]


def test_layers_switched_off(gatescope_plugins: Any, upstream: Any) -> None:
    from gatescope.testing import krakend_config
    telemetry = gatescope_plugins.telemetry(krakend_config(
        sample_rate=100, enabled_layers={"router": True}))
    with telemetry.httpx_client() as client:
        client.get(upstream.url + "/users/1")
    assert "x-b3-traceid" not in upstream.seen[-1]
    assert rows(telemetry.metrics(), "client/completed_count") == {}
    assert telemetry.pipe("/x").enabled is False


class SkipsStatusCalls:
    @hookimpl
    def gatescope_layer_filters(self, config: Any) -> list[LayerFilter]:
        return [LayerFilter("backend", lambda path: not path.startswith("/status/"))]


@pytest.mark.parametrize("sample_rate", [0, 100])
def test_backend_filter_leaves_matching_calls_alone(gatescope_plugins: Any, make_telemetry: Any,
                                                    upstream: Any, sample_rate: int) -> None:
    gatescope_plugins.register(SkipsStatusCalls(), "skips-status")
    telemetry = make_telemetry(sample_rate=sample_rate)
    with telemetry.httpx_client(base_url=upstream.url) as client:
        assert client.get("/status/204").status_code == 204
        assert client.get("/bytes/3").content == b"xxx"
    assert rows(telemetry.metrics(), "client/completed_count") == {("GET", "200"): 1}
    skipped, kept = upstream.seen
    assert "traceparent" not in skipped and "x-b3-traceid" not in skipped
    assert kept["traceparent"].startswith("00-")
    assert [s.name for s in spans_of(telemetry) if s.kind == KIND_CLIENT] == \
        (["/bytes/3"] if sample_rate else [])
