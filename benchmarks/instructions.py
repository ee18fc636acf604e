"""Instructions and first-level data-cache misses per request under valgrind's cachegrind, and
garbage collections per request: counts the host's load cannot move, for A/B work on a noisy
machine.

`python benchmarks/instructions.py [router|gateway ...]`. Each variant runs in a fresh interpreter
(PYTHONHASHSEED=0) twice, for `first` and for `second` requests after the same warm-up; the
difference over `second - first` requests is what one request costs, start-up and warm-up
cancelled out. Instructions are not time (cache misses and branches differ), but a change that
removes instructions from the request path shows here at once, where timings need many
interleaved rounds on a calm host. The misses are cachegrind's simulation of a fixed level-1 data
cache (`D1_CACHE`, the size of this host's), so they are the same on any machine: a request that
touches more memory pays for it in time beyond its instructions, and that shows here.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = ("bare", "floor", "prometheus_client", "gatescope-0", "gatescope-100-unexported",
            "gatescope-100", "gatescope-100-process")
WARMUP = 300
# Requests measured per scenario: (first, second) of a full run, and of a smoke run.
REQUESTS = {"router": ((2_000, 12_000), (5, 10)), "gateway": ((500, 2_500), (5, 10))}
# Requests whose collections are counted, at full speed (under valgrind the export threads'
# timers span ~50x fewer requests, so fewer spans live long enough to be collected): a
# generation-2 run comes every few thousand requests at most.
GC_REQUESTS = {"router": (40_000, 10), "gateway": (10_000, 10)}
# Cachegrind's level-1 data cache, fixed (size, associativity, line size): 32 KiB, 8-way, 64-byte
# lines, as on this host's cores; the default would take whatever the host has.
D1_CACHE = "32768,8,64"
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
_D1_MISSES = re.compile(r"D1\s+misses:\s+([\d,]+)")


@dataclass
class Row:
    """One variant: instructions and D1 misses per request, and collections per 1,000 requests
    by generation."""

    scenario: str
    variant: str
    instructions: float | None  # None: valgrind is not installed
    ratio: float | None  # instructions over bare's
    collections: tuple[float, float, float]
    d1_misses: float | None = None  # level-1 data-cache misses, reads and writes


def valgrind_path() -> str | None:
    return shutil.which("valgrind")


def _child(scenario: str, variant: str, requests: int) -> None:
    """Warm up, drive `requests` requests, print the collections they caused as JSON."""
    sys.path.insert(0, str(HERE))
    from inprocess import drive
    from variants import build

    built = build(scenario, variant)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(drive(built.app, WARMUP))
        before = [generation["collections"] for generation in gc.get_stats()]
        if requests:
            loop.run_until_complete(drive(built.app, requests))
        after = [generation["collections"] for generation in gc.get_stats()]
    finally:
        built.close()
        loop.close()
    print(json.dumps([a - b for a, b in zip(after, before, strict=True)]))


def _count(pattern: re.Pattern[str], summary: str) -> int:
    found = pattern.search(summary)
    if found is None:
        raise RuntimeError(f"no {pattern.pattern!r} in valgrind's output: {summary[-2000:]}")
    return int(found.group(1).replace(",", ""))


def _run(scenario: str, variant: str, requests: int,
         valgrind: str | None) -> tuple[tuple[int, int] | None, list[int]]:
    """((instructions, D1 misses), collections by generation) of one child run (None: not under
    valgrind)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", scenario, variant,
               str(requests)]
    if valgrind is not None:
        command = [valgrind, "--tool=cachegrind", "--cache-sim=yes", f"--D1={D1_CACHE}",
                   "--cachegrind-out-file=/dev/null", *command]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{scenario} {variant} ({requests} requests) failed: "
                           f"{done.stderr[-2000:]}")
    collections = json.loads(done.stdout.strip().splitlines()[-1])
    if valgrind is None:
        return None, collections
    return (_count(_REFS, done.stderr), _count(_D1_MISSES, done.stderr)), collections


def count_instructions(scenario: str, variant: str, first: int, second: int,
                       valgrind: str) -> tuple[float, float]:
    """Instructions and D1 misses per request: the difference of two runs over their difference
    in requests."""
    low, _ = _run(scenario, variant, first, valgrind)
    high, _ = _run(scenario, variant, second, valgrind)
    assert low is not None and high is not None
    requests = second - first
    return (high[0] - low[0]) / requests, (high[1] - low[1]) / requests


def count_collections(scenario: str, variant: str,
                      requests: int) -> tuple[float, float, float]:
    """Collections per 1,000 requests by generation, at full speed, warm-up left out."""
    _, counted = _run(scenario, variant, requests, None)
    return (counted[0] * 1000 / requests, counted[1] * 1000 / requests,
            counted[2] * 1000 / requests)


def measure(scenario: str, variant: str, smoke: bool,
            valgrind: str | None) -> tuple[tuple[float, float] | None, tuple[float, float, float]]:
    first, second = REQUESTS[scenario][1 if smoke else 0]
    counts = None if valgrind is None else \
        count_instructions(scenario, variant, first, second, valgrind)
    return counts, count_collections(scenario, variant, GC_REQUESTS[scenario][1 if smoke else 0])


def run(scenarios: tuple[str, ...] = ("router", "gateway"), smoke: bool = False,
        variants: tuple[str, ...] = VARIANTS, jobs: int = 2) -> list[Row]:
    """Every variant of every scenario, `jobs` child runs at a time (counts do not mind load);
    a smoke run counts collections only (valgrind starts an interpreter in ~8 s)."""
    valgrind = None if smoke else valgrind_path()
    tasks = [(scenario, variant) for scenario in scenarios for variant in variants]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        counted = list(pool.map(lambda task: measure(*task, smoke, valgrind), tasks))
    bare = {scenario: counts[0] for (scenario, variant), (counts, _) in
            zip(tasks, counted, strict=True) if variant == "bare" and counts is not None}
    rows = []
    for (scenario, variant), (counts, collections) in zip(tasks, counted, strict=True):
        base = bare.get(scenario)
        instructions, misses = (None, None) if counts is None else counts
        ratio = instructions / base if instructions is not None and base else None
        rows.append(Row(scenario, variant, instructions, ratio, collections, misses))
    return rows


def table(rows: list[Row]) -> list[str]:
    """Markdown rows: instructions, their ratio to bare, the overhead's share of prometheus_client's,
    D1 misses."""
    lines = ["| scenario | variant | instructions/request | ratio to bare | overhead / "
             "prometheus_client's | D1 misses/request | collections per 1,000 requests "
             "(gen 0, 1, 2) |",
             "|---|---|---:|---:|---:|---:|---|"]
    bare = {row.scenario: row.instructions for row in rows if row.variant == "bare"}
    prometheus = {row.scenario: row.instructions for row in rows
                  if row.variant == "prometheus_client"}
    for row in rows:
        base, reference = bare.get(row.scenario), prometheus.get(row.scenario)
        share = ""
        if row.instructions is not None and base and reference and reference != base:
            share = f"{(row.instructions - base) / (reference - base):.3f}"
        count = "" if row.instructions is None else f"{row.instructions:,.0f}"
        ratio = "" if row.ratio is None else f"{row.ratio:.3f}"
        misses = "" if row.d1_misses is None else f"{row.d1_misses:,.0f}"
        collections = ", ".join(f"{value:.2f}" for value in row.collections)
        lines.append(f"| {row.scenario} | {row.variant} | {count} | {ratio} | {share} | "
                     f"{misses} | {collections} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=["router", "gateway"])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        scenario, variant, requests = args.child
        _child(scenario, variant, int(requests))
        return
    if valgrind_path() is None:
        print("valgrind is not installed (apt-get install valgrind): collections only")
    print("\n".join(table(run(tuple(args.scenarios), args.smoke))))


if __name__ == "__main__":
    main()
