"""A real Prometheus server scrapes an instrumented app; we read the results back via its API."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from gatescope.testing import exporter_of, free_port, krakend_config
from prometheus_testlib import need_binary, wait_http

REQUESTS = 37


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        return None


def _app(environ, start_response):
    status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def query(api: str, promql: str) -> list[dict]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        doc = json.load(response)
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


@pytest.fixture
def prometheus_for(tmp_path):
    binary = need_binary("prometheus", "apt-get install prometheus")
    started: list[subprocess.Popen] = []

    def run(target_port: int) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: gatescope\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n")
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        api = f"http://127.0.0.1:{port}"
        wait_http(f"{api}/-/ready", 30)
        return api

    yield run
    for process in started:
        process.terminate()
        process.wait(10)


def test_prometheus_scrapes_krakend_metrics(gatescope_plugins, prometheus_for) -> None:
    telemetry = gatescope_plugins.telemetry(krakend_config({"prometheus": {
        "port": 0, "listen_ip": "127.0.0.1", "namespace": "krakend", "tag_method": True,
        "tag_statuscode": True}}))
    exporter = exporter_of(telemetry, "prometheus")
    server = make_server("127.0.0.1", 0, telemetry.wsgi(_app), handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = prometheus_for(exporter.port)
        base = f"http://127.0.0.1:{server.server_port}"
        for i in range(REQUESTS):
            path = "/missing" if i % 5 == 0 else "/hello"
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(base + path, timeout=5).read()
        deadline = time.monotonic() + 20
        total = 0.0
        while time.monotonic() < deadline:
            result = query(api, "sum(krakend_opencensus_io_http_server_request_count)")
            total = float(result[0]["value"][1]) if result else 0.0
            if total == REQUESTS:
                break
            time.sleep(0.3)
        assert total == REQUESTS
        series = query(api, "krakend_opencensus_io_http_server_request_count")
        labels = sorted(tuple(sorted((k, v) for k, v in s["metric"].items()
                                     if k not in ("instance", "job"))) for s in series)
        assert labels == [
            (("__name__", "krakend_opencensus_io_http_server_request_count"),
             ("http_method", "GET"), ("http_status", "200")),
            (("__name__", "krakend_opencensus_io_http_server_request_count"),
             ("http_method", "GET"), ("http_status", "404")),
        ]
        by_status = {s["metric"]["http_status"]: float(s["value"][1]) for s in series}
        assert by_status == {"200": REQUESTS - 8, "404": 8}
        median = query(api, "histogram_quantile(0.5, sum by (le) "
                            "(krakend_opencensus_io_http_server_latency_bucket))")
        assert median and 0 < float(median[0]["value"][1]) <= 1000
        up = query(api, 'up{job="gatescope"}')
        assert float(up[0]["value"][1]) == 1
        assert query(api, "process_resident_memory_bytes")
    finally:
        server.shutdown()
        server.server_close()
