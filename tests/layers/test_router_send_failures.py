"""A server that raises from send() because the client left: every ASGI router class records 499
(and a sampled span CANCELLED) and lets the exception through; an OSError the app raises
itself, not from send, is the app's failure (500)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import pytest
from gatescope.spans import CANCELLED, UNKNOWN
from layer_helpers import rows, spans_of
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

# (sample_rate, tags): the record-only class, the sampled class, the general class both ways
CLASSES = {
    "record-only": (0, {}),
    "sampled": (100, {}),
    "general-0": (0, {"tag_path": True}),
    "general-100": (100, {"tag_path": True}),
}


async def streamed(request: Request) -> Response:
    async def chunks() -> Any:
        for _ in range(3):
            yield b"abcd"
    return StreamingResponse(chunks())


async def own_oserror(request: Request) -> Response:
    raise FileNotFoundError("the app's own file is missing")


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/stream", streamed), Route("/missing", own_oserror)])


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI app: awaits send itself and catches nothing."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def rewrapping_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that turns the server's error into its own, keeping the cause."""
    try:
        await raw_app(scope, receive, send)
    except OSError as exc:
        raise RuntimeError("the response could not be sent") from exc


class Connection:
    """A server connection whose writes fail after `ok` messages, like a reset socket."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.sent: list[str] = []

    async def send(self, message: dict[str, Any]) -> None:
        if len(self.sent) >= self.ok:
            raise ConnectionResetError("connection reset by peer")
        self.sent.append(message["type"])

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.send(message)


def shapes(connection: Connection) -> dict[str, Callable[..., Any]]:
    """The send callables servers and outer middleware hand over."""
    async def function(message: dict[str, Any]) -> None:
        await connection.send(message)

    async def partial_target(conn: Connection, message: dict[str, Any]) -> None:
        await conn.send(message)

    def handing_back(message: dict[str, Any]) -> Any:  # an outer layer like gatescope's own
        return connection.send(message)

    def raising_at_call(message: dict[str, Any]) -> Any:
        """Fails before handing anything back; hands back another function's awaitable."""
        if len(connection.sent) >= connection.ok:
            raise ConnectionResetError("connection reset by peer")
        connection.sent.append(message["type"])
        return asyncio.sleep(0)

    return {"method": connection.send, "object": connection, "function": function,
            "partial": functools.partial(partial_target, connection),
            "handing-back": handing_back, "raising-at-call": raising_at_call}


def scope(path: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "method": "GET",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": [(b"host", b"gw.test")], "scheme": "http", "server": ("gw.test", 80),
            "http_version": "1.1"}


async def receive() -> dict[str, Any]:
    await asyncio.sleep(3600)  # the client says nothing more: only send() reports it left
    return {"type": "http.disconnect"}


def serve(app: Any, path: str, send: Any) -> BaseException:
    """One request; the exception that reached the server."""
    async def run() -> BaseException:
        try:
            await app(scope(path), receive, send)
        except BaseException as exc:  # the test asserts on what arrived
            return exc
        raise AssertionError("the request did not fail")
    return asyncio.run(run())


SHAPES = ["method", "object", "function", "partial", "handing-back", "raising-at-call"]


def telemetry_for(make_telemetry: Any, kind: str) -> tuple[Any, int]:
    """A started Telemetry whose ASGI router is the class `kind` names, and its sample rate."""
    rate, tags = CLASSES[kind]
    return make_telemetry(sample_rate=rate, tag_statuscode=True, **tags), rate


def assert_span_status(telemetry: Any, http_status: int, code: int) -> None:
    [span] = spans_of(telemetry)
    assert (span.attributes["http.status_code"], span.status_code) == (http_status, code)


def statuses(telemetry: Any) -> dict[str, int]:
    """Recorded requests per status tag."""
    out: dict[str, int] = {}
    for key, count in rows(telemetry.metrics(), "server/request_count").items():
        out[key[-1]] = out.get(key[-1], 0) + count
    return out


@pytest.mark.parametrize("kind", sorted(CLASSES))
@pytest.mark.parametrize("shape", SHAPES)
def test_send_raising_oserror_is_recorded_as_client_closed(make_telemetry: Any, kind: str,
                                                            shape: str) -> None:
    telemetry, rate = telemetry_for(make_telemetry, kind)
    app = telemetry.asgi(raw_app, endpoints=["/raw"])
    connection = Connection(ok=1)  # the start goes out, the first body part fails
    exc = serve(app, "/raw", shapes(connection)[shape])
    assert type(exc) is ConnectionResetError
    assert connection.sent == ["http.response.start"]
    assert statuses(telemetry) == {"499": 1}
    if rate:
        assert_span_status(telemetry, 499, CANCELLED)


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_two_router_layers_both_record_a_client_that_left(make_telemetry: Any,
                                                           kind: str) -> None:
    """The inner layer gets the outer one's send, a plain function handing back the server's
    awaitable: its frame is never in the traceback."""
    telemetry, _ = telemetry_for(make_telemetry, kind)
    outer_telemetry, _ = telemetry_for(make_telemetry, kind)
    app = outer_telemetry.asgi(telemetry.asgi(raw_app, endpoints=["/raw"]), endpoints=["/raw"])
    exc = serve(app, "/raw", Connection(ok=1).send)
    assert type(exc) is ConnectionResetError
    assert statuses(telemetry) == statuses(outer_telemetry) == {"499": 1}


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_starlette_client_disconnect_from_send_is_recorded_as_client_closed(
        make_telemetry: Any, kind: str) -> None:
    """Starlette turns the server's OSError into its ClientDisconnect (the OSError as context)."""
    telemetry, _ = telemetry_for(make_telemetry, kind)
    exc = serve(telemetry.asgi(starlette_app()), "/stream", Connection(ok=2).send)
    assert type(exc).__name__ == "ClientDisconnect"
    assert statuses(telemetry) == {"499": 1}


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_app_error_caused_by_a_failed_send_is_client_closed(make_telemetry: Any,
                                                             kind: str) -> None:
    telemetry, _ = telemetry_for(make_telemetry, kind)
    app = telemetry.asgi(rewrapping_app, endpoints=["/raw"])
    exc = serve(app, "/raw", Connection(ok=0).send)
    assert type(exc) is RuntimeError and type(exc.__cause__) is ConnectionResetError
    assert statuses(telemetry) == {"499": 1}


@pytest.mark.parametrize("kind", sorted(CLASSES))
@pytest.mark.parametrize("shape", SHAPES)
def test_an_oserror_of_the_app_itself_is_a_server_error(make_telemetry: Any, kind: str,
                                                        shape: str) -> None:
    telemetry, rate = telemetry_for(make_telemetry, kind)
    connection = Connection(ok=10)  # the server could send; the app failed before answering
    exc = serve(telemetry.asgi(starlette_app()), "/missing", shapes(connection)[shape])
    assert type(exc) is FileNotFoundError
    assert connection.sent == ["http.response.start", "http.response.body"]  # Starlette's 500
    assert statuses(telemetry) == {"500": 1}
    if rate:
        assert_span_status(telemetry, 500, UNKNOWN)
