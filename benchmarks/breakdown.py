"""Where a variant's time goes: CPU per thread, and the instrumentation's functions by self time."""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import threading
import time
from dataclasses import dataclass

from inprocess import drive
from pinning import children, pinned, stat_fields
from variants import build

HELPERS = "export helper processes"  # not a thread: their CPU is spent beside the server's


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of every live Python thread, by thread name (per-thread CPU clocks)."""
    cpu: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            clock = time.pthread_getcpuclockid(thread.ident)
            spent = time.clock_gettime(clock)
        except (OSError, ProcessLookupError):
            continue  # the thread ended meanwhile
        cpu[thread.name] = cpu.get(thread.name, 0.0) + spent
    return cpu


def _helper_cpu() -> float:
    """CPU seconds of this process's export helper processes (`export_process`), receivers not."""
    ticks = os.sysconf("SC_CLK_TCK")
    spent = 0.0
    for pid in children(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"gatescope.offload" not in cmdline.read():
                    continue
        except OSError:
            continue  # ended meanwhile
        fields = stat_fields(pid)
        if fields is not None:
            spent += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return spent


@dataclass
class ThreadSplit:
    """µs of CPU per request on each thread that used any, plus wall µs per request."""

    scenario: str
    variant: str
    wall_us: float
    cpu_us: dict[str, float]


def thread_split(scenario: str, variant: str, requests: int) -> ThreadSplit:
    """Run `requests` in process and charge every thread's CPU to them (workers drained first)."""
    built = build(scenario, variant)
    loop = asyncio.new_event_loop()
    try:
        with pinned():
            loop.run_until_complete(drive(built.app, min(requests, 500)))
            time.sleep(0.3)  # let the export workers catch up with the warm-up
            before = _thread_cpu()
            before[HELPERS] = _helper_cpu()
            wall = loop.run_until_complete(drive(built.app, requests))
            time.sleep(0.5)  # and with the measured requests
            after = _thread_cpu()
            after[HELPERS] = _helper_cpu()
    finally:
        built.close()
        loop.close()
    spent = {name: (after[name] - before.get(name, 0.0)) / requests * 1e6 for name in after}
    return ThreadSplit(scenario, variant, wall, {k: v for k, v in spent.items() if v > 0})


@dataclass
class FunctionCost:
    """One function's self time per request under cProfile (inflated alike for every row)."""

    function: str
    calls_per_request: float
    self_us: float


def top_functions(scenario: str, variant: str, requests: int, limit: int = 12,
                  match: str = "gatescope") -> list[FunctionCost]:
    """The `limit` functions from files matching `match` with the most self time per request."""
    built = build(scenario, variant)
    loop = asyncio.new_event_loop()
    try:
        with pinned():
            loop.run_until_complete(drive(built.app, min(requests, 500)))
            profiler = cProfile.Profile()
            profiler.enable()
            loop.run_until_complete(drive(built.app, requests))
            profiler.disable()
    finally:
        built.close()
        loop.close()
    rows = []
    for (path, line, name), (_, calls, self_s, _, _) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        if match in path:
            short = path.split("/src/", 1)[-1]
            rows.append(FunctionCost(f"{short}:{line}({name})", calls / requests,
                                     self_s / requests * 1e6))
    rows.sort(key=lambda row: -row.self_us)
    return rows[:limit]
