"""gunicorn and uvicorn with 4 workers: one /metrics whose counts are exact, even after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gatescope.testing import free_port
from prometheus_testlib import APPS, samples, scrape, wait_http

WORKERS = 4
BIN = Path(sys.executable).parent
COUNT = "krakend_opencensus_io_http_server_request_count"


def _server_command(kind: str, port: int) -> list[str]:
    if kind == "gunicorn":
        return [str(BIN / "gunicorn"), "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
                "--chdir", str(APPS), "--log-level", "warning", "instrumented:wsgi_app"]
    return [str(BIN / "uvicorn"), "--workers", str(WORKERS), "--host", "127.0.0.1", "--port",
            str(port), "--app-dir", str(APPS), "--log-level", "warning",
            "instrumented:asgi_app"]


def _hit_until_every_worker_answered(base: str, pids: set[int], at_least: int) -> int:
    """Send requests in parallel until all workers answered; returns how many were sent."""
    sent = 0
    seen: set[int] = set()

    def one(_: int) -> int:
        with urllib.request.urlopen(base + "/x", timeout=10) as response:
            return int(response.read())

    with ThreadPoolExecutor(8) as pool:
        # N distinct workers answered: under load uvicorn's supervisor may replace a worker whose
        # health ping was slow, so a child listed earlier may be gone (or still draining).
        while sent < at_least or len(seen & pids) < WORKERS:
            seen.update(pool.map(one, range(40)))
            sent += 40
            assert sent < 4000, f"requests reached only workers {seen}, expected {pids}"
    return sent


def _worker_pids(master: int) -> set[int]:
    """Children of the server's master that are workers: not multiprocessing's resource tracker,
    and for uvicorn (spawned workers) only processes already running `spawn_main`."""
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(master)], capture_output=True,
                         text=True, check=False).stdout
    lines = [line for line in out.splitlines() if line.strip() and "resource_tracker" not in line]
    if any("spawn_main" in line for line in lines):
        lines = [line for line in lines if "spawn_main" in line]
    return {int(line.split()[0]) for line in lines}


def _wait_workers(master: int, exclude: set[int] = frozenset()) -> set[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = _worker_pids(master) - exclude
        if len(pids) >= WORKERS:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"workers did not start: {_worker_pids(master)}")


def _scrape_total(port: int, expected: int) -> float:
    deadline = time.monotonic() + 15
    value = -1.0
    while time.monotonic() < deadline:
        try:
            # Status 200 only: a readiness probe that timed out while a worker booted is
            # (rightly) recorded as 499 "client closed".
            value = sum(v for (name, labels), v in samples(scrape(port)).items()
                        if name == COUNT and labels == (("http_status", "200"),))
        except OSError:
            value = -1.0  # the serving worker was just killed; a standby takes over within 1 s
        if value == expected:
            return value
        time.sleep(0.2)
    return value


@pytest.mark.parametrize("kind", ["gunicorn", "uvicorn"])
def test_workers_share_one_exact_endpoint(kind: str, tmp_path) -> None:
    app_port, metrics_port = free_port(), free_port()
    env = {**os.environ, "GATESCOPE_MULTIPROC_DIR": str(tmp_path / "stats"),
           "GATESCOPE_TEST_PROMETHEUS": json.dumps({
               "port": metrics_port, "listen_ip": "127.0.0.1", "namespace": "krakend",
               "tag_statuscode": True})}
    server = subprocess.Popen(_server_command(kind, app_port), env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{app_port}"
    try:
        wait_http(base + "/ready", 30)
        wait_http(f"http://127.0.0.1:{metrics_port}/metrics", 15)
        first = _wait_workers(server.pid)
        sent = 1 + _hit_until_every_worker_answered(base, first, 200)  # 1: the /ready answer
        assert _scrape_total(metrics_port, sent) == sent, scrape(metrics_port)

        # Kill -9 the worker that serves /metrics and one more; both are replaced.
        serving = int((tmp_path / "stats" / f"prometheus-{metrics_port}.pid").read_text())
        victims = {serving, next(iter(first - {serving}))}
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        replaced = _wait_workers(server.pid, exclude=victims)
        sent += _hit_until_every_worker_answered(base, replaced, 120)
        assert _scrape_total(metrics_port, sent) == sent
        assert (tmp_path / "stats" / "archive.json").exists()  # the dead workers' rows
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)
