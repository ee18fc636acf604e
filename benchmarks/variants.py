"""The apps under test: one scenario (router, gateway) wrapped by each instrumentation variant."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sinks import Sink
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

VARIANTS = ("bare", "floor", "prometheus_client", "gatescope-0", "gatescope-100",
            "gatescope-100-process", "otel-off", "otel-on")
SCENARIOS = ("router", "gateway")
UPSTREAM_URL = "http://upstream.local/items/42"


@dataclass
class Variant:
    """A ready ASGI app plus what must be stopped after the run."""

    name: str
    scenario: str
    app: Any
    closers: list[Callable[[], Any]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


def upstream_app() -> Starlette:
    """The in-process upstream the gateway calls through httpx.ASGITransport."""

    async def item(request: Request) -> Response:
        return JSONResponse({"id": request.path_params["id"], "name": "widget", "price": 12.5})

    return Starlette(routes=[Route("/items/{id}", item)])


def _router_app() -> Starlette:
    async def user(request: Request) -> Response:
        return PlainTextResponse("hello " + request.path_params["id"])

    return Starlette(routes=[Route("/users/{id}", user)])


def _gateway_app(client: httpx.AsyncClient, pipe: Callable[[Any], Any] | None = None,
                 backend: Any = None) -> Starlette:
    async def merge(request: Request) -> Response:
        if backend is not None:
            async with backend:
                upstream = await client.get(UPSTREAM_URL)
        else:
            upstream = await client.get(UPSTREAM_URL)
        return JSONResponse({"user": request.path_params["id"], "item": upstream.json()})

    handler = pipe(merge) if pipe is not None else merge
    return Starlette(routes=[Route("/users/{id}", handler)])


def _prometheus_client_middleware(app: Any) -> Any:
    """The minimal hand-written prometheus_client middleware: one counter, one histogram."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    requests = Counter("http_requests", "Requests", ("method", "status"), registry=registry)
    latency = Histogram("http_request_duration_seconds", "Latency", ("method",), registry=registry)
    perf = time.perf_counter

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = perf()
        status = [500]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            method = scope["method"]
            requests.labels(method, str(status[0])).inc()
            latency.labels(method).observe(perf() - start)

    return middleware


def _floor_middleware(app: Any) -> Any:
    """The least any router layer does: time the request, learn its status, count body bytes.

    Nothing is recorded or traced: the gap between this and gatescope is what aggregation and
    spans cost; the gap between this and bare is the floor no router layer can go under."""
    perf = time.perf_counter_ns
    seen: list[tuple[int, int, int]] = []

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        start = perf()
        state = [0, 0]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                state[0] = message["status"]
            else:
                state[1] += len(message.get("body", b""))
            await send(message)

        await app(scope, receive, sending)
        seen.append((state[0], state[1], perf() - start))
        if len(seen) > 1000:
            seen.clear()

    return middleware


class _FloorTransport(httpx.AsyncBaseTransport):
    """The least a backend layer does on the wire: fresh ids in KrakenD's B3 headers plus W3C
    traceparent (what gatescope sends), taken off the request again once sent (as gatescope
    does, so httpx's cookie handling does not copy them), and the same response handed back."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        ids = b"%048x" % random.getrandbits(192)
        trace, span = ids[:32], ids[32:]
        items = request.headers._list  # httpx's raw header list: the cheapest way in
        items.extend((
            (b"X-B3-TraceId", b"x-b3-traceid", trace), (b"X-B3-SpanId", b"x-b3-spanid", span),
            (b"X-B3-Sampled", b"x-b3-sampled", b"0"),
            (b"traceparent", b"traceparent", b"00-%s-%s-00" % (trace, span))))
        try:
            return await self._transport.handle_async_request(request)
        finally:
            del items[-4:]


def _gatescope(rate: int, sink: Sink | None, export_process: bool = False) -> Any:
    from gatescope.runtime import Telemetry

    exporters: dict[str, Any] = {"prometheus": {"port": 0, "listen_ip": "127.0.0.1",
                                                "tag_method": True, "tag_statuscode": True}}
    if sink is not None:
        exporters["jaeger"] = {"service_name": "bench", "agent_endpoint": f"127.0.0.1:{sink.port}"}
    document = {"version": 3, "name": "bench", "extra_config": {"telemetry/opencensus": {
        "sample_rate": rate, "reporting_period": 0, "export_process": export_process,
        "exporters": exporters}}}
    return Telemetry.from_dict(document)


def _otel(sampled: bool) -> tuple[Any, Any, Callable[[], None]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

    class NullExporter(SpanExporter):
        """Accepts every batch; the SDK still builds, batches and hands over every span."""

        spans = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            NullExporter.spans += len(spans)
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider(sampler=ALWAYS_ON if sampled else ParentBased(ALWAYS_OFF))
    tracer_provider.add_span_processor(BatchSpanProcessor(NullExporter()))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

    def close() -> None:
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return tracer_provider, meter_provider, close


def build(scenario: str, name: str) -> Variant:
    """Build the `scenario` app wrapped by the instrumentation variant `name`."""
    closers: list[Callable[[], Any]] = []
    upstream = httpx.ASGITransport(app=upstream_app())
    telemetry = None
    otel: tuple[Any, Any, Callable[[], None]] | None = None
    if name.startswith("gatescope-"):
        rate = int(name.split("-")[1])
        # -unexported: spans made, ended and queued, then dropped (no trace exporter): what a
        # sampled request costs before any encoding
        sink = Sink("udp") if rate and not name.endswith("-unexported") else None
        telemetry = _gatescope(rate, sink, name.endswith("-process"))
        closers.append(lambda: telemetry.shutdown(5))
        if sink is not None:
            closers.append(sink.close)
    elif name.startswith("otel-"):
        otel = _otel(name == "otel-on")
        closers.append(otel[2])
    elif name not in ("bare", "floor", "prometheus_client"):
        raise ValueError(f"unknown variant {name!r}")

    if scenario == "router":
        app: Any = _router_app()
    elif scenario == "gateway":
        transport: Any = upstream
        if telemetry is not None:
            transport = telemetry.async_httpx_transport(upstream)
        elif name == "floor":
            transport = _FloorTransport(upstream)
        client = httpx.AsyncClient(transport=transport)
        if otel is not None:
            from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

            HTTPXClientInstrumentor.instrument_client(client, tracer_provider=otel[0],
                                                      meter_provider=otel[1])
        pipe = telemetry.pipe("/users/{id}") if telemetry is not None else None
        backend = telemetry.backend("/items/{id}") if telemetry is not None else None
        app = _gateway_app(client, pipe, backend)
    else:
        raise ValueError(f"unknown scenario {scenario!r}")

    if telemetry is not None:
        app = telemetry.asgi(app)
    elif otel is not None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        app = OpenTelemetryMiddleware(app, tracer_provider=otel[0], meter_provider=otel[1])
    elif name == "prometheus_client":
        app = _prometheus_client_middleware(app)
    elif name == "floor":
        app = _floor_middleware(app)
    return Variant(name, scenario, app, closers)
