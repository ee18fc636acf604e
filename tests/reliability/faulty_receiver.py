"""A Zipkin-like span receiver that can misbehave, and real servers for instrumented apps."""

from __future__ import annotations

import functools
import http.client
import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from gatescope.testing import free_port

OK, REFUSE, HANG, ERROR_500, SLOW = "ok", "refuse", "hang", "500", "slow"
JAEGER_IDL = (Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "jaeger-idl"
              / "thrift")
Decoder = Callable[[bytes], list[dict[str, Any]]]


def zipkin_spans(body: bytes) -> list[dict[str, Any]]:
    """A Zipkin v2 JSON body -> its spans (id and tags are all the tests read)."""
    spans: list[dict[str, Any]] = json.loads(body)
    return spans


@functools.cache
def _jaeger_idl() -> Any:
    import thriftpy2

    return thriftpy2.load(str(JAEGER_IDL / "jaeger.thrift"), module_name="reliability_jaeger_thrift",
                          include_dirs=[str(JAEGER_IDL)])


def jaeger_spans(body: bytes) -> list[dict[str, Any]]:
    """A Jaeger collector body (Thrift binary `Batch`, decoded from the official IDL)."""
    from thriftpy2.protocol import TBinaryProtocolFactory
    from thriftpy2.transport import TMemoryBuffer

    batch = _jaeger_idl().Batch()
    batch.read(TBinaryProtocolFactory().get_protocol(TMemoryBuffer(body)))
    return [{"id": f"{span.spanId & (2**64 - 1):016x}",
             "tags": {tag.key: tag.vStr for tag in span.tags or () if tag.vStr is not None}}
            for span in batch.spans]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ReceiverServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        owner = self.server.owner
        mode = owner.mode
        if mode == HANG:  # accepted, read, never answered; the client must time out
            while owner.mode == HANG and not owner.closing.is_set():
                time.sleep(0.01)
            self.close_connection = True
            return
        if mode == SLOW:
            time.sleep(owner.slow_seconds)
        if mode == ERROR_500:
            owner.rejected += 1
            self._answer(500)
            return
        owner.accept(body)
        self._answer(202)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: Receiver


class Receiver:
    """A span receiver (Zipkin JSON or Jaeger Thrift over HTTP POST) on 127.0.0.1; `mode`
    switches its behaviour at any time."""

    def __init__(self, mode: str = OK, slow_seconds: float = 0.3,
                 decode: Decoder = zipkin_spans) -> None:
        self.mode = mode
        self.decode = decode
        self.slow_seconds = slow_seconds
        self.closing = threading.Event()
        self.lock = threading.Lock()
        self.spans: list[dict[str, Any]] = []
        self.rejected = 0
        self._server: _ReceiverServer | None = None
        self.port = free_port()  # nothing listens until `listen()`: connections are refused
        if mode != REFUSE:
            self.listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v2/spans"

    def listen(self) -> None:
        server = _ReceiverServer(("127.0.0.1", self.port), _Handler)
        server.owner = self
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def set_mode(self, mode: str) -> None:
        """Change behaviour; leaving REFUSE starts listening on the same port."""
        self.mode = mode
        if mode != REFUSE and self._server is None:
            self.listen()

    def accept(self, body: bytes) -> None:
        spans = self.decode(body)
        with self.lock:
            self.spans.extend(spans)

    def paths(self) -> list[str]:
        with self.lock:
            return [span.get("tags", {}).get("http.path", "") for span in self.spans]

    def close(self) -> None:
        self.closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None


@contextmanager
def serve_wsgi(app: Any) -> Iterator[int]:
    """A threaded wsgiref server on 127.0.0.1; yields its port."""
    server = _ThreadingWSGIServer(("127.0.0.1", 0), _QuietHandler)
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_asgi(app: Any) -> Iterator[int]:
    """uvicorn on its own thread and event loop; yields its port."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def plain_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


async def plain_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class Client:
    """One keep-alive connection; `get` returns the wall time of a whole request."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self, path: str) -> float:
        start = time.perf_counter()
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        return time.perf_counter() - start

    def close(self) -> None:
        self.connection.close()
