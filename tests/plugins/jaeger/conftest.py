"""Receivers that behave like Jaeger's agent (UDP) and collector (HTTP), decoding with thriftpy2
loaded from the official IDL in ../shared/reference/jaeger-idl (never with the plugin's encoder)."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import thriftpy2
from gatescope import testing
from gatescope.testing import LocalHTTPServer, QuietHandler
from gatescope.testing import Upstream as Backend
from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
from thriftpy2.thrift import TMessageType
from thriftpy2.transport import TMemoryBuffer

IDL = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "jaeger-idl" / "thrift"
ENDPOINT = "/users/{id}"
URL_PATTERN = "/u/{id}"


def _load_idl() -> tuple[ModuleType, ModuleType]:
    jaeger = thriftpy2.load(str(IDL / "jaeger.thrift"), module_name="jaeger_thrift",
                            include_dirs=[str(IDL)])
    agent = thriftpy2.load(str(IDL / "agent.thrift"), module_name="agent_thrift",
                           include_dirs=[str(IDL)])
    return jaeger, agent


JAEGER, AGENT = _load_idl()


def _remaining(buffer: TMemoryBuffer) -> bytes:
    return buffer.read(1 << 30)


def decode_emit_batch(packet: bytes) -> Any:
    """An agent UDP packet -> jaeger.Batch: a compact oneway `emitBatch` message, nothing after it."""
    buffer = TMemoryBuffer(packet)
    protocol = TCompactProtocolFactory().get_protocol(buffer)
    name, message_type, _ = protocol.read_message_begin()
    assert (name, message_type) == ("emitBatch", TMessageType.ONEWAY)
    args = AGENT.Agent.emitBatch_args()
    args.read(protocol)
    assert _remaining(buffer) == b"", "bytes left after the emitBatch message"
    assert args.batch is not None
    return args.batch


def decode_batch(body: bytes) -> Any:
    """A collector POST body -> jaeger.Batch (bare binary struct, all of the body, required fields)."""
    buffer = TMemoryBuffer(body)
    protocol = TBinaryProtocolFactory().get_protocol(buffer)
    batch = JAEGER.Batch()
    batch.read(protocol)
    if _remaining(buffer) != b"":
        raise ValueError("bytes left after the Batch struct")
    if batch.process is None or batch.spans is None or batch.process.serviceName is None:
        raise ValueError("Batch lacks a required field")
    for span in batch.spans:
        for field in ("traceIdLow", "traceIdHigh", "spanId", "parentSpanId", "operationName",
                      "flags", "startTime", "duration"):
            if getattr(span, field) is None:
                raise ValueError(f"Span lacks required field {field}")
    return batch


def tags_of(span: Any) -> dict[str, Any]:
    """A decoded span's tags as {key: typed value}, checking each tag's type field."""
    out: dict[str, Any] = {}
    for tag in span.tags or []:
        value = {JAEGER.TagType.STRING: tag.vStr, JAEGER.TagType.DOUBLE: tag.vDouble,
                 JAEGER.TagType.BOOL: tag.vBool, JAEGER.TagType.LONG: tag.vLong}[tag.vType]
        assert value is not None, f"tag {tag.key} has no value of its type"
        out[tag.key] = value
    return out


def hex_id(value: int) -> str:
    """A signed i64 from the wire back to 16 hex digits."""
    return f"{value & 0xFFFFFFFFFFFFFFFF:016x}"


def trace_hex(span: Any) -> str:
    return hex_id(span.traceIdHigh) + hex_id(span.traceIdLow)


class UDPListener:
    """A Jaeger-agent stand-in: keeps every datagram received on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(70_000)
            except TimeoutError:
                continue
            except OSError:
                return
            self.packets.append(data)

    def batches(self) -> list[Any]:
        return [decode_emit_batch(p) for p in list(self.packets)]

    def spans(self) -> list[Any]:
        return [span for batch in self.batches() for span in batch.spans]

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.spans()
            if len(spans) >= count:
                return spans
            time.sleep(0.02)
        return self.spans()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class FakeCollector(LocalHTTPServer):
    """Behaves like Jaeger's collector /api/traces: a bare binary `Batch` with
    `Content-Type: application/x-thrift`, else 400; `fail_with` forces an answer."""

    def __init__(self) -> None:
        self.batches: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.rejected = 0
        self.fail_with: list[int] = []  # statuses answered (and consumed) before accepting
        self.lock = threading.Lock()
        collector = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with collector.lock:
                    collector.requests.append({"path": self.path, "headers": dict(self.headers),
                                               "size": len(body)})
                    forced = collector.fail_with.pop(0) if collector.fail_with else None
                if forced is not None:
                    return self.answer(forced)
                content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
                if self.path != "/api/traces" or content_type != "application/x-thrift":
                    return self._reject()
                try:
                    batch = decode_batch(body)
                except Exception:
                    return self._reject()
                with collector.lock:
                    collector.batches.append(batch)
                self.answer(202)

            def _reject(self) -> None:
                with collector.lock:
                    collector.rejected += 1
                self.answer(400)

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}/api/traces"

    def spans(self) -> list[Any]:
        with self.lock:
            return [span for batch in self.batches for span in batch.spans]


@pytest.fixture
def udp_listener() -> Iterator[UDPListener]:
    listener = UDPListener()
    yield listener
    listener.close()


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    server = FakeCollector()
    yield server
    server.close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


def three_layer_request(telemetry: Any, backend: Backend, path: str = "/users/42",
                        headers: dict[str, str] | None = None) -> int:
    """One request through the three layers to a real upstream (gatescope.testing's helper)."""
    return testing.three_layer_request(telemetry, backend, path, endpoint=ENDPOINT,
                                       url_pattern=URL_PATTERN, headers=headers)


def layered_document(exporter: dict[str, Any]) -> dict[str, Any]:
    """A krakend.json with one endpoint and backend, every request sampled."""
    from gatescope.testing import krakend_config

    return krakend_config(
        {"jaeger": exporter}, sample_rate=100,
        endpoints=[{"endpoint": ENDPOINT, "backend": [{"url_pattern": URL_PATTERN}]}],
    )


@pytest.fixture
def wire() -> ModuleType:
    """This module: the decoders and helpers above, for tests (they cannot import a conftest)."""
    return sys.modules[__name__]
