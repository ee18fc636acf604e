"""TLS to a collector with a private CA (`certificate`) and mutual TLS (`client_certificate`,
`client_key`), over both transports, against real TLS servers; bad files are config errors."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gatescope import ExportError
from gatescope.settings import ConfigError
from gatescope.spans import KIND_SERVER, SpanRecord
from gatescope.testing import PluginHarness, exporter_of, krakend_config
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)

SPANS = [SpanRecord("tls-span", "ab" * 16, "cd" * 8, None, KIND_SERVER, 1, 2, {})]


@dataclass
class Pki:
    ca: Path  # the private CA that signed the server's and the client's certificates
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed neither


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(subject: str, key: Any, issuer: tuple[x509.Name, Any] | None,
                 server: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer is not None else (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name) \
        .public_key(key.public_key()).serial_number(x509.random_serial_number()) \
        .not_valid_before(now - datetime.timedelta(minutes=5)) \
        .not_valid_after(now + datetime.timedelta(days=1)) \
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, *items: Any) -> Path:
    data = b""
    for item in items:
        if isinstance(item, x509.Certificate):
            data += item.public_bytes(serialization.Encoding.PEM)
        else:
            data += item.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, other_key = _key(), _key()
    ca = _certificate("gatescope test CA", ca_key, None)
    other = _certificate("another CA", other_key, None)
    server_key, client_key = _key(), _key()
    server = _certificate("localhost", server_key, (ca.subject, ca_key), server=True)
    client = _certificate("gatescope client", client_key, (ca.subject, ca_key))
    return Pki(_write(folder / "ca.pem", ca), _write(folder / "server.pem", server),
               _write(folder / "server.key", server_key), _write(folder / "client.pem", client),
               _write(folder / "client.key", client_key), _write(folder / "other.pem", other))


class Collector(ThreadingHTTPServer):
    spans: list[str]


class Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest.FromString(
            self.rfile.read(int(self.headers["Content-Length"])))
        self.server.spans += [span.name for resource in request.resource_spans
                              for scope in resource.scope_spans for span in scope.spans]
        body = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _server_context(pki: Pki, mutual: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if mutual:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return context


@pytest.fixture(params=[False, True], ids=["tls", "mutual-tls"])
def https_collector(request: Any, pki: Pki) -> Iterator[tuple[Collector, bool]]:
    server = Collector(("127.0.0.1", 0), Handler)
    server.spans = []
    server.socket = _server_context(pki, request.param).wrap_socket(server.socket,
                                                                    server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, request.param
    server.shutdown()
    server.server_close()


class Receiving(TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[str] = []

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.spans += [span.name for resource in request.resource_spans
                       for scope in resource.scope_spans for span in scope.spans]
        return ExportTraceServiceResponse()


@pytest.fixture(params=[False, True], ids=["tls", "mutual-tls"])
def grpc_collector(request: Any, pki: Pki) -> Iterator[tuple[Receiving, int, bool]]:
    servicer = Receiving()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    add_TraceServiceServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca.read_bytes() if request.param else None,
        require_client_auth=request.param)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield servicer, port, request.param
    server.stop(None)


def otlp(harness: PluginHarness, **section: Any) -> Any:
    telemetry = harness.telemetry(krakend_config({"otlp": {"metrics": False, **section}},
                                                 sample_rate=100))
    return exporter_of(telemetry, "otlp")


def client_files(pki: Pki) -> dict[str, str]:
    return {"client_certificate": str(pki.client_cert), "client_key": str(pki.client_key)}


def test_https_with_the_private_ca_delivers(gatescope_plugins: PluginHarness, pki: Pki,
                                            https_collector: tuple[Collector, bool]) -> None:
    server, mutual = https_collector
    endpoint = f"https://localhost:{server.server_port}"
    exporter = otlp(gatescope_plugins, endpoint=endpoint, certificate=str(pki.ca),
                    **(client_files(pki) if mutual else {}))
    exporter.export_spans(SPANS)
    assert server.spans == ["tls-span"]


def test_https_refuses_a_collector_its_cas_did_not_sign(
        gatescope_plugins: PluginHarness, pki: Pki,
        https_collector: tuple[Collector, bool]) -> None:
    server, mutual = https_collector
    endpoint = f"https://localhost:{server.server_port}"
    for section in ({}, {"certificate": str(pki.other_ca)}):  # the system's CAs, another CA
        exporter = otlp(gatescope_plugins, endpoint=endpoint, **section,
                        **(client_files(pki) if mutual else {}))
        with pytest.raises(ExportError, match="CERTIFICATE_VERIFY_FAILED"):
            exporter.export_spans(SPANS)
    assert server.spans == []


@pytest.mark.parametrize("https_collector", [True], indirect=True, ids=["mutual-tls"])
def test_https_mutual_tls_needs_the_client_certificate(gatescope_plugins: PluginHarness,
                                                       pki: Pki,
                                                       https_collector: tuple[Collector, bool]
                                                       ) -> None:
    server, _ = https_collector
    exporter = otlp(gatescope_plugins, endpoint=f"https://localhost:{server.server_port}",
                    certificate=str(pki.ca))
    with pytest.raises(ExportError, match="failed"):
        exporter.export_spans(SPANS)
    assert server.spans == []


def test_grpc_with_the_private_ca_delivers(gatescope_plugins: PluginHarness, pki: Pki,
                                           grpc_collector: tuple[Receiving, int, bool]) -> None:
    servicer, port, mutual = grpc_collector
    exporter = otlp(gatescope_plugins, protocol="grpc", endpoint=f"https://localhost:{port}",
                    certificate=str(pki.ca), timeout="5s",
                    **(client_files(pki) if mutual else {}))
    exporter.export_spans(SPANS)
    assert servicer.spans == ["tls-span"]


def test_grpc_refuses_a_collector_its_cas_did_not_sign(
        gatescope_plugins: PluginHarness, pki: Pki,
        grpc_collector: tuple[Receiving, int, bool]) -> None:
    servicer, port, mutual = grpc_collector
    exporter = otlp(gatescope_plugins, protocol="grpc", endpoint=f"localhost:{port}",
                    certificate=str(pki.other_ca), timeout="2s",
                    **(client_files(pki) if mutual else {}))
    with pytest.raises(ExportError, match="UNAVAILABLE"):
        exporter.export_spans(SPANS)
    assert servicer.spans == []


@pytest.mark.parametrize("grpc_collector", [True], indirect=True, ids=["mutual-tls"])
def test_grpc_mutual_tls_needs_the_client_certificate(
        gatescope_plugins: PluginHarness, pki: Pki,
        grpc_collector: tuple[Receiving, int, bool]) -> None:
    servicer, port, _ = grpc_collector
    exporter = otlp(gatescope_plugins, protocol="grpc", endpoint=f"localhost:{port}",
                    certificate=str(pki.ca), timeout="2s")
    with pytest.raises(ExportError, match="UNAVAILABLE"):
        exporter.export_spans(SPANS)
    assert servicer.spans == []


@pytest.mark.parametrize(("section", "where", "message"), [
    ({"certificate": "{missing}"}, "certificate", "cannot be read: No such file"),
    ({"certificate": "{client_key}"}, "certificate", "holds no usable CA certificates"),
    ({"client_certificate": "{client_cert}"}, "client_key", "needs both client_certificate"),
    ({"client_key": "{client_key}"}, "client_certificate", "needs both client_certificate"),
    ({"client_certificate": "{client_cert}", "client_key": "{server_key}"},
     "client_certificate", "are not a PEM certificate and its private key"),
    ({"endpoint": "http://localhost:4318", "certificate": "{ca}"}, "certificate",
     "applies to TLS endpoints only"),
    ({"protocol": "grpc", "endpoint": "localhost:4317", "insecure": True,
      "client_certificate": "{client_cert}", "client_key": "{client_key}"}, "client_key",
     "applies to TLS endpoints only"),
])
def test_bad_tls_settings_are_config_errors_naming_the_key(
        gatescope_plugins: PluginHarness, pki: Pki, tmp_path: Path, section: dict[str, Any],
        where: str, message: str) -> None:
    files = {"missing": str(tmp_path / "absent.pem"), "ca": str(pki.ca),
             "client_cert": str(pki.client_cert), "client_key": str(pki.client_key),
             "server_key": str(pki.server_key)}
    section = {"endpoint": "https://localhost:4318",
               **{key: value.format(**files) if isinstance(value, str) else value
                  for key, value in section.items()}}
    with pytest.raises(ConfigError) as caught:
        otlp(gatescope_plugins, **section)
    assert f"exporters.otlp.{where}" in str(caught.value)
    assert message in str(caught.value)
