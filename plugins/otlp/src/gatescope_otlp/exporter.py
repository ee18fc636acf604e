"""The `otlp` exporter: translation plus one transport, run on gatescope's worker thread."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import gatescope
from gatescope import (
    METRICS,
    TRACES,
    BaseExporter,
    ExporterContext,
    MetricsSnapshot,
    RateLimitedLog,
    SpanRecord,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from gatescope_otlp.config import DEFAULT_GRPC_PORT, GRPC, OtlpConfig
from gatescope_otlp.grpc_transport import GrpcTransport, grpc_target
from gatescope_otlp.http_transport import METRICS_PATH, TRACES_PATH, HttpTransport
from gatescope_otlp.translate import Translator

VERSION = "0.1.0"
USER_AGENT = f"gatescope-otlp/{VERSION}"


def resource_attributes(config: OtlpConfig, context: ExporterContext) -> dict[str, str]:
    """service.name: `service_name`, else `resource_attributes`, else the config's name."""
    attributes = {
        "telemetry.sdk.name": "gatescope",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": gatescope.__version__,
        "service.name": context.service_name,
        **config.resource_attributes,
    }
    if config.service_name:
        attributes["service.name"] = config.service_name
    return attributes


class OtlpExporter(BaseExporter):
    """Sends spans and cumulative metrics to an OpenTelemetry collector over OTLP."""

    name: ClassVar[str] = "otlp"
    config_class: ClassVar[type] = OtlpConfig
    signals: ClassVar[frozenset[str]] = frozenset({TRACES, METRICS})
    config: OtlpConfig

    def __init__(self, config: OtlpConfig, context: ExporterContext) -> None:
        super().__init__(config, context)
        self.signals = frozenset(  # type: ignore[misc]
            signal for signal, wanted in ((TRACES, config.traces), (METRICS, config.metrics))
            if wanted
        )
        self.timeout = config.timeout if config.timeout is not None else context.export_timeout
        self.translator = Translator(resource_attributes(config, context), "gatescope",
                                     gatescope.__version__)
        self.transport: HttpTransport | GrpcTransport = self._make_transport()
        self._warn = RateLimitedLog(self.log)

    def _make_transport(self) -> HttpTransport | GrpcTransport:
        config = self.config
        compress = config.compression == "gzip"
        # TLS files are read once, as the exporter is made (the config check read them first)
        if config.protocol == GRPC:
            return GrpcTransport(grpc_target(config.url, DEFAULT_GRPC_PORT), config.uses_tls,
                                 config.headers, self.timeout, compress, USER_AGENT,
                                 config.pem_files() if config.uses_tls else (None, None, None))
        custom = config.certificate is not None or config.client_certificate is not None
        return HttpTransport(config.url, config.headers, self.timeout, compress, USER_AGENT,
                             config.ssl_context() if custom else None)

    def start(self) -> None:
        self.translator.fallback_start_ns = time.time_ns()
        if isinstance(self.transport, GrpcTransport):
            self.transport.open()  # connects lazily: an absent collector is an export error

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        request = self.translator.traces(spans)
        if isinstance(self.transport, GrpcTransport):
            response = self.transport.export("traces", request)
        else:
            response = self.transport.export(TRACES_PATH, request, ExportTraceServiceResponse)
        self._partial(response, "spans", response.partial_success.rejected_spans
                      if response.HasField("partial_success") else 0)

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        request = self.translator.metrics(snapshot)
        if not request.resource_metrics:
            return
        if isinstance(self.transport, GrpcTransport):
            response = self.transport.export("metrics", request)
        else:
            response = self.transport.export(METRICS_PATH, request, ExportMetricsServiceResponse)
        self._partial(response, "data points", response.partial_success.rejected_data_points
                      if response.HasField("partial_success") else 0)

    def _partial(self, response: Any, what: str, rejected: int) -> None:
        """OTLP partial success: the collector kept the rest; retrying would duplicate it."""
        if rejected or (response.HasField("partial_success")
                        and response.partial_success.error_message):
            self._warn.warning(f"partial:{what}", "otlp: the collector rejected %d %s: %s",
                               rejected, what, response.partial_success.error_message[:200])

    def shutdown(self, timeout: float) -> None:
        self.transport.close()

    def after_fork_in_child(self) -> None:
        self.transport.reset()
