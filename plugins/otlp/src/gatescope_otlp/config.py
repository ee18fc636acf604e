"""The `exporters.otlp` section: where to send, how, and what the resource says."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
from gatescope.settings import (
    Problems,
    boolean,
    describe,
    duration,
    host_port,
    one_of,
    setting,
    string,
    string_map,
    url,
)

HTTP_PROTOBUF = "http/protobuf"
GRPC = "grpc"
DEFAULT_ENDPOINTS = {HTTP_PROTOBUF: "http://localhost:4318", GRPC: "http://localhost:4317"}
DEFAULT_GRPC_PORT = 4317
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
_as_url = url(("http", "https"))


def endpoint(value: Any) -> str:
    """An `http(s)://` URL, or (gRPC only, as OTLP allows) a bare `host:port`."""
    try:
        return str(_as_url(value))
    except ValueError:
        pass
    try:
        host_port(value)
    except ValueError:
        raise ValueError(
            f'expected a URL like "http://collector:4318" or, for grpc, "host:port", '
            f"got {describe(value)}"
        ) from None
    return str(value)


@attrs.frozen
class OtlpConfig:
    endpoint: str | None = setting(
        endpoint, default=None,
        doc="collector URL; default http://localhost:4318 (http/protobuf) or :4317 (grpc)")
    protocol: str = setting(one_of(HTTP_PROTOBUF, GRPC), default=HTTP_PROTOBUF,
                            doc="OTLP transport")
    headers: Mapping[str, str] = setting(string_map, factory=dict, secret=True,
                                      doc="sent with every request (gRPC: as metadata)")
    timeout: float | None = setting(duration, default=None,
                                    doc="per request; default the service's export_timeout")
    compression: str = setting(one_of("gzip", "none"), default="none", doc="request body")
    insecure: bool = setting(boolean, default=False,
                             doc="grpc with a host:port endpoint: plaintext instead of TLS")
    certificate: str | None = setting(
        string(non_empty=True), default=None,
        doc="PEM file of the CA certificates that verify the collector (default: the system's)")
    client_certificate: str | None = setting(
        string(non_empty=True), default=None,
        doc="PEM file of this client's certificate, for collectors that require mutual TLS")
    client_key: str | None = setting(string(non_empty=True), default=None,
                                     doc="PEM file of client_certificate's private key")
    service_name: str | None = setting(string(non_empty=True), default=None,
                                       doc="resource service.name; default the config's name")
    resource_attributes: Mapping[str, str] = setting(string_map, factory=dict,
                                                  doc="extra resource attributes")
    traces: bool = setting(boolean, default=True, doc="export spans")
    metrics: bool = setting(boolean, default=True, doc="export metrics every reporting period")

    def validate(self, path: str, problems: Problems, present: frozenset[str]) -> None:
        """Rules that involve more than one key."""
        if not self.traces and not self.metrics:
            problems.add(path, 'nothing to export: "traces" and "metrics" are both false')
        bare = self.endpoint is not None and "://" not in self.endpoint
        if bare and self.protocol == HTTP_PROTOBUF:
            problems.add(f"{path}.endpoint", 'http/protobuf needs a URL ("http://..." or '
                         '"https://...")')
        if self.insecure and self.protocol != GRPC:
            problems.add(f"{path}.insecure", 'applies to "protocol": "grpc" only')
        elif self.insecure and not bare and "insecure" in present:
            problems.add(f"{path}.insecure", "the endpoint's scheme already decides "
                         "(http:// plaintext, https:// TLS); use it only with host:port")
        self._validate_tls(path, problems)
        for name, value in self.headers.items():
            if not HEADER_NAME.match(name):
                problems.add(f"{path}.headers", f"{describe(name)} is not a valid header name")
            elif "\r" in value or "\n" in value:
                problems.add(f"{path}.headers.{name}", "must not contain line breaks")

    def _validate_tls(self, path: str, problems: Problems) -> None:
        given = [key for key in ("certificate", "client_certificate", "client_key")
                 if getattr(self, key) is not None]
        if given and not self.uses_tls:
            for key in given:
                problems.add(f"{path}.{key}", "applies to TLS endpoints only (https://, or grpc "
                             "without insecure)")
            return
        if (self.client_certificate is None) != (self.client_key is None):
            missing = "client_key" if self.client_key is None else "client_certificate"
            problems.add(f"{path}.{missing}", "mutual TLS needs both client_certificate and "
                         "client_key")
            return
        for key in given:  # each file readable, named where it is not
            try:
                with open(getattr(self, key), "rb"):
                    pass
            except OSError as exc:
                problems.add(f"{path}.{key}", f"cannot be read: {exc.strerror or exc}")
                return
        if self.certificate is not None:
            try:
                ssl.create_default_context(cafile=self.certificate)
            except (OSError, ssl.SSLError) as exc:
                problems.add(f"{path}.certificate", f"holds no usable CA certificates: {exc}")
        if self.client_certificate is not None:
            try:
                ssl.create_default_context().load_cert_chain(self.client_certificate,
                                                             self.client_key)
            except (OSError, ssl.SSLError) as exc:
                problems.add(f"{path}.client_certificate", "and client_key are not a PEM "
                             f"certificate and its private key: {exc}")

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for https:// (raises what reading or loading a file raises)."""
        context = ssl.create_default_context(cafile=self.certificate)
        if self.client_certificate is not None:
            context.load_cert_chain(self.client_certificate, self.client_key)
        return context

    def pem_files(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """The configured CA, client key and client certificate files' bytes (for gRPC)."""
        def read(name: str | None) -> bytes | None:
            if name is None:
                return None
            with open(name, "rb") as handle:
                return handle.read()
        return read(self.certificate), read(self.client_key), read(self.client_certificate)

    @property
    def url(self) -> str:
        """The endpoint in effect (the protocol's default when none is configured)."""
        return self.endpoint or DEFAULT_ENDPOINTS[self.protocol]

    @property
    def uses_tls(self) -> bool:
        if "://" in self.url:
            return urlsplit(self.url).scheme == "https"
        return not self.insecure
