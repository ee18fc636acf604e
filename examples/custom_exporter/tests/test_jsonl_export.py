"""The jsonl exporter end to end: a real Telemetry, real spans and stats, the file read back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from gatescope import ExportError, ExporterStartError, SpanRecord
from gatescope.cli import main as gatescope_cli
from gatescope.spans import KIND_CLIENT, KIND_SERVER, NOT_FOUND
from gatescope.testing import PluginHarness, exporter_of, krakend_config
from gatescope.tracing import Span, current
from gatescope_jsonl import JsonlExporter


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def serve_one_request(telemetry: Any, path: str = "/users/{id}") -> tuple[Span, Span]:
    """What the router and backend layers do for one request: two spans and one stats record."""
    kit = telemetry.kit
    root = kit.tracer.start_root(path, KIND_SERVER, None)
    assert isinstance(root, Span)
    token = current.set(root)
    try:
        client = kit.tracer.start_child("/upstream/users/42", KIND_CLIENT)
        assert client is not None
        client.set_attribute("http.url", "http://upstream/users/42")
        client.set_http_status(404)
        client.end()
    finally:
        current.reset(token)
    root.set_http_status(404)
    root.end()
    kit.server.record("gw", path, "GET", "404", 10, 120, 12.5)
    return root, client


def test_plugins_command_lists_the_exporter(capsys: pytest.CaptureFixture[str]) -> None:
    assert gatescope_cli(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name": "jsonl", "distribution": "gatescope-jsonl", "version": "0.1.0",
            "signals": ["metrics", "traces"], "error": None} in rows


def test_spans_and_metrics_are_written(gatescope_plugins: PluginHarness, tmp_path: Path) -> None:
    out = tmp_path / "telemetry.jsonl"
    telemetry = gatescope_plugins.telemetry(
        krakend_config({"jsonl": {"path": str(out)}}, name="gateway", sample_rate=100))
    assert isinstance(exporter_of(telemetry, "jsonl"), JsonlExporter)
    root, client = serve_one_request(telemetry)
    assert telemetry.flush(5.0)

    lines = read_lines(out)
    spans = {line["span_id"]: line for line in lines if line["type"] == "span"}
    assert spans[root.span_id] == {
        "type": "span", "service": "gateway", "name": "/users/{id}",
        "trace_id": root.trace_id, "span_id": root.span_id, "parent_span_id": None,
        "kind": "server", "start_ns": root.start_ns, "end_ns": root.end_ns,
        "status": {"code": NOT_FOUND, "name": "NOT_FOUND", "message": "NOT_FOUND"},
        "attributes": {"http.status_code": 404},
    }
    assert spans[client.span_id]["parent_span_id"] == root.span_id
    assert spans[client.span_id]["kind"] == "client"
    assert spans[client.span_id]["attributes"]["http.url"] == "http://upstream/users/42"

    metrics = {line["name"]: line for line in lines if line["type"] == "metric"}
    count = metrics["opencensus.io/http/server/request_count"]
    assert count["value"] == 1 and count["aggregation"] == "count"
    latency = metrics["opencensus.io/http/server/latency"]["distribution"]
    assert latency["count"] == 1 and latency["sum"] == 12.5
    assert len(latency["bucket_counts"]) == len(latency["bounds"]) + 1
    # OpenCensus rule: 12.5 falls in the first bucket whose bound is greater (13).
    assert latency["bucket_counts"][latency["bounds"].index(13)] == 1
    assert "gatescope/spans_dropped" in metrics


def test_signals_follow_the_config(gatescope_plugins: PluginHarness, tmp_path: Path) -> None:
    out = tmp_path / "metrics-only.jsonl"
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"jsonl": {"path": str(out), "spans": False, "internal_metrics": False}},
        sample_rate=100))
    serve_one_request(telemetry)
    assert telemetry.flush(5.0)
    lines = read_lines(out)
    assert lines and {line["type"] for line in lines} == {"metric"}
    assert not [line for line in lines if line["name"].startswith("gatescope/")]


def test_rotation_keeps_files_under_max_bytes(gatescope_plugins: PluginHarness,
                                              tmp_path: Path) -> None:
    out = tmp_path / "rotating.jsonl"
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"jsonl": {"path": str(out), "metrics": False, "max_bytes": 2000, "backups": 2}},
        sample_rate=100))
    exporter = exporter_of(telemetry, "jsonl")
    for batch in range(10):
        exporter.export_spans([SpanRecord(f"span-{batch}", "a" * 32, f"{batch:016x}", None, 0,
                                          1, 2, {"pad": "x" * 300})])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["rotating.jsonl", "rotating.jsonl.1", "rotating.jsonl.2"]
    assert all((tmp_path / name).stat().st_size <= 2000 for name in files)
    newest = read_lines(out)[-1]["name"]
    assert newest == "span-9"
    # Everything kept is in order, newest file last: .2, .1, then the live file.
    kept = [line["name"] for name in reversed(files) for line in read_lines(tmp_path / name)]
    assert kept == [f"span-{i}" for i in range(10 - len(kept), 10)]


def test_rotation_by_another_process_is_noticed(gatescope_plugins: PluginHarness,
                                                tmp_path: Path) -> None:
    out = tmp_path / "shared.jsonl"
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"jsonl": {"path": str(out), "metrics": False}}, sample_rate=100))
    exporter = exporter_of(telemetry, "jsonl")
    exporter.export_spans([SpanRecord("before", "a" * 32, "1" * 16, None, 0, 1, 2, {})])
    os.replace(out, tmp_path / "shared.jsonl.1")  # what a logrotate or a sibling worker does
    exporter.export_spans([SpanRecord("after", "a" * 32, "2" * 16, None, 0, 1, 2, {})])
    assert [line["name"] for line in read_lines(out)] == ["after"]


def test_missing_directory_fails_at_start(gatescope_plugins: PluginHarness,
                                          tmp_path: Path) -> None:
    document = krakend_config({"jsonl": {"path": str(tmp_path / "missing" / "t.jsonl")}})
    with pytest.raises(ExporterStartError, match=r"jsonl: cannot open .* No such file"):
        gatescope_plugins.telemetry(document)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_failed_write_is_a_retryable_export_error(gatescope_plugins: PluginHarness) -> None:
    telemetry = gatescope_plugins.telemetry(
        krakend_config({"jsonl": {"path": "/dev/full"}}, sample_rate=100))
    exporter = exporter_of(telemetry, "jsonl")
    with pytest.raises(ExportError, match="No space left on device") as caught:
        exporter.export_spans([SpanRecord("s", "a" * 32, "1" * 16, None, 0, 1, 2, {})])
    assert caught.value.retryable
    serve_one_request(telemetry)
    assert not telemetry.flush(1.0)  # the core counts the batch as not delivered...
    failed = telemetry.metrics().view("gatescope/export_errors")
    assert failed is not None and failed.rows[("jsonl",)] >= 1  # ...and the failed calls
    telemetry.shutdown(0.1)  # no point waiting for a full disk


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_writes_through_its_own_handle(gatescope_plugins: PluginHarness,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "forked.jsonl"
    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"jsonl": {"path": str(out), "metrics": False}}, sample_rate=100))
    parent_handle = exporter_of(telemetry, "jsonl").file._file
    pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker, say
        status = 1
        try:
            exporter = exporter_of(telemetry, "jsonl")
            reopened = exporter.file._file is not parent_handle
            serve_one_request(telemetry, "/child")
            status = 0 if reopened and telemetry.flush(5.0) else 1
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    serve_one_request(telemetry, "/parent")
    assert telemetry.flush(5.0)
    names = [line["name"] for line in read_lines(out) if line["kind"] == "server"]
    assert sorted(names) == ["/child", "/parent"]
