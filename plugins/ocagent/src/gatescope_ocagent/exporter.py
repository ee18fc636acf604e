"""The `ocagent` exporter: spans and metrics to an OpenCensus agent over gRPC streams."""

from __future__ import annotations

import importlib.metadata
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import grpc
from gatescope.exporter import (
    METRICS,
    TRACES,
    BaseExporter,
    ExporterContext,
    ExporterStartError,
)
from gatescope.metrics import MetricsSnapshot
from gatescope.pipeline import ExportError
from gatescope.spans import SpanRecord

from gatescope_ocagent.config import OcagentConfig
from gatescope_ocagent.convert import make_node, metrics_request, metrics_to_proto, trace_request
from gatescope_ocagent.protos import (
    METRICS_EXPORT,
    TRACE_EXPORT,
    AgentProtos,
    ProtoUnavailable,
    agent_protos,
)

SPANS_PER_MESSAGE = 512  # keeps each message far below gRPC's default 4 MiB receive limit
METRICS_PER_MESSAGE = 64
# Failures worth another attempt; the rest (bad request, auth, unimplemented) are not.
RETRYABLE = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
})
# Failures meaning the connection is gone: wait `reconnection`, then dial again.
DISCONNECTED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class OcagentExporter(BaseExporter):
    """One export = one Export stream (Node first), so every delivery is confirmed by the agent."""

    name: ClassVar[str] = "ocagent"
    config_class: ClassVar[type] = OcagentConfig
    signals: ClassVar[frozenset[str]] = frozenset({TRACES, METRICS})
    config: OcagentConfig

    def __init__(self, config: OcagentConfig, context: ExporterContext) -> None:
        super().__init__(config, context)
        self._lock = threading.Lock()
        self._protos: AgentProtos | None = None
        self._node: Any = None
        self._channel: grpc.Channel | None = None
        self._calls: dict[str, Callable[..., Any]] = {}
        self._started = False
        self._retry_at = 0.0  # monotonic time before which exports fail fast (agent away)
        self._redial = False
        self._metadata = config.metadata()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        problems = self.config.header_problems()
        if problems:
            raise ExporterStartError("ocagent: gRPC would refuse these headers: "
                                     + "; ".join(problems))
        try:
            self._protos = agent_protos()
        except ProtoUnavailable as exc:
            raise ExporterStartError(
                f"ocagent: cannot load the OpenCensus agent protocol: {exc}") from exc
        self._node = self._make_node()
        with self._lock:
            self._dial()
            self._started = True

    def shutdown(self, timeout: float) -> None:
        with self._lock:
            self._started = False
            channel, self._channel = self._channel, None
            self._calls = {}
        if channel is not None:
            channel.close()

    def after_fork_in_child(self) -> None:
        """A child process gets its own connection and its own pid in the Node."""
        self._lock = threading.Lock()
        self._channel = None  # the parent's channel is not usable here; never close it
        self._calls = {}
        if self._protos is not None:
            self._node = self._make_node()
        self._redial = True

    def _make_node(self) -> Any:
        assert self._protos is not None
        return make_node(self._protos, self.config.effective_service_name, time.time_ns(),
                         f"gatescope-ocagent {_version('gatescope-ocagent')}",
                         f"gatescope {_version('gatescope')}")

    def _dial(self) -> None:
        """Open a channel (lazy: connecting happens on the first export, never here)."""
        assert self._protos is not None
        backoff_ms = max(100, int(self.config.reconnection * 1000))
        options = [
            ("grpc.initial_reconnect_backoff_ms", backoff_ms),
            ("grpc.min_reconnect_backoff_ms", backoff_ms),
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
            ("grpc.enable_retries", 0),  # gatescope's pipeline owns retries
        ]
        compression = grpc.Compression.Gzip if self.config.enable_compression else None
        target = self.config.target
        if self.config.insecure:
            channel = grpc.insecure_channel(target, options, compression)
        else:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(), options,
                                          compression)
        protos = self._protos
        self._channel = channel
        self._calls = {
            TRACES: channel.stream_stream(
                TRACE_EXPORT, request_serializer=_serialize,
                response_deserializer=protos.ExportTraceServiceResponse.FromString),
            METRICS: channel.stream_stream(
                METRICS_EXPORT, request_serializer=_serialize,
                response_deserializer=protos.ExportMetricsServiceResponse.FromString),
        }

    # --- export ---------------------------------------------------------------------------------

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        protos, node = self._ready()
        messages = [
            trace_request(protos, node if i == 0 else None, spans[i:i + SPANS_PER_MESSAGE])
            for i in range(0, len(spans), SPANS_PER_MESSAGE)
        ]
        if messages:
            self._stream(TRACES, messages)

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        protos, node = self._ready()
        metrics = metrics_to_proto(protos, snapshot)
        messages = [
            metrics_request(protos, node if i == 0 else None, metrics[i:i + METRICS_PER_MESSAGE])
            for i in range(0, len(metrics), METRICS_PER_MESSAGE)
        ]
        if messages:
            self._stream(METRICS, messages)

    def _ready(self) -> tuple[AgentProtos, Any]:
        if self._protos is None or self._node is None:
            raise ExportError("ocagent exporter is not started", retryable=False)
        return self._protos, self._node

    def _stream(self, signal: str, messages: list[Any]) -> None:
        """Send the messages on one Export stream and wait until the agent closes it."""
        target = self.config.target
        with self._lock:
            if not self._started:
                raise ExportError("ocagent exporter is shut down", retryable=False)
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                raise ExportError(f"agent at {target} unreachable; reconnecting in {wait:.1f}s")
            if self._redial or self._channel is None:
                old = self._channel
                self._dial()
                self._redial = False
                if old is not None:
                    old.close()
            call = self._calls[signal]
        try:
            responses = call(iter(messages), timeout=self.context.export_timeout,
                              metadata=self._metadata, wait_for_ready=False)
            for _ in responses:
                pass  # the agent may answer; the stream's final status is what counts
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
            details = exc.details() if callable(getattr(exc, "details", None)) else ""
            if code in DISCONNECTED:
                with self._lock:
                    self._retry_at = time.monotonic() + self.config.reconnection
                    self._redial = True
            raise ExportError(f"ocagent {signal} export to {target} failed: {code.name}: {details}",
                              retryable=code in RETRYABLE) from None


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data
