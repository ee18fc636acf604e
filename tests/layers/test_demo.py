"""Smoke test: the demo gateway starts on free ports and answers a merged response."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from gatescope.testing import free_port

DEMO = Path(__file__).resolve().parents[2] / "examples" / "gateway" / "demo.py"


def test_demo_serves_a_merged_response() -> None:
    process = subprocess.Popen(
        [sys.executable, str(DEMO), "--port", "0", "--metrics-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        url = None
        deadline = time.monotonic() + 30
        lines = []
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            match = re.search(r"gateway on (http://127\.0\.0\.1:\d+)", line)
            url = match.group(1) if match else None
            assert line or process.poll() is None, "".join(lines)
        assert url is not None, "".join(lines)
        response = httpx.get(url + "/users/7", timeout=10)
        assert response.status_code == 200
        assert response.headers["x-krakend-completed"] == "true"
        body = response.json()
        assert body["user"] == {"id": "7", "name": "user 7"}
        assert [p["author"] for p in body["posts"]] == ["7", "7"]
        failing = httpx.get(url + "/status/503", timeout=10)
        assert failing.headers["x-krakend-completed"] == "false"
    finally:
        process.terminate()
        process.wait(timeout=15)
