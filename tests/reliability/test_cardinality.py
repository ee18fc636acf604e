"""`tag_path` with `path_aggregation: off`: clients choose label values, the core caps them.

Random paths through the real router middleware keep every server view at `max_tag_sets` rows
plus one overflow row, totals stay exact, and `gatescope/tag_sets_folded` counts the folds.
"""

from __future__ import annotations

import asyncio
import io
import random
import string
import urllib.request
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from gatescope.config import NAMESPACE
from gatescope.metrics import OVERFLOW_TAG_VALUE
from gatescope.testing import exporter_of
from prometheus_client.parser import text_string_to_metric_families

CAP = 50
REQUESTS = 1500
SERVER_VIEWS = ("request_count", "request_bytes", "response_bytes", "latency",
                "request_count_by_method", "response_count_by_status_code")


def document(cap: int | None) -> dict[str, Any]:
    section: dict[str, Any] = {
        "sample_rate": 0,
        "exporters": {"prometheus": {"port": 0, "listen_ip": "127.0.0.1", "tag_path": True}},
    }
    if cap is not None:
        section["max_tag_sets"] = cap
    return {"version": 3, "extra_config": {NAMESPACE: section}, "endpoints": [
        {"endpoint": "/items/{id}", "extra_config": {NAMESPACE: {"path_aggregation": "off"}}}]}


def random_paths(count: int) -> list[str]:
    rng = random.Random(9)
    return [f"/items/{''.join(rng.choices(string.ascii_lowercase, k=12))}" for _ in range(count)]


def hello_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


async def hello_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def drive_wsgi(telemetry: Any, paths: list[str]) -> None:
    app = telemetry.wsgi(hello_wsgi)
    for path in paths:
        environ: dict[str, Any] = {"PATH_INFO": path, "wsgi.input": io.BytesIO()}
        setup_testing_defaults(environ)
        result = app(environ, lambda status, headers, exc_info=None: None)
        b"".join(result)
        result.close()  # type: ignore[attr-defined]


def drive_asgi(telemetry: Any, paths: list[str]) -> None:
    app = telemetry.asgi(hello_asgi)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def run() -> None:
        for path in paths:
            await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                       "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                       "query_string": b"", "root_path": "", "headers": [(b"host", b"gw")],
                       "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000)},
                      receive, send)

    asyncio.run(run())


@pytest.mark.parametrize("drive", [drive_wsgi, drive_asgi], ids=["wsgi", "asgi"])
def test_random_paths_fold_into_one_overflow_row(gatescope_plugins: Any, drive: Any) -> None:
    telemetry = gatescope_plugins.telemetry(document(CAP))
    paths = random_paths(REQUESTS)
    drive(telemetry, paths[:10] * 3 + paths)  # the first ten paths come back: they keep rows
    snapshot = telemetry.metrics()
    total = REQUESTS + 30
    for name in SERVER_VIEWS:
        data = snapshot.view("opencensus.io/http/server/" + name)
        assert data is not None
        assert "http.path" in data.view.tag_keys
        path_index = data.view.tag_keys.index("http.path")
        assert len(data.rows) == CAP + 1, (name, len(data.rows))
        overflow = [k for k in data.rows if k[path_index] == OVERFLOW_TAG_VALUE]
        assert len(overflow) == 1
        counts = {key: getattr(value, "count", value) for key, value in data.rows.items()}
        assert sum(counts.values()) == total, name  # folded, never lost
        assert counts[overflow[0]] == REQUESTS - CAP  # 1490 new paths, 40 of them got rows
        assert all(counts[key] == 4 for key in counts if key[path_index] in paths[:10])
    folded = snapshot.view("gatescope/tag_sets_folded")
    assert folded is not None
    assert folded.rows == {("opencensus.io/http/server/" + name,): REQUESTS - CAP
                           for name in SERVER_VIEWS}
    # The scrape shows the same bounded rows and the fold counter operators alert on.
    port = exporter_of(telemetry, "prometheus").port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    request_count = families["opencensus_io_http_server_request_count"]
    assert len(request_count.samples) == CAP + 1
    assert sum(s.value for s in request_count.samples) == total
    assert any(s.labels["http_path"] == OVERFLOW_TAG_VALUE for s in request_count.samples)
    folds = {s.labels["view"]: s.value for s in families["gatescope_tag_sets_folded"].samples}
    assert folds["opencensus.io/http/server/request_count"] == REQUESTS - CAP


def test_default_cap_is_2000(gatescope_plugins: Any) -> None:
    telemetry = gatescope_plugins.telemetry(document(None))
    drive_wsgi(telemetry, random_paths(2100))
    data = telemetry.metrics().view("opencensus.io/http/server/request_count")
    assert data is not None and len(data.rows) == 2001
    assert sum(data.rows.values()) == 2100  # type: ignore[arg-type]
