"""OTLP/gRPC through grpcio's generated stubs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import grpc
from gatescope import ExportError
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

# OTLP/gRPC: the codes that mean "try again later"; every other failure is final.
RETRYABLE_CODES = frozenset({
    grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
})


def grpc_target(endpoint: str, default_port: int) -> str:
    """`host:port` from `http(s)://host[:port]` or a bare `host:port`."""
    if "://" not in endpoint:
        return endpoint
    parts = urlsplit(endpoint)
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port or default_port}"


class GrpcTransport:
    """One channel per exporter, used only from its worker thread; rebuilt after a fork."""

    def __init__(self, target: str, tls: bool, headers: Mapping[str, str], timeout: float,
                 compress: bool, user_agent: str,
                 pem: tuple[bytes | None, bytes | None, bytes | None] = (None, None, None)) -> None:
        self.target = target
        self.tls = tls
        self.pem = pem  # CA certificates, client key, client certificate (None: gRPC's own)
        self.metadata = tuple((name.lower(), value) for name, value in headers.items())
        self.timeout = timeout
        self.compression = grpc.Compression.Gzip if compress else grpc.Compression.NoCompression
        self.user_agent = user_agent
        self.channel: grpc.Channel | None = None
        self.stubs: dict[str, Any] = {}

    def open(self) -> None:
        options = [("grpc.primary_user_agent", self.user_agent)]
        if self.tls:
            self.channel = grpc.secure_channel(self.target,
                                               grpc.ssl_channel_credentials(*self.pem),
                                               options=options, compression=self.compression)
        else:
            self.channel = grpc.insecure_channel(self.target, options=options,
                                                 compression=self.compression)
        self.stubs = {"traces": TraceServiceStub(self.channel),  # type: ignore[no-untyped-call]
                      "metrics": MetricsServiceStub(self.channel)}  # type: ignore[no-untyped-call]

    def export(self, signal: str, request: Message) -> Any:
        """Call `Export` on the signal's service; raises ExportError on any failure."""
        if self.channel is None:
            self.open()
        try:
            return self.stubs[signal].Export(request, timeout=self.timeout,
                                             metadata=self.metadata)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise ExportError(f"otlp: grpc export of {signal} to {self.target} failed: "
                              f"{code.name}: {details}", retryable=code in RETRYABLE_CODES) from exc

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.channel = None
        self.stubs = {}

    def reset(self) -> None:
        """In a forked child: forget the parent's channel (closing it could block) and reconnect."""
        self.channel = None
        self.stubs = {}
