"""A real OpenCensus agent receiver for the tests, decoding with classes compiled from the official
.proto files (../shared/reference/opencensus-proto) by grpcio-tools: independent of the plugin."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

REFERENCE = (Path(__file__).resolve().parents[3] / ".." / "shared" / "reference"
             / "opencensus-proto" / "src")
TRACE_METHOD = "/opencensus.proto.agent.trace.v1.TraceService/Export"
METRICS_METHOD = "/opencensus.proto.agent.metrics.v1.MetricsService/Export"


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class ReferenceProtos:
    """Message classes from protoc's descriptor set of the reference .proto files."""

    def __init__(self, workdir: Path) -> None:
        try:
            from grpc_tools import protoc
        except ImportError:
            _missing("grpcio-tools not installed: pip install -e 'plugins/ocagent[test]'")
        if not REFERENCE.is_dir():
            _missing(f"reference protos not found at {REFERENCE}")
        from importlib.resources import files

        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        out = workdir / "opencensus.pb"
        protos = sorted(str(p.relative_to(REFERENCE)) for p in REFERENCE.rglob("*.proto"))
        include = str(files("grpc_tools") / "_proto")
        code = protoc.main(["protoc", f"-I{REFERENCE}", f"-I{include}", "--include_imports",
                            f"--descriptor_set_out={out}", *protos])
        assert code == 0, f"protoc failed on {REFERENCE}"
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
        self.pool = descriptor_pool.DescriptorPool()
        for file in fds.file:
            self.pool.Add(file)

        def cls(name: str) -> Any:
            return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(name))

        self.TraceRequest = cls("opencensus.proto.agent.trace.v1.ExportTraceServiceRequest")
        self.TraceResponse = cls("opencensus.proto.agent.trace.v1.ExportTraceServiceResponse")
        self.MetricsRequest = cls("opencensus.proto.agent.metrics.v1.ExportMetricsServiceRequest")
        self.MetricsResponse = cls("opencensus.proto.agent.metrics.v1.ExportMetricsServiceResponse")


class Stream:
    """One Export stream as the agent saw it."""

    def __init__(self, method: str, metadata: dict[str, str | bytes]) -> None:
        self.method = method
        self.metadata = metadata
        self.messages: list[Any] = []


class Agent:
    """An OpenCensus agent's TraceService/MetricsService on 127.0.0.1; restartable on its port."""

    def __init__(self, protos: ReferenceProtos, port: int = 0) -> None:
        self.protos = protos
        self.port = port
        self.streams: list[Stream] = []
        self.fail_with: grpc.StatusCode | None = None
        self.responsive = threading.Event()  # cleared: streams hang, as with a stuck agent
        self.responsive.set()
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, credentials: grpc.ServerCredentials | None = None) -> Agent:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "Export": grpc.stream_stream_rpc_method_handler(
                self._handler(TRACE_METHOD, self.protos.TraceResponse),
                request_deserializer=self.protos.TraceRequest.FromString,
                response_serializer=lambda m: m.SerializeToString()),
        }
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("opencensus.proto.agent.trace.v1.TraceService",
                                                 handlers),
            grpc.method_handlers_generic_handler(
                "opencensus.proto.agent.metrics.v1.MetricsService",
                {"Export": grpc.stream_stream_rpc_method_handler(
                    self._handler(METRICS_METHOD, self.protos.MetricsResponse),
                    request_deserializer=self.protos.MetricsRequest.FromString,
                    response_serializer=lambda m: m.SerializeToString())}),
        ))
        address = f"127.0.0.1:{self.port}"
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        assert self.port, "could not bind the agent port"
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self.responsive.set()
        if self._server is not None:
            self._server.stop(0).wait(5)
            self._server = None

    def _handler(self, method: str, response: Any) -> Any:
        def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            stream = Stream(method, dict(context.invocation_metadata()))
            while not self.responsive.wait(0.05):
                if not context.is_active():
                    return iter(())
            for message in requests:
                stream.messages.append(message)
            with self._cond:
                if self.fail_with is not None:
                    context.abort(self.fail_with, "agent told to fail")
                self.streams.append(stream)
                self._cond.notify_all()
            return iter(())

        return handle

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[Stream]:
        with self._cond:
            self._cond.wait_for(
                lambda: len([s for s in self.streams if s.method == method]) >= count, timeout)
            return [s for s in self.streams if s.method == method]


@pytest.fixture(scope="session")
def reference_protos(tmp_path_factory: pytest.TempPathFactory) -> ReferenceProtos:
    return ReferenceProtos(tmp_path_factory.mktemp("ocproto"))


@pytest.fixture
def agent(reference_protos: ReferenceProtos) -> Iterator[Agent]:
    server = Agent(reference_protos).start()
    yield server
    server.stop()


class TapProxy:
    """A TCP relay that keeps every byte the client sent, to inspect gRPC's HTTP/2 frames."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sent = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, record: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if record:
                    with self._lock:
                        self.sent.extend(chunk)
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def grpc_messages(self) -> list[tuple[int, bytes]]:
        """(compressed flag, payload) of every gRPC message the client sent, per HTTP/2 stream."""
        with self._lock:
            data = bytes(self.sent)
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        assert data.startswith(preface), "not an HTTP/2 connection"
        offset = len(preface)
        streams: dict[int, bytearray] = {}
        while offset + 9 <= len(data):
            length = int.from_bytes(data[offset:offset + 3], "big")
            frame_type, flags = data[offset + 3], data[offset + 4]
            stream_id = int.from_bytes(data[offset + 5:offset + 9], "big") & 0x7FFFFFFF
            payload = data[offset + 9:offset + 9 + length]
            offset += 9 + length
            if frame_type == 0:  # DATA
                if flags & 0x8:  # PADDED
                    payload = payload[1:len(payload) - payload[0]]
                streams.setdefault(stream_id, bytearray()).extend(payload)
        messages = []
        for body in streams.values():
            position = 0
            while position + 5 <= len(body):
                flag = body[position]
                size = int.from_bytes(body[position + 1:position + 5], "big")
                messages.append((flag, bytes(body[position + 5:position + 5 + size])))
                position += 5 + size
        return messages


@pytest.fixture
def oc() -> Any:
    """The helpers above for test modules (importlib mode cannot import conftest by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(Agent=Agent, TapProxy=TapProxy, TRACE=TRACE_METHOD,
                           METRICS=METRICS_METHOD)
