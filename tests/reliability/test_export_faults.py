"""A refusing, hung, failing or slow trace receiver never slows requests, never grows memory,
never floods the log, counts every span it costs, and export resumes when the receiver returns."""

from __future__ import annotations

import logging
import math
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from gatescope import pipeline
from gatescope.config import NAMESPACE
from gatescope.testing import wait_for

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: reach the sibling helper module
from faulty_receiver import (
    ERROR_500,
    HANG,
    OK,
    REFUSE,
    SLOW,
    Client,
    Receiver,
    jaeger_spans,
    plain_asgi,
    plain_wsgi,
    serve_asgi,
    serve_wsgi,
    zipkin_spans,
)

QUEUE_SIZE = 40
BATCH_SIZE = 10
WARMUP = 20
PAIRS = 150  # interleaved requests: one to the app exporting to the faulty receiver, one without
LOG_INTERVAL = 10.0  # RateLimitedLog's interval in the core and in the zipkin exporter


def document(exporters: dict[str, Any], export_timeout: str) -> dict[str, Any]:
    return {"version": 3, "extra_config": {NAMESPACE: {
        "sample_rate": 100, "exporters": exporters, "queue_size": QUEUE_SIZE,
        "batch_size": BATCH_SIZE, "export_timeout": export_timeout}}}


class BoundWatch:
    """Samples the span queue and every worker's pending count while requests run."""

    def __init__(self, telemetry: Any) -> None:
        self.telemetry = telemetry
        self.max_queued = 0
        self.max_pending = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pipe = self.telemetry.pipeline
        while not self._stop.is_set():
            self.max_queued = max(self.max_queued, len(pipe.queue))
            self.max_pending = max(self.max_pending, *(w.pending for w in pipe.workers))
            time.sleep(0.0005)

    def __enter__(self) -> BoundWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def self_metrics(telemetry: Any, exporter: str) -> dict[str, int]:
    snapshot = telemetry.metrics()
    out = {}
    for name in ("spans_dropped", "spans_queued"):
        out[name] = int(snapshot.view(f"gatescope/{name}").rows.get((), 0))
    for name in ("spans_exported", "spans_failed", "export_errors"):
        out[name] = int(snapshot.view(f"gatescope/{name}").rows.get((exporter,), 0))
    return out


SERVERS: dict[str, tuple[Callable[[Any], AbstractContextManager[int]], Any, str]] = {
    "asgi-uvicorn": (serve_asgi, plain_asgi, "asgi"),
    "wsgi-wsgiref": (serve_wsgi, plain_wsgi, "wsgi"),
}
EXPORTERS: dict[str, Callable[[Receiver], dict[str, Any]]] = {
    "zipkin": lambda r: {"collector_url": r.url, "service_name": "faults"},
    "jaeger": lambda r: {"endpoint": r.url.replace("/api/v2/spans", "/api/traces"),
                         "service_name": "faults"},
}
CASES = [(REFUSE, "asgi-uvicorn", "zipkin"), (HANG, "wsgi-wsgiref", "zipkin"),
         (ERROR_500, "asgi-uvicorn", "zipkin"), (SLOW, "wsgi-wsgiref", "zipkin"),
         (HANG, "asgi-uvicorn", "zipkin"), (REFUSE, "wsgi-wsgiref", "zipkin"),
         (ERROR_500, "wsgi-wsgiref", "jaeger"), (HANG, "asgi-uvicorn", "jaeger")]


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorter backoff so one test sees several retry cycles and the recovery."""
    monkeypatch.setattr(pipeline, "RETRY_DELAYS", (0.02, 0.05, 0.1))


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[str, str], Receiver]]:
    made: list[Receiver] = []

    def make(mode: str, exporter: str) -> Receiver:
        decode = jaeger_spans if exporter == "jaeger" else zipkin_spans
        receiver = Receiver(mode, slow_seconds=0.3, decode=decode)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize(("fault", "server", "exporter"), CASES,
                         ids=["-".join(case) for case in CASES])
def test_faulty_receiver_costs_requests_nothing(
    gatescope_plugins: Any, receiver_factory: Callable[[str, str], Receiver],
    caplog: pytest.LogCaptureFixture, fault: str, server: str, exporter: str,
) -> None:
    caplog.set_level(logging.WARNING)
    serve, app, layer = SERVERS[server]
    receiver = receiver_factory(fault, exporter)
    export_timeout = "2s" if fault == SLOW else "200ms"
    faulty = gatescope_plugins.telemetry(document({exporter: EXPORTERS[exporter](receiver)},
                                                  export_timeout))
    baseline = gatescope_plugins.telemetry(document({"capture": {}}, export_timeout))  # no network
    started = time.monotonic()
    with serve(getattr(faulty, layer)(app)) as faulty_port, \
            serve(getattr(baseline, layer)(app)) as baseline_port:
        to_faulty, to_baseline = Client(faulty_port), Client(baseline_port)
        for _ in range(WARMUP):  # warm both paths (connections, caches) before measuring
            to_faulty.get("/warm")
            to_baseline.get("/warm")
        with_fault, without = [], []
        with BoundWatch(faulty) as watch:
            for i in range(PAIRS):
                with_fault.append(to_faulty.get(f"/during/{i}"))
                without.append(to_baseline.get(f"/during/{i}"))
        # Latency: the exporter's trouble never reaches the request path.
        median_fault, median_base = statistics.median(with_fault), statistics.median(without)
        assert median_fault <= 1.5 * median_base + 0.0005, (median_fault, median_base)
        # Memory: nothing grows past queue_size, in the queue or in the exporter's worker.
        assert watch.max_queued <= QUEUE_SIZE and watch.max_pending <= QUEUE_SIZE, \
            (watch.max_queued, watch.max_pending)
        during = self_metrics(faulty, exporter)
        if fault != SLOW:
            assert during["spans_exported"] == 0, during
            assert during["spans_dropped"] + during["spans_failed"] > 0, during
        # Recovery: the receiver comes back; new spans arrive without a restart.
        receiver.set_mode(OK)
        faulty.flush(15)  # the backlog retried during the fault settles (delivered or counted)
        for i in range(20):
            to_faulty.get(f"/after/{i}")
        to_faulty.close()
        to_baseline.close()
        wanted = {f"/after/{i}" for i in range(20)}
        assert wait_for(lambda: wanted <= set(receiver.paths()), 20), \
            sorted(wanted - set(receiver.paths()))[:5]
    assert faulty.flush(10)
    elapsed = time.monotonic() - started
    final = self_metrics(faulty, exporter)
    produced = WARMUP + PAIRS + 20  # one router span per request to the faulty app
    # Every span is accounted for: delivered exactly once, or counted as dropped/failed.
    assert len(receiver.spans) == final["spans_exported"], final
    assert final["spans_exported"] + final["spans_failed"] + final["spans_dropped"] == produced, \
        final
    assert len({s["id"] for s in receiver.spans}) == len(receiver.spans)
    # No log flood: each distinct warning at most once per interval.
    warnings = Counter((r.name, r.msg) for r in caplog.records if r.levelno >= logging.WARNING)
    allowed = math.ceil(elapsed / LOG_INTERVAL)
    assert all(n <= allowed for n in warnings.values()), (allowed, warnings)
    if fault != SLOW:
        assert final["export_errors"] > 0, final
        assert warnings, "a failing receiver must be reported"
