"""Local receivers in their own processes, so their work is never charged to the process measured."""

from __future__ import annotations

import socket
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _udp() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
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


def _http() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    print(server.server_address[1], flush=True)
    server.serve_forever()


class Sink:
    """A receiver process (`kind` "udp" or "http") on 127.0.0.1; `port` is where it listens."""

    def __init__(self, kind: str) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, kind], stdout=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.close()
            raise RuntimeError(f"the {kind} sink did not start: {line!r}")
        self.port = int(line)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(5)


if __name__ == "__main__":
    _udp() if sys.argv[1] == "udp" else _http()
