"""`os.fork()` after start (gunicorn --preload): the child gets working telemetry, no dead threads."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest
from gatescope import hookimpl
from gatescope.spans import KIND_SERVER
from gatescope.testing import CapturingExporter, exporter_of, krakend_config

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def test_forked_child_exports_with_fresh_threads_and_locks(gatescope_plugins):
    telemetry = gatescope_plugins.telemetry(krakend_config({"capture": {}}, sample_rate=100))
    capture = exporter_of(telemetry, "capture")
    # Hold the recorder and pipeline locks in another thread while forking: a child that
    # inherited them held would deadlock on its first request.
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with telemetry.stats.server._lock, telemetry.pipeline._drop_lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    telemetry.tracer.start_root("parent-span", KIND_SERVER, None).end()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must not touch pytest machinery; report through the pipe and _exit
        signal.alarm(20)  # a deadlocked child dies instead of hanging the suite
        result: dict[str, object] = {}
        try:
            telemetry.kit.server.record("h", "/p", "GET", "200", 0, 1, 1.0)
            span = telemetry.tracer.start_root("child-span", KIND_SERVER, None)
            span.end()
            result["flushed"] = telemetry.flush(5)
            result["names"] = [s.name for s in capture.spans]
            result["threads_alive"] = all(w._thread.is_alive() for w in telemetry.pipeline.workers)
            count = telemetry.metrics().view("opencensus.io/http/server/request_count")
            result["count"] = count.rows.get((), 0)
        except BaseException as exc:  # report anything, never raise in the child
            result["error"] = repr(exc)
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    release.set()
    holder.join()
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.waitpid(pid, 0)
    assert data, "the forked child died without reporting (deadlocked on an inherited lock?)"
    result = json.loads(data)
    assert "error" not in result, result
    assert result["flushed"] is True
    assert "child-span" in result["names"]
    assert "parent-span" not in result["names"], "the parent's queued spans must stay in the parent"
    assert result["threads_alive"] is True
    assert result["count"] == 1
    assert telemetry.flush(5)
    assert [s.name for s in capture.spans] == ["parent-span"]



class _BrokenAfterFork(CapturingExporter):
    name = "brokenfork"

    def after_fork_in_child(self) -> None:
        raise OSError("the file this exporter had open is gone")


class _BrokenPlugin:
    @hookimpl
    def gatescope_register_exporters(self, register):
        register(_BrokenAfterFork)


def test_a_failing_after_fork_hook_costs_no_other_exporter(gatescope_plugins):
    gatescope_plugins.register(_BrokenPlugin())
    telemetry = gatescope_plugins.telemetry(
        krakend_config({"brokenfork": {}, "capture": {}}, sample_rate=100))
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        try:
            telemetry.kit.server.record("h", "/p", "GET", "200", 0, 1, 1.0)
            telemetry.tracer.start_root("child", KIND_SERVER, None).end()
            delivered = exporter_of(telemetry, "capture").wait_for_spans(1, timeout=5)
            code = 0 if delivered else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "export stopped in the child after one hook failed"
