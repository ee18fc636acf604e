"""Aggregation costs: per-record cost by tag-set count, /metrics rendering, RSS under random paths."""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from exportbench import _rss_kib
from gatescope.runtime import Telemetry
from gatescope.stats import Stats, TagOptions
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


def render_ms(tag_sets: int = 1000, repeats: int = 20, multiprocess: bool = False) -> float:
    """Median ms to snapshot and render every view as Prometheus text with `tag_sets` paths
    (`multiprocess`: rows in a shared file, the snapshot reading it back)."""
    if multiprocess:
        with tempfile.TemporaryDirectory() as directory:
            return _render_ms(tag_sets, repeats, directory)
    return _render_ms(tag_sets, repeats, None)


def _render_ms(tag_sets: int, repeats: int, multiprocess_dir: str | None) -> float:
    stats = Stats(TagOptions(path=True, method=True, status=True), max_tag_sets=tag_sets + 10,
                  multiprocess_dir=multiprocess_dir)
    for i in range(tag_sets):
        stats.server.record("", f"/items/{i}", "GET", "200", 10, 120, 1.5 + i % 50)
        stats.client.record("", f"/up/{i}", "GET", "200", 10, 120, 1.5 + i % 50)
    renderer = TextRenderer()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        text = renderer.render(stats.snapshot())
        samples.append((time.perf_counter_ns() - start) / 1e6)
    if text.count(f"http_path=\"/items/{tag_sets - 1}\"") < 1:
        raise RuntimeError("the rendering lacks rows")
    return statistics.median(samples)


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
