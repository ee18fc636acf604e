"""The export worker's sustained spans/s per trace exporter, and its memory while doing it."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Any

from gatescope.runtime import Telemetry
from gatescope.spans import KIND_SERVER
from gatescope.tracing import Span
from pinning import pinned
from sinks import Sink


@dataclass
class ExportRow:
    exporter: str
    spans: int
    spans_per_s: float
    us_per_span: float
    dropped: int
    rss_growth_kib: int


def _rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


def _exporter(name: str, port: int) -> dict[str, Any]:
    if name == "jaeger":
        return {"service_name": "bench", "agent_endpoint": f"127.0.0.1:{port}"}
    return {"service_name": "bench", "collector_url": f"http://127.0.0.1:{port}/api/v2/spans"}


def run(name: str, spans: int, chunk: int = 5000) -> ExportRow:
    """Hand `spans` router-shaped spans over in chunks the queue holds; time hand-over + drain."""
    sink = Sink("udp" if name == "jaeger" else "http")
    document = {"version": 3, "name": "bench", "extra_config": {"telemetry/opencensus": {
        "sample_rate": 100, "exporters": {name: _exporter(name, sink.port)}}}}
    telemetry = Telemetry.from_dict(document)
    try:
        with pinned():  # this process (its export worker too) on one CPU, the receiver beside
            measured = _drive(name, telemetry, spans, chunk)
    finally:
        telemetry.shutdown(10)
        sink.close()
    return ExportRow(name, spans, *measured)


def _drive(name: str, telemetry: Any, spans: int, chunk: int) -> tuple[float, float, int, int]:
    """(spans/s, µs per span, spans lost, RSS growth KiB) for `spans` handed over in chunks."""
    tracer = telemetry.tracer
    rss_before = 0
    elapsed = 0.0
    done = 0
    while done < spans:
        batch = []
        for _ in range(min(chunk, spans - done)):
            span = tracer.start_root("/users/{id}", KIND_SERVER, None)
            if not isinstance(span, Span):
                raise RuntimeError("sample_rate 100 did not sample")
            attributes = span.attributes
            attributes["http.path"] = "/users/7"
            attributes["http.url"] = "/users/7?full=1"
            attributes["http.host"] = "api.example.com"
            attributes["http.method"] = "GET"
            attributes["http.user_agent"] = "bench/1.0"
            span.set_http_status(200)
            batch.append(span)
        start = time.perf_counter()  # timed: handing over and the worker draining them
        for span in batch:
            span.end()
        if not telemetry.flush(60):
            raise RuntimeError(f"{name}: the export worker did not drain in 60 s")
        elapsed += time.perf_counter() - start
        done += len(batch)
        if not rss_before:
            rss_before = _rss_kib()  # after the first chunk: buffers and encoders are warm
    pipeline = telemetry.pipeline
    dropped = pipeline.dropped + sum(worker.failed for worker in pipeline.workers)
    exported = sum(worker.exported for worker in pipeline.workers)
    if exported + dropped != spans:
        raise RuntimeError(f"{name}: {exported} exported + {dropped} lost != {spans} spans")
    growth = _rss_kib() - rss_before
    return spans / elapsed, elapsed / spans * 1e6, dropped, growth
