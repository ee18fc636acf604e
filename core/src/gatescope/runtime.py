"""`Telemetry`: the one place that ties config, plugins, hot path, pipeline and integrations."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref
from collections.abc import Mapping
from types import FrameType
from typing import Any

import attrs
import pluggy

from gatescope.config import EndpointTelemetry, TelemetryConfig, load_config
from gatescope.exporter import METRICS, TRACES, ExporterContext, ExporterStartError
from gatescope.filters import Predicate, compile_filters
from gatescope.metrics import COUNT, MetricsSnapshot, View, ViewData
from gatescope.offload import OffloadedExporter, offloadable
from gatescope.pipeline import Pipeline
from gatescope.plugins import ExporterRegistry, build_registry, load_plugins
from gatescope.settings import ConfigError
from gatescope.stats import LayerRecorder, Stats, TagOptions
from gatescope.tracing import Tracer

log = logging.getLogger("gatescope")
EXIT_DEADLINE = 5.0  # seconds the interpreter-exit drain may take


@attrs.frozen
class Kit:
    """Plain callables and objects the layer integrations need; no plugin machinery inside."""

    tracer: Tracer
    server: LayerRecorder
    client: LayerRecorder
    router: Predicate
    pipe: Predicate
    backend: Predicate
    tags: TagOptions
    endpoints: Mapping[str, EndpointTelemetry]


class Telemetry:
    """Built from a krakend.json; starts exporters and hands out the three layers' integrations."""

    def __init__(self, config: TelemetryConfig, *, registry: ExporterRegistry | None = None,
                 plugin_manager: pluggy.PluginManager | None = None) -> None:
        if registry is None or plugin_manager is None:
            plugin_manager, infos = load_plugins()
            registry = build_registry(plugin_manager, infos)
        if registry.errors:
            raise ConfigError(registry.errors)
        self.config = config
        self.registry = registry
        settings = config.settings
        tags = TagOptions()
        for section in config.exporters:
            options = getattr(section.config, "stats_tag_options", None)
            if callable(options):
                tags = tags.merge(options())
        self.stats = Stats(tags, settings.max_tag_sets)
        self.pipeline = Pipeline(settings.queue_size, settings.batch_size, settings.export_timeout)
        self.pipeline.leadership = self.stats.push_leadership  # one pusher per directory
        self.stats.add_provider(self._self_views)
        sampler = plugin_manager.hook.gatescope_make_sampler(config=config)
        filters = [f for group in plugin_manager.hook.gatescope_layer_filters(config=config)
                   for f in (group or ())]
        predicates = compile_filters(filters)
        self.tracer = Tracer(sampler, self.pipeline.submit)
        self.kit = Kit(
            tracer=self.tracer, server=self.stats.server, client=self.stats.client,
            router=predicates["router"], pipe=predicates["pipe"], backend=predicates["backend"],
            tags=tags, endpoints={e.endpoint: e for e in config.endpoints},
        )
        self.exporters: list[Any] = []
        for section in config.exporters:
            info = registry.exporters[section.name]
            context = ExporterContext(
                service_name=config.service_name,
                reporting_period=config.reporting_period,
                logger=logging.getLogger(f"gatescope.exporter.{section.name}"),
                metrics=self.stats.snapshot,
                stats_tag_options=tags,
                export_timeout=settings.export_timeout,
            )
            exporter = info.exporter_class(section.config, context)
            if settings.export_process and offloadable(exporter):
                exporter = OffloadedExporter(exporter, section.config, context)
            self.exporters.append(exporter)
            signals = exporter.signals
            period = context.period(getattr(exporter, "default_period", 10.0)) \
                if METRICS in signals else None
            if TRACES in signals or METRICS in signals:
                self.pipeline.add(exporter, section.name, period, self.stats.snapshot)
        self._started = False
        self._stopped = False
        self._lock = threading.RLock()  # re-entrant: the SIGTERM drain may run inside start()

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, start: bool = True) -> Telemetry:
        """Read a krakend.json and start telemetry as KrakenD would."""
        return cls.from_source(os.fspath(path), start=start)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, start: bool = True) -> Telemetry:
        """A krakend.json document already loaded (or built in code)."""
        return cls.from_source(document, start=start)

    @classmethod
    def from_source(cls, source: Any, *, start: bool = True) -> Telemetry:
        pm, infos = load_plugins()
        registry = build_registry(pm, infos)
        if registry.errors:
            raise ConfigError(registry.errors)
        telemetry = cls(load_config(source, registry), registry=registry, plugin_manager=pm)
        if start:
            telemetry.start()
        return telemetry

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Telemetry:
        """Start exporters (bind ports, open clients) and the export threads."""
        with self._lock:
            if self._started:
                return self
            started: list[Any] = []
            for exporter in self.exporters:
                try:
                    exporter.start()
                except ExporterStartError:
                    self._stop_exporters(started)
                    raise
                except Exception as exc:
                    self._stop_exporters(started)
                    raise ExporterStartError(
                        f"exporter {exporter.name!r} failed to start: {type(exc).__name__}: {exc}"
                    ) from exc
                started.append(exporter)
            self.pipeline.start()
            self._started = True
        _register_exit(self)
        return self

    @staticmethod
    def _stop_exporters(exporters: list[Any]) -> None:
        for exporter in exporters:
            try:
                exporter.shutdown(1.0)
            except Exception:
                log.exception("gatescope: exporter %r failed to shut down", exporter.name)

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver queued spans and push metrics now; True when everything was delivered."""
        if not self._started or self._stopped:
            return not self.pipeline.queue
        return self.pipeline.flush(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush and stop within `timeout`; True when everything was delivered."""
        with self._lock:
            if self._stopped:
                return True
            self._stopped = True
            _live.discard(self)  # nothing left to drain at exit or to restart after a fork
            if not self._started:
                return True
        return self.pipeline.shutdown(timeout)

    def __enter__(self) -> Telemetry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def metrics(self) -> MetricsSnapshot:
        """A snapshot of every view now (what stats exporters receive)."""
        return self.stats.snapshot()

    def _self_views(self) -> list[ViewData]:
        views = self.pipeline.self_views()
        folded = self.stats.folded()
        views.append(ViewData(
            View("gatescope/tag_sets_folded", "Records folded into the overflow row because a "
                 "view reached max_tag_sets", "1", COUNT, ("view",), internal=True),
            0, {(name,): count for name, count in folded.items()},
        ))
        return views

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()  # re-entrant: the SIGTERM drain may run inside start()
        self.stats.reset_after_fork()
        self.pipeline.reset_after_fork()
        for exporter in self.exporters:
            hook = getattr(exporter, "after_fork_in_child", None)
            if hook is None:
                continue
            try:
                hook()
            except Exception as exc:  # one exporter's failure must not cost the others
                log.warning("gatescope: exporter %r failed to reset after fork: %s: %s",
                            exporter.name, type(exc).__name__, exc)
        if self._started and not self._stopped:
            self.pipeline.start()

    # --- integrations (the three layers) ------------------------------------------------------

    def asgi(self, app: Any, **options: Any) -> Any:
        """Wrap an ASGI app with the router layer."""
        from gatescope.router.asgi import TelemetryASGIMiddleware

        return TelemetryASGIMiddleware(app, self.kit, **options)

    def wsgi(self, app: Any, **options: Any) -> Any:
        """Wrap a WSGI app with the router layer."""
        from gatescope.router.wsgi import TelemetryWSGIMiddleware

        return TelemetryWSGIMiddleware(app, self.kit, **options)

    def pipe(self, endpoint: str) -> Any:
        """The pipe layer for one endpoint: a decorator and a (async) context manager."""
        from gatescope.pipe import Pipe

        return Pipe(self.kit, endpoint)

    def backend(self, url_pattern: str, path_aggregation: str | None = None) -> Any:
        """The backend layer for one `url_pattern`: `backend-<url_pattern>` span (decorator or
        (async) context manager); client calls inside get their path tag from the pattern."""
        from gatescope.backend import Backend

        return Backend(self.kit, url_pattern, path_aggregation)

    def httpx_transport(self, transport: Any = None, **options: Any) -> Any:
        from gatescope.backend.httpx import TelemetryTransport

        return TelemetryTransport(self.kit, transport, **options)

    def async_httpx_transport(self, transport: Any = None, **options: Any) -> Any:
        from gatescope.backend.httpx import AsyncTelemetryTransport

        return AsyncTelemetryTransport(self.kit, transport, **options)

    def httpx_client(self, **kwargs: Any) -> Any:
        """An `httpx.Client` whose calls are the backend layer."""
        import httpx

        return httpx.Client(transport=self.httpx_transport(kwargs.pop("transport", None)), **kwargs)

    def async_httpx_client(self, **kwargs: Any) -> Any:
        """An `httpx.AsyncClient` whose calls are the backend layer."""
        import httpx

        return httpx.AsyncClient(
            transport=self.async_httpx_transport(kwargs.pop("transport", None)), **kwargs
        )

    def requests_session(self, session: Any = None) -> Any:
        """A `requests.Session` whose calls are the backend layer."""
        from gatescope.backend.requests import instrument_session

        return instrument_session(self.kit, session)

    def aiohttp_trace_config(self) -> Any:
        """An `aiohttp.TraceConfig` making a `ClientSession`'s calls the backend layer."""
        from gatescope.backend.aiohttp import trace_config

        return trace_config(self.kit)


_live: weakref.WeakSet[Telemetry] = weakref.WeakSet()
_hooks_installed = False


def _register_exit(telemetry: Telemetry) -> None:
    global _hooks_installed
    _live.add(telemetry)
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_drain_at_exit)
        os.register_at_fork(after_in_child=_after_fork)
        _install_sigterm_drain()


def _drain_at_exit() -> None:
    for telemetry in list(_live):
        telemetry.shutdown(EXIT_DEADLINE)


def _install_sigterm_drain() -> None:
    """Drain on SIGTERM where the process would otherwise die without running atexit.

    uvicorn stops on SIGTERM, restores the handler it found and re-raises the signal: with the
    default action there, the process ends before atexit and queued spans are lost. Installed
    only from the main thread over the default action, so no handler of the application or of a
    server (gunicorn's workers install their own and exit through atexit) is ever replaced.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _drain_on_sigterm)
    except (ValueError, OSError):  # no signals here (embedded interpreter, restricted platform)
        return


def _drain_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Deliver what is queued (bounded by EXIT_DEADLINE), then terminate as the default would."""
    try:
        _drain_at_exit()
    finally:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


def _after_fork() -> None:
    for telemetry in list(_live):
        try:
            telemetry._after_fork_in_child()
        except Exception:  # never leave the next instance with its parent's held locks
            log.exception("gatescope: telemetry failed to reset after fork")
