"""Shared fixtures for the layer tests: a real upstream HTTP server and telemetry with capture."""

from __future__ import annotations

import gzip
import json
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
from gatescope import METRICS, BaseExporter, hookimpl
from gatescope.metrics import MetricsSnapshot
from gatescope.settings import boolean, setting
from gatescope.stats import TagOptions
from gatescope.testing import LocalHTTPServer, krakend_config

sys.path.insert(0, str(Path(__file__).parent))  # for layer_helpers (importlib mode)


class _Upstream(BaseHTTPRequestHandler):
    """GET /bytes/<n> -> n bytes; /chunked/<n> -> n bytes chunked, in three chunks 20 ms apart;
    /truncated/<n> -> n bytes announced, half sent, connection closed; /gzip/<n> -> n bytes
    gzipped (Content-Encoding: gzip); /badgzip -> a body that is not gzip, said to be;
    /status/<code>; /redirect/<path> -> 302 to /<path>; anything else -> JSON of the headers
    seen."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]] = []
    raw: list[list[tuple[str, str]]] = []  # every header line, repeats kept

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        elif self.headers.get("Transfer-Encoding") == "chunked":
            while True:
                size = int(self.rfile.readline().strip(), 16)
                self.rfile.read(size + 2)
                if size == 0:
                    break
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        type(self).raw.append([(k.lower(), v) for k, v in self.headers.items()])
        parts = self.path.split("?")[0].strip("/").split("/")
        status = 200
        extra: list[tuple[str, str]] = []
        if parts[0] == "truncated":
            announced = int(parts[1])
            self.send_response(200)
            self.send_header("Content-Length", str(announced))
            self.end_headers()
            self.wfile.write(b"x" * (announced // 2))
            self.wfile.flush()
            self.close_connection = True
            return
        if parts[0] == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            total = int(parts[1])
            for size in (total // 3, total // 3, total - 2 * (total // 3)):
                if size:
                    self.wfile.write(b"%x\r\n%s\r\n" % (size, b"c" * size))
                    self.wfile.flush()
                    time.sleep(0.02)
            self.wfile.write(b"0\r\n\r\n")
            return
        if parts[0] == "bytes":
            body = b"x" * int(parts[1])
        elif parts[0] in ("gzip", "badgzip"):
            body = gzip.compress(b"g" * int(parts[1])) if parts[0] == "gzip" else b"not gzip" * 8
            extra.append(("Content-Encoding", "gzip"))
        elif parts[0] == "status":
            status = int(parts[1])
            body = b""
        elif parts[0] == "redirect":
            status = 302
            extra.append(("Location", "/" + "/".join(parts[1:])))
            body = b""
        else:
            body = json.dumps({"path": self.path, "headers": type(self).seen[-1]}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: Any) -> None:
        return None


class Upstream(LocalHTTPServer):
    def __init__(self) -> None:
        super().__init__(_Upstream)
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"

    @property
    def seen(self) -> list[dict[str, str]]:
        return _Upstream.seen

    @property
    def raw(self) -> list[list[tuple[str, str]]]:
        return _Upstream.raw


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    _Upstream.seen = []
    _Upstream.raw = []
    server = Upstream()
    yield server
    server.close()


@attrs.frozen
class TaggedConfig:
    """KrakenD's prometheus `tag_*` switches on a stand-in stats exporter."""

    tag_host: bool = setting(boolean, default=False)
    tag_path: bool = setting(boolean, default=False)
    tag_method: bool = setting(boolean, default=False)
    tag_statuscode: bool = setting(boolean, default=False)

    def stats_tag_options(self) -> TagOptions:
        return TagOptions(self.tag_host, self.tag_path, self.tag_method, self.tag_statuscode)


class TaggedExporter(BaseExporter):
    name: ClassVar[str] = "tagged"
    config_class: ClassVar[type] = TaggedConfig
    signals: ClassVar[frozenset[str]] = frozenset({METRICS})
    pushes_metrics = False

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        return None


class TaggedPlugin:
    @hookimpl
    def gatescope_register_exporters(self, register: Any) -> None:
        register(TaggedExporter)


def config(sample_rate: int = 100, endpoints: Any = (), **tags: bool) -> dict[str, Any]:
    """Capture exporter plus, when tag switches are given, the `tagged` stats exporter."""
    exporters: dict[str, Any] = {"capture": {}}
    if tags:
        exporters["tagged"] = dict(tags)
    return krakend_config(exporters, endpoints=endpoints, sample_rate=sample_rate)


@pytest.fixture
def make_telemetry(gatescope_plugins: Any) -> Any:
    """Build and start a Telemetry from `config(...)` arguments; shut down after the test."""
    gatescope_plugins.register(TaggedPlugin(), "gatescope-tagged")

    def build(sample_rate: int = 100, endpoints: Any = (), **tags: bool) -> Any:
        return gatescope_plugins.telemetry(config(sample_rate, endpoints, **tags))

    return build
