"""Aggregation costs: per-record cost by tag-set count, /metrics rendering, RSS under random paths."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from exportbench import _rss_kib
from gatescope.runtime import Telemetry
from gatescope.stats import Stats, TagOptions
from gatescope_prometheus.server import gzipped
from gatescope_prometheus.text import TextRenderer
from inprocess import _receive, _Send, scope_for


@dataclass
class RecordRow:
    tag_sets: int
    us_per_record: float
    us_per_record_multiprocess: float  # rows in this process's shared file (GATESCOPE_MULTIPROC_DIR)


def record_cost(tag_sets: int, records: int) -> RecordRow:
    """µs per `server.record` cycling over `tag_sets` distinct paths (all of them kept), with
    rows in memory and with rows in a multi-process file."""
    with tempfile.TemporaryDirectory() as directory:
        return RecordRow(tag_sets, _record_cost(tag_sets, records, None),
                         _record_cost(tag_sets, records, directory))


def _record_cost(tag_sets: int, records: int, multiprocess_dir: str | None) -> float:
    stats = Stats(TagOptions(path=True, method=True, status=True), max_tag_sets=tag_sets + 10,
                  multiprocess_dir=multiprocess_dir)
    record = stats.server.record
    paths = [f"/items/{i}" for i in range(tag_sets)]
    for path in paths:
        record("", path, "GET", "200", 0, 120, 1.5)
    rounds = max(1, records // tag_sets)
    samples = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(rounds):
            for path in paths:
                record("", path, "GET", "200", 0, 120, 1.5)
        samples.append((time.perf_counter_ns() - start) / (rounds * tag_sets) / 1000)
    rows = stats.snapshot().view("opencensus.io/http/server/request_count_by_method").rows
    if len(rows) != tag_sets or sum(rows.values()) != tag_sets * (1 + 5 * rounds):
        raise RuntimeError("records were lost")
    return statistics.median(samples)


@dataclass
class ScrapeRow:
    rows: str  # "memory", or "multi-process" (rows in a shared file, read back)
    files: int  # worker files summed (multi-process): this one, plus copies standing for others
    changed: bool  # every row changed since the last scrape (else none did)
    ms: float  # the snapshot and the text body's pieces: what the server holds the GIL for
    gzip_ms: float  # then gzip level 1, piece by piece (zlib lets go of the GIL meanwhile)
    body_mib: float


def scrape_ms(tag_sets: int = 1000, repeats: int = 20, multiprocess: bool = False,
              changed: bool = False, files: int = 1) -> ScrapeRow:
    """Median ms to snapshot and render every view as Prometheus text with `tag_sets` server and
    `tag_sets` client paths, as `/metrics` builds its body (`changed`: one more record per tag
    set, a different latency each time, before every scrape, so no row's text can be reused;
    `files`, multi-process: the worker file is summed with `files - 1` copies of itself, as the
    files of other workers that saw the same paths)."""
    if multiprocess:
        with tempfile.TemporaryDirectory() as directory:
            return _scrape_ms(tag_sets, repeats, directory, changed, files)
    return _scrape_ms(tag_sets, repeats, None, changed, 1)


def scrape_ms_fresh(tag_sets: int = 1000, repeats: int = 20, multiprocess: bool = False,
                    changed: bool = False, files: int = 1) -> ScrapeRow:
    """`scrape_ms` in a fresh interpreter (same CPU placement), so that neither the heap nor the
    collector's work left by earlier measurements is counted, and its caches leave none behind."""
    code = ("import json, dataclasses, statsbench; print(json.dumps(dataclasses.asdict("
            f"statsbench.scrape_ms({tag_sets}, {repeats}, {multiprocess}, {changed}, {files}))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(__file__),
                            capture_output=True, text=True, check=True, timeout=600)
    return ScrapeRow(**json.loads(result.stdout.splitlines()[-1]))


def _scrape_ms(tag_sets: int, repeats: int, multiprocess_dir: str | None,
               changed: bool, files: int) -> ScrapeRow:
    stats = Stats(TagOptions(path=True, method=True, status=True), max_tag_sets=tag_sets + 10,
                  multiprocess_dir=multiprocess_dir)

    def record(shift: int) -> None:
        for i in range(tag_sets):
            latency = 1.5 + (i + shift) % 50
            stats.server.record("", f"/items/{i}", "GET", "200", 10, 120, latency)
            stats.client.record("", f"/up/{i}", "GET", "200", 10, 120, latency)

    record(0)
    if multiprocess_dir is not None and stats.store is not None:
        stats.folded()  # folds what is queued: the copies hold rows, not ring entries
        for copy in range(files - 1):  # names without a pid: read as live workers' files
            shutil.copy(stats.store.path, os.path.join(multiprocess_dir, f"w{copy}-copy.gsdb"))
    renderer = TextRenderer("krakend")
    renderer.pieces(stats.snapshot())  # the first scrape builds every row's template
    samples, zipped = [], []
    for repeat in range(repeats):
        if changed:
            record(repeat + 1)
        start = time.perf_counter_ns()
        pieces = renderer.pieces(stats.snapshot())
        middle = time.perf_counter_ns()
        gzipped(pieces)
        samples.append((middle - start) / 1e6)
        zipped.append((time.perf_counter_ns() - middle) / 1e6)
    body = b"".join(pieces)
    if body.count(f"http_path=\"/items/{tag_sets - 1}\"".encode()) < 1:
        raise RuntimeError("the rendering lacks rows")
    return ScrapeRow("multi-process" if multiprocess_dir else "memory", files, changed,
                     statistics.median(samples), statistics.median(zipped), len(body) / 2**20)


@dataclass
class RssRow:
    requests: int
    rss_mib: float
    rows: int
    folded: int


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def rss_under_random_paths(total: int, checkpoints: int = 4) -> list[RssRow]:
    """RSS while `total` requests with random paths pass the router (tag_path on, aggregation off)."""
    document = {"version": 3, "name": "bench", "endpoints": [{
        "endpoint": "/items/{id}", "extra_config": {"telemetry/opencensus": {
            "path_aggregation": "off"}}}],
        "extra_config": {"telemetry/opencensus": {"sample_rate": 0, "exporters": {
            "prometheus": {"port": 0, "listen_ip": "127.0.0.1", "tag_path": True}}}}}
    telemetry = Telemetry.from_dict(document)
    app = telemetry.asgi(_answer)
    rand = random.Random(8).getrandbits
    send = _Send()
    out = []

    async def drive(count: int) -> None:
        for _ in range(count):
            await app(scope_for(f"/items/{rand(64):x}"), _receive, send)

    loop = asyncio.new_event_loop()
    try:
        step = total // checkpoints
        for done in range(step, total + 1, step):
            loop.run_until_complete(drive(step))
            rows = telemetry.metrics().view("opencensus.io/http/server/request_count").rows
            out.append(RssRow(done, _rss_kib() / 1024, len(rows),
                              sum(telemetry.stats.folded().values())))
    finally:
        loop.close()
        telemetry.shutdown(5)
    return out
