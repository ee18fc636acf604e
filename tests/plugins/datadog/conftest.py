"""Datadog's own `ddapm-test-agent` (its own venv under .peers/) on free ports, trace checks on."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gatescope.testing import free_port, stop_process

REPO = Path(__file__).resolve().parents[3]
AGENT_BIN = REPO / ".peers" / "ddapm-test-agent" / "bin" / "ddapm-test-agent"
CHECKS = ("trace_count_header", "meta_tracer_version_header", "trace_content_length")
INSTALL_HINT = "build it with `make peers` (peers/ddapm-test-agent.txt)"


class TestAgent:
    """The running test agent: its trace port and its `/test/...` API."""

    __test__ = False  # not a test class
    checks = CHECKS

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    def get(self, path: str, token: str | None) -> tuple[int, Any]:
        separator = "&" if "?" in path else "?"
        query = f"{separator}test_session_token={token}" if token else ""
        request = urllib.request.Request(f"{self.url}{path}{query}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, body.decode("utf-8", "replace")

    def start_session(self, token: str) -> None:
        status, _ = self.get("/test/session/start", token)
        assert status == 200

    def traces(self, token: str) -> list[list[dict[str, Any]]]:
        status, traces = self.get("/test/session/traces", token)
        assert status == 200, traces
        return list(traces)


@pytest.fixture(scope="session")
def dd_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestAgent]:
    if not AGENT_BIN.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"ddapm-test-agent not found at {AGENT_BIN}: {INSTALL_HINT}")
        pytest.skip(f"ddapm-test-agent not found at {AGENT_BIN}: {INSTALL_HINT}")
    root = tmp_path_factory.mktemp("ddapm")
    port = free_port()
    log_path = root / "agent.log"
    command = [str(AGENT_BIN), "--host", "127.0.0.1", "--port", str(port),
               "--otlp-http-port", str(free_port()), "--otlp-grpc-port", str(free_port()),
               "--snapshot-dir", str(root / "snapshots")]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DD_")}
    # The agent's --enabled-checks flag cannot parse a list (argparse type=List[str]); its
    # ENABLED_CHECKS variable is the documented way.
    environment["ENABLED_CHECKS"] = ",".join(CHECKS)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                                   env=environment)
    agent = TestAgent(port, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"ddapm-test-agent exited:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{agent.url}/info", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ddapm-test-agent not up:\n{log_path.read_text()[-3000:]}") from None
                time.sleep(0.1)
        yield agent
    finally:
        stop_process(process)
