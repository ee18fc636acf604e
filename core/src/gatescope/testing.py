"""Helpers for plugin authors: a capturing exporter, a config builder, a temporary-plugin fixture."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import attrs

from gatescope.config import NAMESPACE, load_config
from gatescope.exporter import METRICS, TRACES, BaseExporter, ExporterContext
from gatescope.hookspecs import hookimpl
from gatescope.metrics import MetricsSnapshot
from gatescope.plugins import ExporterRegistry, build_registry, load_plugins
from gatescope.propagation import TraceContext
from gatescope.runtime import Telemetry
from gatescope.settings import Problems, boolean, setting
from gatescope.spans import KIND_CLIENT, KIND_SERVER, KIND_UNSPECIFIED, SpanRecord
from gatescope.tracing import Span, current


def krakend_config(exporters: Mapping[str, Any] | None = None, *, endpoints: Sequence[Any] = (),
                   name: str | None = None, **service: Any) -> dict[str, Any]:
    """A minimal krakend.json document with a `telemetry/opencensus` section."""
    section: dict[str, Any] = {"exporters": dict(exporters or {"capture": {}}), **service}
    document: dict[str, Any] = {"version": 3, "extra_config": {NAMESPACE: section}}
    if endpoints:
        document["endpoints"] = list(endpoints)
    if name:
        document["name"] = name
    return document


@attrs.frozen
class CaptureConfig:
    fail: bool = setting(boolean, default=False, doc="raise from every export call")

    def validate(self, path: str, problems: Problems, present: frozenset[str]) -> None:
        return None


class CapturingExporter(BaseExporter):
    """Keeps every span and snapshot it is given, for assertions."""

    name: ClassVar[str] = "capture"
    config_class: ClassVar[type] = CaptureConfig
    signals: ClassVar[frozenset[str]] = frozenset({TRACES, METRICS})

    def __init__(self, config: CaptureConfig, context: ExporterContext) -> None:
        super().__init__(config, context)
        self.spans: list[SpanRecord] = []
        self.snapshots: list[MetricsSnapshot] = []
        self.started = False
        self.stopped = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self.started = True

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        if self.config.fail:
            raise RuntimeError("capture exporter configured to fail")
        with self._lock:
            self.spans.extend(spans)

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        with self._lock:
            self.snapshots.append(snapshot)

    def shutdown(self, timeout: float) -> None:
        self.stopped = True

    def wait_for_spans(self, count: int, timeout: float = 5.0) -> list[SpanRecord]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.spans) >= count:
                    return list(self.spans)
            time.sleep(0.01)
        with self._lock:
            return list(self.spans)


class LocalHTTPServer:
    """Serves `handler` on 127.0.0.1 (a free port) from a daemon thread until `close()`: the
    skeleton of the fake upstreams and receivers tests start."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and answers with an empty body."""

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


class Upstream(LocalHTTPServer):
    """A real upstream on 127.0.0.1 answering every GET with `status` and a small JSON body."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        upstream = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                body = b'{"id": 42}'
                self.send_response(upstream.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}"


def three_layer_request(telemetry: Telemetry, upstream: Upstream, path: str = "/users/42", *,
                        endpoint: str = "/users/{id}", url_pattern: str = "/u/{id}",
                        headers: Mapping[str, str] | None = None) -> int:
    """One request through router (ASGI middleware), pipe, backend and an instrumented httpx
    client to a real upstream (`/users/...` is fetched as `/u/...`); returns the gateway status."""
    import asyncio

    import httpx

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async with (telemetry.pipe(endpoint), telemetry.backend(url_pattern),
                    telemetry.async_httpx_client() as client):
            answer = await client.get(upstream.url + scope["path"].replace("/users", "/u"))
        status = 200 if answer.status_code < 400 else 502
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer.content})

    async def drive() -> int:
        transport = httpx.ASGITransport(app=telemetry.asgi(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.local") as client:
            response = await client.get(path, headers=dict(headers or {}))
            return response.status_code

    return asyncio.run(drive())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (bound, then released): for servers
    that must be told their port up front, or for a receiver that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll `predicate` every 20 ms until it holds or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def fork_child(work: Callable[[], object]) -> int:
    """Run `work` in a forked child (a gunicorn worker, say) and return its pid; the child exits
    0 when `work` returns something true, 1 when false, 2 when it raised (traceback on stderr)."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            code = 0 if work() else 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def exit_code(pid: int) -> int:
    """Wait for a forked child and return its exit code (negative: the signal that ended it)."""
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop a receiver the tests started: SIGTERM, then SIGKILL if it is still up after `timeout`."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


# A sampled remote parent (the W3C example ids) for spans built by `synthetic_request`.
REMOTE_PARENT = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True,
                             remote=True)


def synthetic_request(telemetry: Telemetry, parent: TraceContext | None = REMOTE_PARENT) -> None:
    """What the three layers produce for one request, built directly (no HTTP, fixed values):
    a SERVER span `/users/{id}` under `parent` (200, http.method and http.path), its
    `pipe-/users/{id}` and `backend-/api/users/{id}` spans, a CLIENT span `/api/users/42` that got
    a 503 (http.url, a float `gatescope.ratio` and a bool `gatescope.cached`), and one server
    and one client record."""
    tracer = telemetry.kit.tracer
    root = tracer.start_root("/users/{id}", KIND_SERVER, parent)
    assert isinstance(root, Span), "synthetic_request needs a sampling telemetry"
    root.set_attribute("http.method", "GET")
    root.set_attribute("http.path", "/users/42")
    token = current.set(root)
    try:
        pipe = tracer.start_child("pipe-/users/{id}", KIND_UNSPECIFIED)
        pipe_token = current.set(pipe)
        try:
            backend = tracer.start_child("backend-/api/users/{id}", KIND_UNSPECIFIED)
            backend_token = current.set(backend)
            try:
                client = tracer.start_child("/api/users/42", KIND_CLIENT)
                assert client is not None
                client.set_attribute("http.url", "http://upstream/api/users/42")
                client.set_attribute("gatescope.ratio", 0.5)
                client.set_attribute("gatescope.cached", False)
                client.set_http_status(503)
                client.end()
            finally:
                current.reset(backend_token)
            assert backend is not None
            backend.end()
        finally:
            current.reset(pipe_token)
        assert pipe is not None
        pipe.end()
    finally:
        current.reset(token)
    root.set_http_status(200)
    root.end()
    telemetry.kit.client.record("upstream", "/api/users/42", "GET", "503", 0, 120, 7.5)
    telemetry.kit.server.record("gw", "/users/{id}", "GET", "200", 10, 2048, 12.0)


class CapturePlugin:
    """A plugin object providing the `capture` exporter."""

    @hookimpl
    def gatescope_register_exporters(self, register: Callable[[type], None]) -> None:
        register(CapturingExporter)


class PluginHarness:
    """The installed plugins plus temporary ones, and the Telemetry instances built from them."""

    def __init__(self) -> None:
        self.pm, self.infos = load_plugins()
        self._telemetries: list[Telemetry] = []

    def register(self, plugin: Any, name: str | None = None) -> None:
        self.pm.register(plugin, name=name)

    def registry(self) -> ExporterRegistry:
        return build_registry(self.pm, self.infos)

    def telemetry(self, document: Mapping[str, Any], *, start: bool = True) -> Telemetry:
        registry = self.registry()
        telemetry = Telemetry(load_config(document, registry), registry=registry,
                              plugin_manager=self.pm)
        self._telemetries.append(telemetry)
        if start:
            telemetry.start()
        return telemetry

    def close(self) -> None:
        for telemetry in self._telemetries:
            telemetry.shutdown(2.0)


def exporter_of(telemetry: Telemetry, name: str) -> Any:
    """The running exporter instance configured under `exporters.<name>`."""
    for exporter in telemetry.exporters:
        if exporter.name == name:
            return exporter
    raise KeyError(name)


try:
    import pytest
except ImportError:  # pragma: no cover - only for use outside pytest
    pass
else:

    @pytest.fixture
    def gatescope_plugins() -> Iterator[PluginHarness]:
        """A PluginHarness with the capture exporter registered; everything shut down after."""
        harness = PluginHarness()
        harness.register(CapturePlugin(), "gatescope-capture")
        yield harness
        harness.close()
