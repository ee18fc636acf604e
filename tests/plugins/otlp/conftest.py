"""Datadog's ddapm-test-agent as a real OTLP receiver (HTTP and gRPC) that tests can read back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gatescope.testing import stop_process

REPO = Path(__file__).resolve().parents[3]
AGENT = REPO / ".peers" / "ddapm-test-agent" / "bin" / "ddapm-test-agent"
TOKEN_HEADER = "X-Datadog-Test-Session-Token"


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (the agent takes ports, not port 0)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class DdapmAgent:
    """A running ddapm-test-agent; each test reads back only what carried its session token."""

    def __init__(self, http_port: int, grpc_port: int) -> None:
        self.http_port = http_port
        self.grpc_port = grpc_port

    def endpoint(self, protocol: str) -> str:
        port = self.grpc_port if protocol == "grpc" else self.http_port
        return f"http://127.0.0.1:{port}"

    def session(self) -> str:
        return uuid.uuid4().hex

    def read(self, kind: str, token: str) -> list[dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/test/session/{kind}", headers={TOKEN_HEADER: token})
        with urllib.request.urlopen(request, timeout=5) as reply:
            result: list[dict[str, Any]] = json.loads(reply.read())
            return result

    def wait_for(self, kind: str, token: str, count: int = 1,
                 timeout: float = 10.0) -> list[dict[str, Any]]:
        """The export requests received so far (gRPC ones arrive through the agent's relay)."""
        deadline = time.monotonic() + timeout
        while True:
            payloads = self.read(kind, token)
            if len(payloads) >= count or time.monotonic() > deadline:
                return payloads
            time.sleep(0.05)


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the receiver is required)")
    pytest.skip(f"{reason}; run `make peers` to build .peers/ddapm-test-agent")


@pytest.fixture(scope="module")
def test_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DdapmAgent]:
    if not AGENT.exists():
        _missing(f"ddapm-test-agent not found at {AGENT}")
    apm_port, http_port, grpc_port = free_ports(3)
    log = tmp_path_factory.mktemp("ddapm") / "agent.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(AGENT), "--host", "127.0.0.1", f"--port={apm_port}",
             f"--otlp-http-port={http_port}", f"--otlp-grpc-port={grpc_port}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path_factory.mktemp("ddapm-cwd"),
        )
    agent = DdapmAgent(http_port, grpc_port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                agent.read("traces", "readiness")
                with socket.create_connection(("127.0.0.1", grpc_port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"ddapm-test-agent did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield agent
    finally:
        stop_process(process)
