"""Export pipeline: isolation of a hanging or failing exporter, bounded queue, retries, shutdown."""

from __future__ import annotations

import threading
import time

import attrs
from gatescope import TRACES, BaseExporter, ExportError, hookimpl
from gatescope.pipeline import Pipeline
from gatescope.spans import KIND_SERVER, SpanRecord
from gatescope.testing import exporter_of, krakend_config

RELEASE = threading.Event()


@attrs.frozen
class NoConfig:
    pass


class HangingExporter(BaseExporter):
    name = "hang"
    config_class = NoConfig
    signals = frozenset({TRACES})

    def __init__(self, config, context):
        super().__init__(config, context)
        self.entered = threading.Event()

    def export_spans(self, spans):
        self.entered.set()
        RELEASE.wait(30)


class FlakyExporter(BaseExporter):
    """Fails its first two calls with a retryable error, then accepts."""

    name = "flaky"
    config_class = NoConfig
    signals = frozenset({TRACES})

    def __init__(self, config, context):
        super().__init__(config, context)
        self.calls = 0
        self.received = []

    def export_spans(self, spans):
        self.calls += 1
        if self.calls <= 2:
            raise ExportError("receiver said 503")
        self.received.extend(spans)


class Plugin:
    @hookimpl
    def gatescope_register_exporters(self, register):
        register(HangingExporter)
        register(FlakyExporter)


def span(i: int = 0) -> SpanRecord:
    return SpanRecord(f"s{i}", "1" * 32, f"{i + 1:016x}", None, KIND_SERVER, 1, 2, {})


def test_hanging_exporter_delays_neither_caller_nor_other_exporter(gatescope_plugins):
    RELEASE.clear()
    gatescope_plugins.register(Plugin())
    telemetry = gatescope_plugins.telemetry(krakend_config({"hang": {}, "capture": {}}, sample_rate=100))
    hang, capture = exporter_of(telemetry, "hang"), exporter_of(telemetry, "capture")
    done = threading.Event()

    def caller():
        for i in range(5000):
            telemetry.pipeline.submit(span(i))
        done.set()

    thread = threading.Thread(target=caller)
    thread.start()
    assert done.wait(10), "submitting spans blocked behind a hanging exporter"
    assert hang.entered.wait(5), "the hanging exporter was never called"
    assert len(capture.wait_for_spans(5000, timeout=10)) == 5000
    assert telemetry.flush(0.5) is False  # the hung exporter still holds undelivered spans

    started = time.monotonic()
    delivered = telemetry.shutdown(1.0)
    elapsed = time.monotonic() - started
    RELEASE.set()
    assert delivered is False
    assert elapsed < 1.0 + 1.5, f"shutdown(1.0) took {elapsed:.2f}s"  # slack for a loaded CI host; a hang would be 30 s
    assert len(capture.spans) == 5000


def test_retryable_errors_are_retried_until_delivered(gatescope_plugins, monkeypatch):
    monkeypatch.setattr("gatescope.pipeline.RETRY_DELAYS", (0.01, 0.01, 0.01))
    gatescope_plugins.register(Plugin())
    telemetry = gatescope_plugins.telemetry(krakend_config({"flaky": {}}))
    for i in range(10):
        telemetry.pipeline.submit(span(i))
    assert telemetry.flush(5) is True
    flaky = exporter_of(telemetry, "flaky")
    assert flaky.calls == 3 and len(flaky.received) == 10
    worker = telemetry.pipeline.workers[0]
    assert (worker.exported, worker.errors, worker.failed) == (10, 2, 0)


def test_failing_exporter_counts_failures_and_caller_unaffected(gatescope_plugins):
    telemetry = gatescope_plugins.telemetry(krakend_config({"capture": {"fail": True}}))
    for i in range(3):
        telemetry.pipeline.submit(span(i))
    assert telemetry.flush(5) is False
    views = {v.view.name: v for v in telemetry.metrics().views}
    assert views["gatescope/spans_failed"].rows[("capture",)] == 3
    assert views["gatescope/export_errors"].rows[("capture",)] == 1  # a plugin crash is not retried


def test_queue_is_bounded_and_drops_are_counted():
    pipeline = Pipeline(capacity=10, batch_size=5)  # not started: nothing drains
    for i in range(25):
        pipeline.submit(span(i))
    assert len(pipeline.queue) == 10
    assert pipeline.dropped == 15
    views = {v.view.name: v for v in pipeline.self_views()}
    assert views["gatescope/spans_dropped"].rows[()] == 15
    assert views["gatescope/spans_queued"].rows[()] == 10


def test_shutdown_delivers_queued_spans_and_is_idempotent(gatescope_plugins):
    telemetry = gatescope_plugins.telemetry(krakend_config({"capture": {}}, reporting_period=3600))
    for i in range(100):
        telemetry.pipeline.submit(span(i))
    assert telemetry.shutdown(5) is True
    capture = exporter_of(telemetry, "capture")
    assert len(capture.spans) == 100 and capture.stopped
    assert capture.snapshots, "the final metrics push happens on shutdown"
    assert telemetry.shutdown(5) is True
    telemetry.pipeline.submit(span())
    assert telemetry.pipeline.dropped == 1  # after shutdown nothing is queued silently


def test_metrics_are_pushed_every_reporting_period(gatescope_plugins):
    telemetry = gatescope_plugins.telemetry(krakend_config({"capture": {}}, reporting_period=1))
    telemetry.kit.server.record("h", "/p", "GET", "200", 1, 2, 3.0)
    capture = exporter_of(telemetry, "capture")
    deadline = time.monotonic() + 5
    while len(capture.snapshots) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(capture.snapshots) >= 2
    count = capture.snapshots[-1].view("opencensus.io/http/server/request_count")
    assert count.rows[()] == 1


def test_a_server_span_whose_facts_cannot_be_read_does_not_stop_the_dispatcher(
        gatescope_plugins, caplog):
    telemetry = gatescope_plugins.telemetry(krakend_config({"capture": {}}, sample_rate=100))
    capture = exporter_of(telemetry, "capture")
    bad = telemetry.tracer.start_root("/bad", KIND_SERVER, None)
    bad.http_facts = ("/bad",)  # type: ignore[assignment]  # not the six facts
    bad.end()
    good = telemetry.tracer.start_root("/good", KIND_SERVER, None)  # in the same batch
    good.http_facts = ("/good", "q=1", b"h", "GET", b"ua", 200)  # a str query: taken as it is
    good.end()
    assert telemetry.flush(5)
    spans = {s.name: s for s in capture.wait_for_spans(2)}
    assert spans["/bad"].attributes == {} and "could not make the attributes of 1 server spans" in caplog.text
    assert spans["/good"].attributes["http.url"] == "/good?q=1"
    assert spans["/good"].attributes["http.status_code"] == 200
