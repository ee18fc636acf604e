"""A real InfluxDB 1.x (`influxd`) on free 127.0.0.1 ports, with authentication on, for these tests."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gatescope.testing import free_port, stop_process

ADMIN = "gatescope"
ADMIN_PASSWORD = "s3cr3t-pw"
INSTALL_HINT = "install InfluxDB 1.x: apt-get install influxdb (listed in .ci/apt/influxdb.txt)"


class InfluxServer:
    """Talks to the test's influxd with InfluxQL over HTTP `/query`."""

    user = ADMIN
    password = ADMIN_PASSWORD

    def __init__(self, url: str, log_path: Path) -> None:
        self.url = url
        self.log_path = log_path

    def query(self, q: str, db: str | None = None, *, user: str = ADMIN,
              password: str = ADMIN_PASSWORD) -> dict[str, Any]:
        params = {"q": q, **({"db": db} if db else {})}
        headers = {"Authorization": "Basic " + base64.b64encode(
            f"{user}:{password}".encode()).decode()} if user else {}
        request = urllib.request.Request(
            f"{self.url}/query?{urllib.parse.urlencode(params)}", method="POST", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        for statement in result.get("results", []):
            if "error" in statement:
                raise AssertionError(f"InfluxQL error for {q!r}: {statement['error']}")
        return result

    def rows(self, q: str, db: str) -> list[dict[str, Any]]:
        """Every row of every series as dicts (series tags merged in)."""
        out: list[dict[str, Any]] = []
        for statement in self.query(q, db)["results"]:
            for series in statement.get("series", []):
                for values in series["values"]:
                    row = dict(zip(series["columns"], values, strict=True))
                    row.update(series.get("tags") or {})
                    out.append(row)
        return out

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"influxd exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1) as response:
                if response.status == 204:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"influxd did not answer /ping in 30 s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    binary = shutil.which("influxd")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"influxd not found: {INSTALL_HINT}")
        pytest.skip(f"influxd not found: {INSTALL_HINT}")
    root = tmp_path_factory.mktemp("influxd")
    http_port, rpc_port = free_port(), free_port()
    config = root / "influxdb.conf"
    config.write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root / 'meta'}"
[data]
  dir = "{root / 'data'}"
  wal-dir = "{root / 'wal'}"
  query-log-enabled = false
[retention]
  enabled = false
[shard-precreation]
  enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = true
  log-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
""")
    log_path = root / "influxd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([binary, "run", "-config", str(config)], stdout=log,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    try:
        _wait_ready(url, process, log_path)
        server = InfluxServer(url, log_path)
        # With auth on and no users yet, InfluxDB allows exactly this: creating the first admin.
        server.query(f"CREATE USER \"{ADMIN}\" WITH PASSWORD '{ADMIN_PASSWORD}' WITH ALL PRIVILEGES",
                     user="", password="")
        yield server
    finally:
        stop_process(process)
