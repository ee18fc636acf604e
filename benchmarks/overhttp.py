"""Over HTTP: a fresh uvicorn process per variant and round, loaded by wrk in interleaved rounds."""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inprocess import rotations
from pinning import place_server, to_the_others

HERE = Path(__file__).resolve().parent
_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
_ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*")


@dataclass
class HttpRow:
    """One variant's throughput: median requests/s and the per-round ratio to bare."""

    scenario: str
    variant: str
    rps: float
    ratio: float
    ratio_min: float
    ratio_max: float
    rounds: int


def wrk_path() -> str | None:
    return shutil.which("wrk")


class Server:
    """A `serve.py` process; `url` answers once it is up."""

    def __init__(self, scenario: str, variant: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "serve.py"), scenario, variant],
            stdout=subprocess.PIPE, text=True, cwd=HERE, start_new_session=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.close()
            raise RuntimeError(f"{variant} ({scenario}) did not start: {line!r}")
        self.url = f"http://127.0.0.1:{line}/users/7"
        place_server(self.process.pid)  # its sink and helper processes are up by now
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def load(url: str, seconds: float, connections: int) -> float:
    """wrk's requests/s for one bounded run; fails on any non-2xx answer or socket error."""
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, timeout=seconds + 30, check=True, preexec_fn=to_the_others)
    match = _RATE.search(result.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no rate: {result.stdout!r}")
    for problem in _ERRORS.finditer(result.stdout):
        raise RuntimeError(f"wrk saw errors against {url}: {problem.group(0)}")
    return float(match.group(1))


def run(scenario: str, names: Sequence[str], seconds: float, rounds: int,
        connections: int = 8) -> list[HttpRow]:
    """Every round starts a fresh server per variant: two processes running the same code differ
    by a few percent in throughput (bare: 14.7k-15.4k requests/s across six), so one process per
    variant for the whole run would fix that offset into every round's ratio."""
    rates: dict[str, list[float]] = {name: [] for name in names}
    for order in rotations(list(names), rounds):
        for name in order:
            server = Server(scenario, name)
            try:
                load(server.url, 1, connections)  # warm-up
                rates[name].append(load(server.url, seconds, connections))
            finally:
                server.close()
    bare = rates["bare"]
    rows = []
    for name, samples in rates.items():
        ratios = [s / b for s, b in zip(samples, bare, strict=True)]
        rows.append(HttpRow(scenario, name, statistics.median(samples), statistics.median(ratios),
                            min(ratios), max(ratios), len(samples)))
    return rows
