"""Local receivers in their own processes, so their work is never charged to the process measured."""

from __future__ import annotations

import multiprocessing
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _udp(conn: Any) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    conn.send(sock.getsockname()[1])
    while True:
        sock.recv(65536)


class _Accept(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet: a benchmark sink."""


def _http(conn: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    conn.send(server.server_address[1])
    server.serve_forever()


class Sink:
    """A receiver process (`kind` "udp" or "http") on 127.0.0.1; `port` is where it listens."""

    def __init__(self, kind: str) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        target = _udp if kind == "udp" else _http
        self.process = context.Process(target=target, args=(child,), daemon=True)
        self.process.start()
        if not parent.poll(30):
            self.process.kill()
            raise RuntimeError(f"the {kind} sink did not start")
        self.port: int = parent.recv()

    def close(self) -> None:
        self.process.kill()
        self.process.join(5)
