"""A Content-Length no Go server would take fails no request and loses no record: the body is
counted as it arrives instead (KrakenD's ochttp reads the length as an int64)."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import aiohttp
import httpx
import pytest
import requests
from gatescope.lengths import MAX_CONTENT_LENGTH, declared_length
from layer_helpers import rows

# Values a server may pass on (ASGI servers strip the spaces around a value; WSGI ones may not).
UNUSABLE = {
    "past int64": b"9223372036854775808",
    "400 digits": b"1" * 400,  # past float's range: the size distribution's sum overflowed
    "5000 digits": b"1" * 5000,  # past int()'s 4,300-digit limit: ValueError
    "superscript two": "\u00b2".encode("latin-1"),  # str.isdigit() says yes, int() says no
    "sign": b"+5",
    "negative": b"-5",
    "hex": b"0x5",
    "two values": b"5, 5",
}
DECLARED = {
    "plain": (b"5", 5),
    "leading zeros": (b"0" * 30 + b"5", 5),
    "zero": (b"000", 0),
    "int64 max": (str(MAX_CONTENT_LENGTH).encode(), MAX_CONTENT_LENGTH),
    "spaces": (b" \t5\t ", 5),
}


@pytest.mark.parametrize("value", list(UNUSABLE.values()), ids=list(UNUSABLE))
def test_unusable_values_declare_no_length(value: bytes) -> None:
    assert declared_length(value) is None
    assert declared_length(value.decode("latin-1")) is None


@pytest.mark.parametrize(("value", "length"), list(DECLARED.values()), ids=list(DECLARED))
def test_declared_lengths(value: bytes, length: int) -> None:
    assert declared_length(value) == length
    assert declared_length(value.decode("latin-1")) == length


def test_other_scripts_digits_are_not_a_length() -> None:
    assert "\u0663".isdigit() and int("\u0663") == 3  # ARABIC-INDIC DIGIT THREE: int() takes it
    assert declared_length("\u0663") is None
    assert declared_length("") is None


async def _reading_app(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"got %d" % len(body)})


def _asgi_request(app: Any, length: bytes | None, parts: tuple[bytes, ...],
                  extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """One request as a server hands it over; what the app sent back."""
    headers = [(b"host", b"gw.test")] + (extra or [])
    if length is not None:
        headers.append((b"content-length", length))
    messages = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
                for i, part in enumerate(parts)]
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/upload", "raw_path": b"/upload",
             "root_path": "", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    return b"".join(sent)


# The three router classes: record-only (rate 0, default tags), general (a path tag), sampled.
ROUTERS = {
    "record-only": ({"sample_rate": 0}, "_RecordOnlyASGIMiddleware"),
    "general": ({"sample_rate": 0, "tag_path": True}, "TelemetryASGIMiddleware"),
    "sampled": ({"sample_rate": 100}, "_SampledASGIMiddleware"),
}


@pytest.mark.parametrize("router", list(ROUTERS))
@pytest.mark.parametrize("value", list(UNUSABLE.values()), ids=list(UNUSABLE))
def test_asgi_router_counts_the_body_when_the_length_is_unusable(make_telemetry: Any, router: str,
                                                                   value: bytes) -> None:
    options, class_name = ROUTERS[router]
    telemetry = make_telemetry(**options)
    app = telemetry.asgi(_reading_app)
    assert type(app).__name__ == class_name
    assert _asgi_request(app, value, (b"hel", b"lo")) == b"got 5"
    # Enough requests after it for the batch holding its record to be folded.
    for _ in range(300):
        assert _asgi_request(app, b"2", (b"ok",)) == b"got 2"
    request_bytes = rows(telemetry.metrics(), "server/request_bytes")
    assert sum(row.count for row in request_bytes.values()) == 301
    assert sum(row.sum for row in request_bytes.values()) == 5 + 300 * 2


@pytest.mark.parametrize("router", list(ROUTERS))
@pytest.mark.parametrize(("value", "length"), list(DECLARED.values()), ids=list(DECLARED))
def test_asgi_router_records_a_declared_length(make_telemetry: Any, router: str, value: bytes,
                                               length: int) -> None:
    telemetry = make_telemetry(**ROUTERS[router][0])
    app = telemetry.asgi(_reading_app)
    assert _asgi_request(app, value, (b"hel", b"lo")) == b"got 5"
    request_bytes = rows(telemetry.metrics(), "server/request_bytes")
    assert [row.sum for row in request_bytes.values()] == [float(length)]


def test_asgi_router_counts_a_chunked_body_with_an_unusable_length_too(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)
    app = telemetry.asgi(_reading_app)
    _asgi_request(app, b"x", (b"abc", b"de"), extra=[(b"transfer-encoding", b"chunked")])
    request_bytes = rows(telemetry.metrics(), "server/request_bytes")
    assert [row.sum for row in request_bytes.values()] == [5.0]


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read(5)
    start_response(environ.get("test.status", "200 OK"), [("Content-Type", "text/plain")])
    return [b"got %d" % len(body)]


def _environ(length: str | None, body: bytes = b"hello") -> dict[str, Any]:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/upload", "SERVER_NAME": "gw.test",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http"}
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    return environ


def _call_wsgi(app: Any, environ: dict[str, Any]) -> tuple[str, bytes]:
    seen: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        seen.append(status)
        return lambda data: None
    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    return seen[0], body


@pytest.mark.parametrize("value", [v.decode("latin-1") for v in UNUSABLE.values()] + ["\u0663"],
                         ids=[*UNUSABLE, "arabic-indic three"])
def test_wsgi_router_counts_what_is_read_when_the_length_is_unusable(make_telemetry: Any,
                                                                      value: str) -> None:
    telemetry = make_telemetry(sample_rate=0)
    app = telemetry.wsgi(_wsgi_app)
    assert _call_wsgi(app, _environ(value)) == ("200 OK", b"got 5")
    assert _call_wsgi(app, _environ("0" * 25 + "5")) == ("200 OK", b"got 5")
    request_bytes = rows(telemetry.metrics(), "server/request_bytes")
    assert sum(row.sum for row in request_bytes.values()) == 10
    assert sum(row.count for row in request_bytes.values()) == 2


def test_wsgi_status_that_is_not_three_digits_is_recorded_as_500(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=0, tag_statuscode=True)
    app = telemetry.wsgi(_wsgi_app)
    environ = _environ("5")
    environ["test.status"] = "\u00b2\u00b2\u00b2 Odd"
    assert _call_wsgi(app, environ) == ("\u00b2\u00b2\u00b2 Odd", b"got 5")  # the server's to refuse
    assert rows(telemetry.metrics(), "server/request_count") == {("500",): 1}


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def wsgiref_server(make_telemetry: Any) -> Iterator[tuple[Any, int]]:
    telemetry = make_telemetry(sample_rate=0)
    server = make_server("127.0.0.1", 0, telemetry.wsgi(_wsgi_app), WSGIServer, _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield telemetry, server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_a_real_wsgi_server_passing_on_a_superscript_length(wsgiref_server: Any) -> None:
    """wsgiref hands CONTENT_LENGTH over as sent: before, the router raised and the client got 500."""
    telemetry, port = wsgiref_server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: \xb2\r\n"
                     b"Connection: close\r\n\r\nhello")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"got 5")
    request_bytes = rows(telemetry.metrics(), "server/request_bytes")
    assert [row.sum for row in request_bytes.values()] == [5.0]


def test_httpx_backend_with_an_unusable_length_counts_the_body(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=request.read())
    client = httpx.Client(transport=telemetry.httpx_transport(httpx.MockTransport(answer)))

    def upload() -> Iterator[bytes]:
        yield b"hel"
        yield b"lo"
    with client:
        response = client.post("http://u.test/x", content=upload(),
                               headers={"Content-Length": "1" * 5000})
        assert response.content == b"hello"
        response = client.post("http://u.test/x", content=b"abc",
                               headers={"Content-Length": "9" * 400})
        assert response.content == b"abc"
    sent = rows(telemetry.metrics(), "client/sent_bytes")
    assert [row.sum for row in sent.values()] == [5.0 + 3.0]  # both bodies as they went
    assert [row.count for row in sent.values()] == [2]


def test_requests_backend_with_an_unusable_length_counts_the_body(make_telemetry: Any,
                                                                  upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)
    session = telemetry.requests_session()
    request = requests.Request("POST", f"{upstream.url}/echo", data=b"hello").prepare()
    request.headers["Content-Length"] = "\u00b2"
    with pytest.raises(requests.ConnectionError):
        session.send(request, timeout=5)  # the upstream fails on the header and hangs up
    sent_bytes = rows(telemetry.metrics(), "client/sent_bytes")
    assert [row.sum for row in sent_bytes.values()] == [5.0]
    assert rows(telemetry.metrics(), "client/completed_count") == {("POST", "500"): 1}


def test_aiohttp_backend_with_an_unusable_length_counts_the_body(make_telemetry: Any,
                                                                 upstream: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)

    async def run() -> None:
        config = telemetry.aiohttp_trace_config()
        async with aiohttp.ClientSession(trace_configs=[config]) as session:
            with pytest.raises(aiohttp.ClientError):  # the upstream fails on the header
                async with session.post(upstream.url + "/echo", data=b"hello",
                                        headers={"Content-Length": "9" * 400}) as response:
                    await response.read()
    asyncio.run(run())
    sent_bytes = rows(telemetry.metrics(), "client/sent_bytes")
    assert [row.sum for row in sent_bytes.values()] == [5.0]
    assert rows(telemetry.metrics(), "client/completed_count") == {("POST", "500"): 1}
