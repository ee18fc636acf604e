"""In-process ASGI benchmark: synthetic scope/receive/send, variants interleaved round by round."""

from __future__ import annotations

import asyncio
import gc
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

from pinning import pinned
from variants import Variant, build

_REQUEST = {"type": "http.request", "body": b"", "more_body": False}


def scope_for(path: str = "/users/7") -> dict[str, Any]:
    """A fresh scope like uvicorn's (the app and Starlette write into it)."""
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "scheme": "http",
        "method": "GET", "root_path": "", "path": path, "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1.0"),
                    (b"accept", b"*/*")],
    }


async def _receive() -> dict[str, Any]:
    return _REQUEST


class _Send:
    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def drive(app: Any, iterations: int) -> float:
    """µs per request over `iterations` sequential requests; fails if a response is not 200."""
    send = _Send()
    start = perf_counter_ns()
    for _ in range(iterations):
        await app(scope_for(), _receive, send)
    elapsed = perf_counter_ns() - start
    if send.status != 200:
        raise RuntimeError(f"the app answered {send.status}, not 200")
    return elapsed / iterations / 1000


@dataclass
class Row:
    """One variant's result: medians and the per-round ratio to bare."""

    scenario: str
    variant: str
    median_us: float
    overhead_us: float
    ratio: float
    ratio_min: float
    ratio_max: float
    rounds: int


def rotations(names: Sequence[str], rounds: int) -> list[list[str]]:
    """Round r runs the variants rotated by r: A B C, B C A, C A B, ..."""
    return [list(names[r % len(names):]) + list(names[:r % len(names)]) for r in range(rounds)]


def run(scenario: str, names: Sequence[str], iterations: int, rounds: int,
        warmup: int = 200) -> list[Row]:
    """Run every variant of `scenario` interleaved; bare must be one of `names`."""
    variants: dict[str, Variant] = {name: build(scenario, name) for name in names}
    loop = asyncio.new_event_loop()
    try:
        with pinned():
            for variant in variants.values():
                loop.run_until_complete(drive(variant.app, warmup))
            times: dict[str, list[float]] = {name: [] for name in names}
            for order in rotations(list(names), rounds):
                for name in order:
                    gc.collect()
                    times[name].append(loop.run_until_complete(drive(variants[name].app,
                                                                     iterations)))
    finally:
        for variant in variants.values():
            variant.close()
        loop.close()
    return summarize(scenario, times)


def summarize(scenario: str, times: dict[str, list[float]]) -> list[Row]:
    bare = times["bare"]
    bare_median = statistics.median(bare)
    rows = []
    for name, samples in times.items():
        ratios = [s / b for s, b in zip(samples, bare, strict=True)]
        median = statistics.median(samples)
        rows.append(Row(scenario, name, median, median - bare_median, statistics.median(ratios),
                        min(ratios), max(ratios), len(samples)))
    return rows
