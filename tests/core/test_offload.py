"""`export_process`: trace exporters in helper processes, with the in-process guarantees kept."""

from __future__ import annotations

import asyncio
import enum
import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gatescope import ExporterStartError
from gatescope.config import load_config
from gatescope.offload import (
    YIELD_EVERY,
    OffloadedExporter,
    pack_spans,
    sharing_cpu,
    unpack_spans,
)
from gatescope.plugins import build_registry, load_plugins
from gatescope.settings import ConfigError
from gatescope.spans import KIND_CLIENT, KIND_SERVER, SpanRecord
from gatescope.testing import (
    PluginHarness,
    exit_code,
    exporter_of,
    fork_child,
    krakend_config,
    synthetic_request,
    wait_for,
)
from gatescope.tracing import Span, current, settle

# Exporters the helper process must import by name, so they live in a real module on sys.path.
MODULE = "gatescope_offload_probe"
SOURCE = '''
import json, os, signal, time
from typing import ClassVar

import attrs
from gatescope import METRICS, TRACES, BaseExporter, ExportError, ExporterStartError, hookimpl
from gatescope.settings import string, setting


@attrs.frozen
class ProbeConfig:
    out: str = setting(string(), default="")
    mode: str = setting(string(), default="")

    def validate(self, path, problems, present):
        return None


class ProbeExporter(BaseExporter):
    """Writes what it is given (and where it runs) to a JSON-lines file the test reads."""

    name: ClassVar[str] = "probe"
    config_class: ClassVar[type] = ProbeConfig
    signals: ClassVar[frozenset[str]] = frozenset({TRACES, METRICS})

    def _write(self, **event):
        with open(self.config.out, "a") as out:
            out.write(json.dumps({"pid": os.getpid(), **event}) + "\\n")

    def _first_time(self):
        try:  # once across every helper process of the test
            os.close(os.open(self.config.out + ".once", os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False

    def start(self):
        if self.config.mode == "fail-start":
            raise ExporterStartError("port 6831 is taken")
        self._write(event="start", service=self.context.service_name)

    def export_spans(self, spans):
        mode = self.config.mode
        if mode == "crash":
            raise ValueError("boom")
        if mode == "reject":
            raise ExportError("collector said 400", retryable=False)
        if mode == "die-once" and self._first_time():
            os._exit(3)
        if mode == "hang-once" and self._first_time():
            time.sleep(60)
        self._write(event="batch", yield_every=signal.getitimer(signal.ITIMER_REAL)[1])
        for s in spans:
            self._write(event="span", name=s.name, trace_id=s.trace_id, span_id=s.span_id,
                        parent=s.parent_span_id, kind=s.kind, start=s.start_ns, end=s.end_ns,
                        attributes={k: [type(v).__name__, v] for k, v in s.attributes.items()},
                        status=[s.status_code, s.status_message])

    def export_metrics(self, snapshot):
        self._write(event="metrics", views=sorted(v.view.name for v in snapshot.views),
                    yield_every=signal.getitimer(signal.ITIMER_REAL)[1])

    def adopt_metrics_baseline(self, previous):
        self._write(event="baseline")

    def shutdown(self, timeout):
        self._write(event="shutdown")


class ProbePlugin:
    @hookimpl
    def gatescope_register_exporters(self, register):
        register(ProbeExporter)
'''


@pytest.fixture(scope="module")
def probe_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    where = tmp_path_factory.mktemp("probe")
    (where / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    sys.path.insert(0, str(where))
    try:
        import importlib

        yield importlib.import_module(MODULE)
    finally:
        sys.path.remove(str(where))
        sys.modules.pop(MODULE, None)


@pytest.fixture
def harness(gatescope_plugins: PluginHarness, probe_module: Any) -> PluginHarness:
    gatescope_plugins.register(probe_module.ProbePlugin(), "probe-plugin")
    return gatescope_plugins


def events(out: Path, kind: str | None = None) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    found = [json.loads(line) for line in out.read_text().splitlines()]
    return [e for e in found if kind is None or e["event"] == kind]


def probe_config(out: Path, mode: str = "", **service: Any) -> dict[str, Any]:
    return krakend_config({"probe": {"out": str(out), "mode": mode}}, name="svc",
                          sample_rate=100, export_process=True, **service)


def test_spans_are_exported_from_a_helper_process_unchanged(harness, tmp_path):
    out = tmp_path / "probe.jsonl"
    telemetry = harness.telemetry(probe_config(out))
    assert isinstance(exporter_of(telemetry, "probe"), OffloadedExporter)
    synthetic_request(telemetry)
    assert telemetry.flush(10) is True
    (started,) = events(out, "start")
    assert started["pid"] != os.getpid() and started["service"] == "svc"
    spans = {e["name"]: e for e in events(out, "span")}
    assert set(spans) == {"/users/{id}", "pipe-/users/{id}", "backend-/api/users/{id}",
                          "/api/users/42"}
    assert {e["pid"] for e in spans.values()} == {started["pid"]}
    client = spans["/api/users/42"]
    assert client["kind"] == KIND_CLIENT and client["parent"] == spans["backend-/api/users/{id}"]["span_id"]
    assert client["attributes"]["gatescope.ratio"] == ["float", 0.5]
    assert client["attributes"]["gatescope.cached"] == ["bool", False]
    assert client["attributes"]["http.status_code"] == ["int", 503]
    assert client["status"] == [14, "UNAVAILABLE"]
    assert len({e["trace_id"] for e in spans.values()}) == 1 and client["end"] >= client["start"] > 0
    worker = telemetry.pipeline.workers[0]
    assert (worker.exported, worker.failed, worker.errors) == (4, 0, 0)
    assert telemetry.shutdown(10) is True
    assert [e["pid"] for e in events(out, "shutdown")] == [started["pid"]]


def test_the_helper_shares_its_cpu_while_it_exports_spans(harness, tmp_path):
    out = tmp_path / "probe.jsonl"
    telemetry = harness.telemetry(probe_config(out))
    synthetic_request(telemetry)
    assert telemetry.flush(10) is True
    try:
        (batch,) = events(out, "batch")
        assert batch["yield_every"] == pytest.approx(YIELD_EVERY)  # armed for the batch
        assert [e["yield_every"] for e in events(out, "metrics")] == [0.0]  # and only then
    finally:
        telemetry.shutdown(10)


def test_sharing_cpu_yields_during_the_block_and_restores_the_alarm_after(monkeypatch):
    yields = []
    monkeypatch.setattr(os, "sched_yield", lambda: yields.append(1))
    before = signal.getsignal(signal.SIGALRM)
    with sharing_cpu(0.001):
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            pass
    during = len(yields)
    time.sleep(0.01)
    assert during >= 10  # ~50 expected; a loaded CI machine delivers fewer, never none
    assert len(yields) == during  # nothing after the block
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before


@pytest.mark.parametrize("export_process", [True, False], ids=["export-process", "in-process"])
def test_router_spans_get_their_http_attributes_on_either_side(harness, tmp_path, export_process):
    out = tmp_path / "probe.jsonl"
    telemetry = harness.telemetry(krakend_config(
        {"probe": {"out": str(out)}}, sample_rate=100, export_process=export_process))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        current.get().set_attribute("app.tag", "mine")  # the app's own attributes stay
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"down"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": "/users/7", "root_path": "",
             "query_string": b"full=1", "headers": [(b"host", b"example.com"),
                                                    (b"user-agent", b"probe/1.0")]}
    asyncio.run(telemetry.asgi(app, endpoints=["/users/{id}"])(scope, receive, send))
    assert telemetry.flush(10) is True
    (span,) = events(out, "span")
    assert (span["pid"] != os.getpid()) is export_process
    assert span["name"] == "/users/{id}" and span["kind"] == KIND_SERVER
    assert span["attributes"] == {
        "app.tag": ["str", "mine"], "http.path": ["str", "/users/7"],
        "http.url": ["str", "/users/7?full=1"], "http.host": ["str", "example.com"],
        "http.method": ["str", "GET"], "http.user_agent": ["str", "probe/1.0"],
        "http.status_code": ["int", 503]}
    assert span["status"] == [14, "UNAVAILABLE"]
    assert telemetry.shutdown(10) is True


def test_metrics_pushes_and_baselines_reach_the_helper(harness, tmp_path):
    out = tmp_path / "probe.jsonl"
    telemetry = harness.telemetry(probe_config(out, reporting_period=3600))
    synthetic_request(telemetry)
    assert telemetry.flush(10) is True
    (pushed,) = events(out, "metrics")
    assert "opencensus.io/http/server/request_count" in pushed["views"]
    assert "gatescope/spans_exported" in pushed["views"]
    exporter_of(telemetry, "probe").adopt_metrics_baseline(None)
    assert len(events(out, "baseline")) == 1


@pytest.mark.parametrize("mode, errors, retried, message", [
    ("crash", 1, False, "RemoteExporterError: ValueError: boom"),
    ("reject", 1, False, "collector said 400"),
])
def test_exporter_failures_in_the_helper_are_counted_and_logged_here(harness, tmp_path, caplog,
                                                                      mode, errors, retried, message):
    telemetry = harness.telemetry(probe_config(tmp_path / "probe.jsonl", mode))
    synthetic_request(telemetry)
    assert telemetry.flush(10) is False
    worker = telemetry.pipeline.workers[0]
    assert (worker.exported, worker.failed, worker.errors) == (0, 4, errors)
    assert message in caplog.text


def test_a_helper_that_dies_is_replaced_and_the_batch_retried(harness, tmp_path, monkeypatch):
    monkeypatch.setattr("gatescope.pipeline.RETRY_DELAYS", (0.05, 0.05))
    out = tmp_path / "probe.jsonl"
    telemetry = harness.telemetry(probe_config(out, "die-once"))
    synthetic_request(telemetry)
    assert telemetry.flush(15) is True
    proxy = exporter_of(telemetry, "probe")
    worker = telemetry.pipeline.workers[0]
    assert (worker.exported, worker.failed, worker.errors, proxy.restarts) == (4, 0, 1, 1)
    first, second = (e["pid"] for e in events(out, "start"))
    assert {e["pid"] for e in events(out, "span")} == {second} and first != second


def test_a_helper_that_stops_answering_is_killed_and_replaced(harness, tmp_path, monkeypatch):
    monkeypatch.setattr("gatescope.pipeline.RETRY_DELAYS", (0.05, 0.05))
    monkeypatch.setattr("gatescope.offload.REPLY_GRACE", 0.5)
    out = tmp_path / "probe.jsonl"
    telemetry = harness.telemetry(probe_config(out, "hang-once", export_timeout="100ms"))
    hung = exporter_of(telemetry, "probe")._helper.proc
    synthetic_request(telemetry)
    assert telemetry.flush(15) is True
    assert hung.poll() == -signal.SIGKILL
    assert len(events(out, "span")) == 4


def test_start_errors_in_the_helper_fail_start_here(harness, tmp_path):
    with pytest.raises(ExporterStartError, match="'probe' failed to start in its export process: "
                       "ExporterStartError: port 6831 is taken"):
        harness.telemetry(probe_config(tmp_path / "probe.jsonl", "fail-start"))


def test_a_helper_whose_server_is_gone_shuts_its_exporter_down_and_exits(harness, tmp_path):
    out = tmp_path / "probe.jsonl"
    telemetry = harness.telemetry(probe_config(out))
    helper = exporter_of(telemetry, "probe")._helper
    helper.abandon()  # what the kernel does to the pipes when the serving process dies
    assert helper.proc.wait(10) == 0
    assert [e["pid"] for e in events(out, "shutdown")] == [helper.proc.pid]


def test_ctrl_c_to_the_process_group_does_not_stop_the_helper(harness, tmp_path):
    out = tmp_path / "probe.jsonl"
    telemetry = harness.telemetry(probe_config(out))
    helper = exporter_of(telemetry, "probe")._helper
    os.kill(helper.proc.pid, signal.SIGINT)
    os.kill(helper.proc.pid, signal.SIGTERM)
    synthetic_request(telemetry)
    assert telemetry.flush(10) is True and helper.alive()
    assert len(events(out, "span")) == 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_gets_its_own_helper(harness, tmp_path):
    out = tmp_path / "probe.jsonl"
    telemetry = harness.telemetry(probe_config(out))
    parent_helper = exporter_of(telemetry, "probe")._helper.proc.pid

    def worker() -> bool:  # its spans go through a helper of its own
        synthetic_request(telemetry)
        return telemetry.shutdown(10)

    assert exit_code(fork_child(worker)) == 0
    synthetic_request(telemetry)
    assert telemetry.flush(10) is True
    starts = [e["pid"] for e in events(out, "start")]
    assert len(starts) == 2 and starts[0] == parent_helper
    by_pid: dict[int, int] = {}
    for e in events(out, "span"):
        by_pid[e["pid"]] = by_pid.get(e["pid"], 0) + 1
    assert by_pid == {parent_helper: 4, starts[1]: 4}
    assert wait_for(lambda: [e["pid"] for e in events(out, "shutdown")] == [starts[1]], 5)


def test_exporters_that_must_stay_here_are_not_offloaded(gatescope_plugins):
    document = krakend_config({"logger": {}, "prometheus": {"port": 0, "listen_ip": "127.0.0.1"},
                               "capture": {}}, export_process=True)
    telemetry = gatescope_plugins.telemetry(document, start=False)
    kinds = {e.name: type(e).__name__ for e in telemetry.exporters}
    assert kinds == {"logger": "LoggerExporter", "prometheus": "PrometheusExporter",
                     "capture": "OffloadedExporter"}


def test_export_process_must_be_a_boolean():
    pm, infos = load_plugins()
    with pytest.raises(ConfigError, match=r"telemetry/opencensus.*export_process"):
        load_config(krakend_config({"logger": {}}, export_process="yes"), build_registry(pm, infos))


def test_span_packing_keeps_every_field_and_plain_types_for_subclassed_values():
    class Color(enum.StrEnum):
        RED = "red"

    class Tag(str):
        pass

    span = SpanRecord("n", "a" * 32, "b" * 16, None, KIND_CLIENT, 1, 2,
                      {"s": "x", "i": 7, "f": 0.5, "b": True}, 14, "UNAVAILABLE")
    odd = SpanRecord("o", "c" * 32, "d" * 16, "b" * 16, 0, 3, 4,
                     {"t": Tag("v"), "c": Color.RED, "n": enum.IntEnum("N", "ONE").ONE, "b": True})
    fields = ("name", "trace_id", "span_id", "parent_span_id", "kind", "start_ns", "end_ns",
              "attributes", "status_code", "status_message")
    back = unpack_spans(pack_spans([span, odd]))
    assert [[getattr(s, f) for f in fields] for s in back] == \
           [[getattr(s, f) for f in fields] for s in (span, odd)]
    assert {k: type(v) for k, v in back[1].attributes.items()} == \
           {"t": str, "c": str, "n": int, "b": bool}
    assert back[1].attributes["c"] == "red"


def test_server_spans_get_the_same_attributes_in_the_helper_as_in_the_server():
    def server_span(app_attributes: dict[str, Any]) -> Span:
        span = Span("GET /users/{id}", "a" * 32, None, KIND_SERVER, lambda _: None, "b" * 16)
        span.attributes.update(app_attributes)
        span.http_facts = ("/users/7", b"q=\xe9", b"example.com", "GET", b"agent/1", 404)
        return span

    for app_attributes in ({}, {"team": "a", "http.status_code": 1}):
        here, there = server_span(app_attributes), server_span(app_attributes)
        settle([here])
        (back,) = unpack_spans(pack_spans([there]))
        assert there.http_facts is not None  # packing leaves the span as it was (retries)
        assert list(back.attributes.items()) == list(here.attributes.items())
        assert (back.status_code, back.status_message) == (here.status_code, here.status_message)
    broken = server_span({})
    broken.http_facts = ("/users/7",)  # type: ignore[assignment]  # not the six facts
    (kept,) = unpack_spans(pack_spans([broken]))
    assert kept.name == "GET /users/{id}" and kept.attributes == {}
    assert here.attributes == {
        "team": "a", "http.status_code": 404, "http.path": "/users/7",
        "http.url": "/users/7?q=\u00e9", "http.host": "example.com", "http.method": "GET",
        "http.user_agent": "agent/1"}
    assert (here.status_code, here.status_message, here.http_facts) == (5, "NOT_FOUND", None)


def test_helper_processes_do_not_outlive_shutdown(harness, tmp_path):
    telemetry = harness.telemetry(probe_config(tmp_path / "probe.jsonl"))
    proc = exporter_of(telemetry, "probe")._helper.proc
    assert telemetry.shutdown(10) is True
    assert proc.poll() == 0  # exited cleanly and reaped, not killed or left as a zombie
