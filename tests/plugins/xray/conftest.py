"""A real moto X-Ray server on 127.0.0.1 (its own virtualenv under .peers/moto) for the xray tests."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gatescope import testing
from gatescope.testing import Upstream, free_port, stop_process

REPO = Path(__file__).resolve().parents[3]
MOTO_SERVER = REPO / ".peers" / "moto" / "bin" / "moto_server"
INSTALL_HINT = "build it with `make peers` (peers/moto.txt -> .peers/moto)"
REGION = "us-east-1"
ACCESS_KEY_ID = "AKIAGATESCOPETEST01"
SECRET_ACCESS_KEY = "gatescope-test-secret/Zx9+Kq"


def moto_binary() -> Path:
    if not MOTO_SERVER.exists():
        reason = f"moto server not found at {MOTO_SERVER}: {INSTALL_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return MOTO_SERVER


class MotoServer:
    """moto_server on a fixed port, so a test can stop it and bring it back on the same address."""

    def __init__(self, binary: Path, port: int) -> None:
        self.binary = binary
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> MotoServer:
        self.process = subprocess.Popen(
            [str(self.binary), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto_server did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, 5)
        self.process = None

    def client(self) -> Any:
        """An independent botocore client for reading back what the exporter sent."""
        from botocore.session import Session

        return Session().create_client(
            "xray", region_name=REGION, endpoint_url=self.endpoint,
            aws_access_key_id="reader", aws_secret_access_key="reader",
        )


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer(moto_binary(), free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def xray_section(endpoint: str, **overrides: Any) -> dict[str, Any]:
    section = {"region": REGION, "version": "KrakenD-opencensus", "access_key_id": ACCESS_KEY_ID,
               "secret_access_key": SECRET_ACCESS_KEY, "endpoint_url": endpoint}
    section.update(overrides)
    return section


ENDPOINT = "/users/{id}"
URL_PATTERN = "/u/{id}"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def three_layer_request(telemetry: Any, upstream: Upstream, path: str = "/users/42") -> int:
    """One request through the three layers to a real upstream (gatescope.testing's helper)."""
    return testing.three_layer_request(telemetry, upstream, path, endpoint=ENDPOINT,
                                       url_pattern=URL_PATTERN,
                                       headers={"user-agent": "xray-test/1"})


@pytest.fixture
def xray_helpers() -> Any:
    """This module (servers and helpers above), for tests: conftest cannot be imported."""
    import sys

    return sys.modules[__name__]
