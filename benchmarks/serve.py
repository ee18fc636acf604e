"""Serve one variant with uvicorn (1 worker, uvloop + httptools); prints the bound port."""

from __future__ import annotations

import socket
import sys

import uvicorn
from variants import build


def main(scenario: str, variant: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    built = build(scenario, variant)
    config = uvicorn.Config(built.app, loop="uvloop", http="httptools", lifespan="off",
                            log_level="warning", access_log=False, backlog=1024)
    server = uvicorn.Server(config)
    print(sock.getsockname()[1], flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        built.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
