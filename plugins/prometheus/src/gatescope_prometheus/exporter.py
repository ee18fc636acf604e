"""The `prometheus` exporter: a pull endpoint; one serving worker when processes share stats."""

from __future__ import annotations

import errno
import os
import threading
from typing import ClassVar

from gatescope import METRICS, BaseExporter, ExporterContext, ExporterStartError
from gatescope.multiproc import configured_directory, directory_lock, pid_alive
from prometheus_client.exposition import generate_latest

from gatescope_prometheus.collector import runtime_registry
from gatescope_prometheus.config import PrometheusConfig
from gatescope_prometheus.server import MetricsServer
from gatescope_prometheus.text import TextRenderer

STANDBY_INTERVAL = 1.0  # seconds between a standby worker's attempts to take the port over


class PrometheusExporter(BaseExporter):
    """Serves KrakenD's metric names on `listen_ip:port/metrics`."""

    name: ClassVar[str] = "prometheus"
    config_class: ClassVar[type] = PrometheusConfig
    signals: ClassVar[frozenset[str]] = frozenset({METRICS})
    pushes_metrics: ClassVar[bool] = False
    config: PrometheusConfig

    def __init__(self, config: PrometheusConfig, context: ExporterContext) -> None:
        super().__init__(config, context)
        self.views = TextRenderer(config.namespace)
        self.runtime = runtime_registry()
        self.directory = configured_directory()
        self.server: MetricsServer | None = None
        self._thread: threading.Thread | None = None
        self._standby: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # --- what tests and users read --------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The bound port while this process serves /metrics, else None."""
        server = self.server
        return server.port if server is not None else None

    def render(self) -> list[bytes]:
        """One scrape's body (text format 0.0.4) in pieces: gatescope's views, then process and
        Python metrics."""
        pieces = self.views.pieces(self.context.metrics())
        pieces.append(generate_latest(self.runtime))
        return pieces

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.directory is None or self.config.port == 0:
            try:
                self._serve(self._bind())
            except OSError as exc:
                raise self._start_error(exc) from exc
            return
        with directory_lock(self.directory):
            try:
                server = self._bind()
            except OSError as exc:
                holder = self._holder()
                if exc.errno != errno.EADDRINUSE or holder is None:
                    raise self._start_error(exc) from exc
                self.log.info("gatescope: /metrics on port %d is served by worker %d; this "
                              "worker stands by to take over", self.config.port, holder)
                self._start_standby()
                return
            self._claim()
        self._serve(server)

    def _bind(self) -> MetricsServer:
        return MetricsServer((self.config.listen_ip, self.config.port), self.render,
                             self.config.read_timeout, self.config.max_connections)

    def _start_error(self, exc: OSError) -> ExporterStartError:
        reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        return ExporterStartError(
            f"prometheus exporter cannot listen on {self.config.listen_ip}:{self.config.port}: "
            f"{reason} (port {self.config.port})"
        )

    def _serve(self, server: MetricsServer) -> None:
        with self._lock:
            self.server = server
            self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                            name="gatescope-prometheus", daemon=True)
            self._thread.start()
        self.log.info("gatescope: prometheus metrics on http://%s:%d/metrics",
                      self.config.listen_ip, server.port)

    # --- multi-process: who serves --------------------------------------------------------------

    def _claim_path(self) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, f"prometheus-{self.config.port}.pid")

    def _claim(self) -> None:
        """Record this process as the server of the port (read under the directory lock)."""
        with open(self._claim_path(), "w", encoding="ascii") as handle:
            handle.write(str(os.getpid()))

    def _holder(self) -> int | None:
        """The live sibling process serving the port, if the claim file names one."""
        try:
            with open(self._claim_path(), encoding="ascii") as handle:
                pid = int(handle.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid > 0 and pid != os.getpid() and pid_alive(pid) else None

    def _start_standby(self) -> None:
        self._standby = threading.Thread(target=self._stand_by, name="gatescope-prometheus-standby",
                                         daemon=True)
        self._standby.start()

    def _stand_by(self) -> None:
        """Retry the port until the serving worker is gone, then serve from this process."""
        assert self.directory is not None
        while not self._stop.wait(STANDBY_INTERVAL):
            with directory_lock(self.directory):
                if self._stop.is_set():
                    return
                try:
                    server = self._bind()
                except OSError:
                    continue
                self._claim()
            self._serve(server)
            return

    # --- fork and shutdown ----------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """The parent keeps serving: drop the inherited socket; in multi-process mode, stand by."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server, self.server, self._thread = self.server, None, None
        self._standby = None
        if server is not None:
            server.socket.close()  # close, never shutdown(): the socket is the parent's too
        if self.directory is not None and self.config.port != 0:
            self._start_standby()

    def shutdown(self, timeout: float) -> None:
        self._stop.set()
        with self._lock:
            server, thread = self.server, self._thread
            self.server = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout)
        if self.directory is not None and self.config.port != 0:
            with directory_lock(self.directory):
                if self._holder_is_me():
                    os.remove(self._claim_path())

    def _holder_is_me(self) -> bool:
        try:
            with open(self._claim_path(), encoding="ascii") as handle:
                return handle.read().strip() == str(os.getpid())
        except FileNotFoundError:
            return False


