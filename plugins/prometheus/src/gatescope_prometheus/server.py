"""A small HTTP server that serves only /metrics, with a header deadline and a connection cap."""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from gatescope import RateLimitedLog

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = "/metrics"

log = logging.getLogger("gatescope.exporter.prometheus")


class _DeadlineReader(io.RawIOBase):
    """Socket reads that all share one deadline, so drip-fed headers cannot hold a thread."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request headers not received in time")
        self._sock.settimeout(remaining)
        return self._sock.recv_into(buffer)


def gzipped(pieces: Sequence[bytes]) -> list[bytes]:
    """`pieces` as one gzip member (level 1: a scrape compresses ~35x even so), piece by piece."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: gzip header and trailer
    out = [compressor.compress(piece) for piece in pieces]
    out.append(compressor.flush())
    return [part for part in out if part]


class MetricsHandler(BaseHTTPRequestHandler):
    """GET/HEAD /metrics renders a scrape; every other path is 404."""

    server: MetricsServer
    protocol_version = "HTTP/1.0"  # one request per connection: nothing idles on a thread

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.read_timeout)  # bounds writes to a stalled client
        deadline = time.monotonic() + self.server.read_timeout
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _serve(self, send_body: bool) -> None:
        self.connection.settimeout(self.server.read_timeout)  # headers are in: a write deadline
        if urlsplit(self.path).path != METRICS_PATH:
            self._reply(404, [b"404 page not found\n"], "text/plain; charset=utf-8", send_body)
            return
        try:
            body = self.server.render()
        except Exception as exc:  # a failing collector must give a 500, not a dropped socket
            self.server.warn.warning("render", "gatescope: prometheus scrape failed: %s: %s",
                                     type(exc).__name__, exc)
            self._reply(500, [b"scrape failed\n"], "text/plain; charset=utf-8", send_body)
            return
        encoding = None
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzipped(body)
            encoding = "gzip"
        self._reply(200, body, CONTENT_TYPE, send_body, encoding)

    def _reply(self, status: int, body: Sequence[bytes], content_type: str, send_body: bool,
               encoding: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(sum(map(len, body))))
        self.end_headers()
        if send_body:
            self.wfile.writelines(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # scrapes are not worth a log line each


class MetricsServer(ThreadingHTTPServer):
    """Threaded server with a cap on concurrent connections (extra ones are closed at once)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], render: Callable[[], Sequence[bytes]],
                 read_timeout: float, max_connections: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.render = render
        self.read_timeout = read_timeout
        self.warn = RateLimitedLog(log)
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, MetricsHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.warn.warning("busy", "gatescope: prometheus endpoint at its connection limit; "
                              "closing a connection")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("gatescope: prometheus connection from %s failed", client_address, exc_info=True)
