"""A local stand-in for Cloud Trace v2 and Cloud Monitoring v3 that decodes what arrives."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.api import metric_pb2
from google.cloud import monitoring_v3, trace_v2
from google.protobuf import empty_pb2

TRACE_SERVICE = "google.devtools.cloudtrace.v2.TraceService"
METRIC_SERVICE = "google.monitoring.v3.MetricService"


class FakeCloud:
    """BatchWriteSpans, CreateTimeSeries and CreateMetricDescriptor on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self.fail_with: grpc.StatusCode | None = None
        self.responsive = threading.Event()
        self.responsive.set()
        self.descriptors: dict[str, Any] = {}
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeCloud:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))

        def unary(method: str, request_class: Any, reply: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                self._handler(method, reply), request_deserializer=request_class.FromString,
                response_serializer=lambda m: m.SerializeToString())

        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler(TRACE_SERVICE, {
                "BatchWriteSpans": unary("BatchWriteSpans", trace_v2.BatchWriteSpansRequest.pb(),
                                         lambda r: empty_pb2.Empty()),
            }),
            grpc.method_handlers_generic_handler(METRIC_SERVICE, {
                "CreateTimeSeries": unary("CreateTimeSeries",
                                          monitoring_v3.CreateTimeSeriesRequest.pb(),
                                          lambda r: empty_pb2.Empty()),
                "CreateMetricDescriptor": unary(
                    "CreateMetricDescriptor", monitoring_v3.CreateMetricDescriptorRequest.pb(),
                    self._create_descriptor),
            }),
        ))
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        assert self.port, "could not bind"
        server.start()
        self._server = server
        return self

    def _create_descriptor(self, request: Any) -> Any:
        self.descriptors[request.metric_descriptor.type] = request.metric_descriptor
        out = metric_pb2.MetricDescriptor()
        out.CopyFrom(request.metric_descriptor)
        return out

    def stop(self) -> None:
        self.responsive.set()
        if self._server is not None:
            self._server.stop(0).wait(5)
            self._server = None

    def _handler(self, method: str, reply: Any) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            while not self.responsive.wait(0.05):
                if not context.is_active():
                    return empty_pb2.Empty()
            if self.fail_with is not None:
                context.abort(self.fail_with, "told to fail")
            if method == "CreateMetricDescriptor" and \
                    request.metric_descriptor.type in self.descriptors:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "exists")
            with self._cond:
                self.calls.append((method, request, dict(context.invocation_metadata())))
                self._cond.notify_all()
            return reply(request)

        return handle

    def requests(self, method: str) -> list[Any]:
        with self._cond:
            return [request for name, request, _ in self.calls if name == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        with self._cond:
            self._cond.wait_for(lambda: len([c for c in self.calls if c[0] == method]) >= count,
                                timeout)
        return self.requests(method)


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    server = FakeCloud().start()
    yield server
    server.stop()


@pytest.fixture
def no_adc(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """An environment without Application Default Credentials (and no metadata-server probe)."""
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT",
                 "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    from google.auth.compute_engine import _metadata

    # google-auth reads NO_GCE_CHECK when it is imported; skip the metadata-server probe.
    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)
    return monkeypatch


@pytest.fixture
def sd() -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(FakeCloud=FakeCloud)
