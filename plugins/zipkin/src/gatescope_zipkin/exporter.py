"""The `zipkin` exporter: JSON v2 spans POSTed to the collector, one request per batch."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any, ClassVar

from gatescope import (
    TRACES,
    BaseExporter,
    ExporterContext,
    ExportError,
    ExporterStartError,
    RateLimitedLog,
    SpanRecord,
)
from gatescope.http import Poster

from gatescope_zipkin.config import ZipkinConfig
from gatescope_zipkin.span_text import SpanTextEncoder

CONTENT_TYPE = "application/json"
LOG_INTERVAL = 10.0  # seconds between two warnings about the same recurring failure


def local_endpoint(service_name: str, ip: str, port: int) -> dict[str, Any]:
    """`localEndpoint`: the service, its address in the field its family needs, its own port.

    A host name is resolved (first IPv4 and first IPv6, as openzipkin-go's NewEndpoint does);
    an IPv4-mapped IPv6 address goes into `ipv4`, as the spec prefers.
    """
    endpoint: dict[str, Any] = {"serviceName": service_name}
    if ip:
        for address in _addresses(ip):
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            field = "ipv4" if address.version == 4 else "ipv6"
            endpoint.setdefault(field, str(address))
    if port > 0:
        endpoint["port"] = port
    return endpoint


def _addresses(ip: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(ip)]
    except ValueError:
        pass
    infos = socket.getaddrinfo(ip, None, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


class ZipkinExporter(BaseExporter):
    """Encodes spans on the export worker and POSTs them with the core's export timeout."""

    name: ClassVar[str] = "zipkin"
    config_class: ClassVar[type] = ZipkinConfig
    signals: ClassVar[frozenset[str]] = frozenset({TRACES})
    config: ZipkinConfig

    # server spans arrive with their router's raw HTTP facts; SpanTextEncoder makes the tags
    settles_http_facts = True

    def __init__(self, config: ZipkinConfig, context: ExporterContext) -> None:
        super().__init__(config, context)
        self._warn = RateLimitedLog(self.log, LOG_INTERVAL)
        self._poster: Poster | None = None
        self.local_endpoint: dict[str, Any] = {"serviceName": config.service_name}
        self._encoder: SpanTextEncoder | None = None  # made at start, for the resolved endpoint
        self.spans_sent = 0  # spans the collector accepted (2xx)
        self.requests_sent = 0  # successful POSTs

    def start(self) -> None:
        try:
            self.local_endpoint = local_endpoint(self.config.service_name, self.config.ip,
                                                 self.config.port)
        except OSError as exc:
            raise ExporterStartError(
                f"zipkin: cannot resolve ip {self.config.ip!r} for the local endpoint: {exc}"
            ) from exc
        self._encoder = SpanTextEncoder(self.local_endpoint)
        self._poster = Poster(self.config.collector_url, CONTENT_TYPE,
                              self.context.export_timeout, self._warn)

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        encoder, poster = self._encoder, self._poster
        if encoder is None or poster is None:
            raise ExportError("zipkin exporter is not started", retryable=False)
        body = encoder.body(spans)
        problems, last = encoder.take_problems()
        if problems:
            self._warn.warning("facts", "gatescope: zipkin could not make the HTTP tags of %d "
                               "server spans (last: %r); they are sent without them",
                               problems, last)
        poster.post(body)
        self.requests_sent += 1
        self.spans_sent += len(spans)

    def after_fork_in_child(self) -> None:
        if self._poster is not None:
            self._poster.reset()

    def shutdown(self, timeout: float) -> None:
        if self._poster is not None:
            self._poster.close()
