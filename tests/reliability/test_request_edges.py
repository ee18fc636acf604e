"""Edge requests through real servers (uvicorn for ASGI, werkzeug's threaded server for WSGI):
huge bodies with and without Content-Length, streamed responses, clients that disconnect
mid-response and app exceptions are each recorded exactly once with the right status and size,
and the exception reaches the server unchanged."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from gatescope.config import NAMESPACE

MIB = 1024 * 1024
CHUNK = 64 * 1024
UPLOAD = 16 * MIB
STREAM = 8 * MIB
ENDPOINTS = ("/upload", "/stream", "/drop", "/boom", "/boom-late")


class Boom(Exception):
    """The app's own failure; it must reach the server as this very object."""


BOOM = Boom("the app failed")
BOOM_LATE = Boom("the app failed mid-body")


def document() -> dict[str, Any]:
    return {"version": 3, "endpoints": [{"endpoint": e} for e in ENDPOINTS],
            "extra_config": {NAMESPACE: {"sample_rate": 0, "exporters": {"prometheus": {
                "port": 0, "listen_ip": "127.0.0.1", "tag_path": True,
                "tag_statuscode": True}}}}}


def records(telemetry: Any, view: str) -> dict[tuple[str, str], Any]:
    """(path, status) -> value of one server view."""
    data = telemetry.metrics().view("opencensus.io/http/server/" + view)
    keys = data.view.tag_keys
    out = {}
    for key, value in data.rows.items():
        tags = dict(zip(keys, key, strict=True))
        out[(tags["http.path"], tags["http.status"])] = value
    return out


def wait_recorded(telemetry: Any, path: str, timeout: float = 10.0) -> dict[str, int]:
    """status -> count for `path`, once the middleware recorded it (a drop ends asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {status: count for (p, status), count in records(telemetry, "request_count").items()
                 if p == path}
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


# --- the apps -------------------------------------------------------------------------------


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    if path == "/upload":
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/boom":
        raise BOOM
    if path == "/drop":  # as frameworks stream: Starlette stops when receive() says disconnect
        from starlette.responses import StreamingResponse

        async def slowly() -> Any:
            for _ in range(STREAM // CHUNK):
                await asyncio.sleep(0.002)
                yield b"x" * CHUNK
        await StreamingResponse(slowly())(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    chunk = b"x" * CHUNK
    for i in range(STREAM // CHUNK):
        if path == "/boom-late" and i == 3:
            raise BOOM_LATE
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    if path == "/upload":
        size = 0
        length = int(environ.get("CONTENT_LENGTH") or 0)  # never read past it (WSGI rule)
        while (not length or size < length) and (
                data := environ["wsgi.input"].read(min(CHUNK, length - size) if length else CHUNK)):
            size += len(data)
        body = str(size).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/boom":
        raise BOOM
    start_response("200 OK", [])
    return stream(path)


def stream(path: str) -> Iterator[bytes]:
    chunk = b"x" * CHUNK
    for i in range(STREAM // CHUNK):
        if path == "/boom-late" and i == 3:
            raise BOOM_LATE
        if path == "/drop":
            time.sleep(0.002)
        yield chunk


# --- the servers ----------------------------------------------------------------------------


@contextmanager
def uvicorn_server(app: Any, seen: list[BaseException]) -> Iterator[int]:
    import uvicorn

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info and record.exc_info[1] is not None:
                seen.append(record.exc_info[1])

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error",
                                           lifespan="off"))
    handler = Seen()  # after Config: it (re)configures uvicorn's loggers
    logging.getLogger("uvicorn.error").addHandler(handler)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        logging.getLogger("uvicorn.error").removeHandler(handler)


@contextmanager
def werkzeug_server(app: Any, seen: list[BaseException]) -> Iterator[int]:
    from werkzeug.serving import make_server

    def outer(environ: dict[str, Any], start_response: Any) -> Any:
        """The server's side of the middleware: notes every exception that reaches it."""
        try:
            inner = app(environ, start_response)
        except BaseException as exc:
            seen.append(exc)
            raise

        def body() -> Iterator[bytes]:
            try:
                yield from inner
            except BaseException as exc:
                seen.append(exc)
                raise
            finally:
                inner.close()
        return body()

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = make_server("127.0.0.1", 0, outer, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        thread.join(10)


SERVERS: dict[str, tuple[Callable[..., Any], Any, str]] = {
    "asgi-uvicorn": (uvicorn_server, asgi_app, "asgi"),
    "wsgi-werkzeug": (werkzeug_server, wsgi_app, "wsgi"),
}


# --- the client -----------------------------------------------------------------------------


def request(port: int, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request(method, path, body=body, headers=headers or {},
                           encode_chunked=headers is not None
                           and headers.get("Transfer-Encoding") == "chunked")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def chunks(total: int) -> Iterator[bytes]:
    part = b"u" * CHUNK
    for _ in range(total // CHUNK):
        yield part


def drop_mid_response(port: int) -> None:
    """Read the first part of a streamed body, then reset the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /drop HTTP/1.1\r\nHost: edge\r\n\r\n")
    received = 0
    while received < 2 * CHUNK:
        received += len(sock.recv(CHUNK))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST: the server's next writes fail


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_edge_requests_recorded_once_with_the_right_status_and_size(
    gatescope_plugins: Any, server: str,
) -> None:
    serve, app, layer = SERVERS[server]
    telemetry = gatescope_plugins.telemetry(document())
    seen: list[BaseException] = []
    with serve(getattr(telemetry, layer)(app), seen) as port:
        # Huge bodies, announced and chunked (no Content-Length).
        assert request(port, "POST", "/upload", body=b"a" * UPLOAD) == (200, str(UPLOAD).encode())
        assert request(port, "POST", "/upload", body=chunks(UPLOAD),
                       headers={"Transfer-Encoding": "chunked"}) == (200, str(UPLOAD).encode())
        # A streamed response without Content-Length.
        status, body = request(port, "GET", "/stream")
        assert status == 200 and len(body) == STREAM
        # The app raises before answering: the server answers 500 with the app's exception.
        assert request(port, "GET", "/boom")[0] == 500
        # The app raises in the middle of its body: the client gets a cut-off response.
        try:
            status, body = request(port, "GET", "/boom-late")
        except (http.client.HTTPException, ConnectionError):
            pass  # chunked framing broken off
        else:
            assert len(body) < STREAM  # close-delimited body cut short
    count = records(telemetry, "request_count")
    assert count == {("/upload", "200"): 2, ("/stream", "200"): 1, ("/boom", "500"): 1,
                     ("/boom-late", "500"): 1}
    request_bytes = records(telemetry, "request_bytes")[("/upload", "200")]
    assert (request_bytes.count, request_bytes.sum) == (2, 2 * UPLOAD)
    response_bytes = records(telemetry, "response_bytes")
    assert response_bytes[("/stream", "200")].sum == STREAM
    assert response_bytes[("/boom-late", "500")].sum == 3 * CHUNK
    assert any(exc is BOOM for exc in seen) and any(exc is BOOM_LATE for exc in seen), seen


# uvicorn's send() returns silently after a disconnect (it says so only through receive());
# the middleware counts a response that never sent its final body message as 499.
@pytest.mark.parametrize("server", ["asgi-uvicorn", "wsgi-werkzeug"])
def test_client_disconnect_mid_response_is_recorded_once_as_499(gatescope_plugins: Any,
                                                                 server: str) -> None:
    serve, app, layer = SERVERS[server]
    telemetry = gatescope_plugins.telemetry(document())
    with serve(getattr(telemetry, layer)(app), []) as port:
        drop_mid_response(port)
        dropped = wait_recorded(telemetry, "/drop")
        time.sleep(0.2)  # a second record would show up here
        dropped = wait_recorded(telemetry, "/drop")
    assert dropped == {"499": 1}, dropped
    response_bytes = records(telemetry, "response_bytes")[("/drop", "499")]
    assert response_bytes.count == 1 and 2 * CHUNK <= response_bytes.sum < STREAM
