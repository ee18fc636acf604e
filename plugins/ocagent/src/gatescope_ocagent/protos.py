"""OpenCensus agent message classes built from the descriptors embedded in PyPI `opencensus-proto`.

The generated `*_pb2.py` modules of `opencensus-proto` 0.1.0 only run on protobuf < 4, but each
one carries its `.proto` file as a serialized `FileDescriptorProto` literal. We read that literal
from the module source with `ast` (never executing the generated code), load the files into a
private descriptor pool and let the installed protobuf runtime build the message classes.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2, wrappers_pb2

DISTRIBUTION = "opencensus-proto"
# Generated modules in dependency order, with the .proto file each must describe.
FILES = (
    ("opencensus/proto/resource/v1/resource_pb2.py", "opencensus/proto/resource/v1/resource.proto"),
    ("opencensus/proto/trace/v1/trace_pb2.py", "opencensus/proto/trace/v1/trace.proto"),
    ("opencensus/proto/trace/v1/trace_config_pb2.py",
     "opencensus/proto/trace/v1/trace_config.proto"),
    ("opencensus/proto/metrics/v1/metrics_pb2.py", "opencensus/proto/metrics/v1/metrics.proto"),
    ("opencensus/proto/agent/common/v1/common_pb2.py",
     "opencensus/proto/agent/common/v1/common.proto"),
    ("opencensus/proto/agent/trace/v1/trace_service_pb2.py",
     "opencensus/proto/agent/trace/v1/trace_service.proto"),
    ("opencensus/proto/agent/metrics/v1/metrics_service_pb2.py",
     "opencensus/proto/agent/metrics/v1/metrics_service.proto"),
)
TRACE_EXPORT = "/opencensus.proto.agent.trace.v1.TraceService/Export"
METRICS_EXPORT = "/opencensus.proto.agent.metrics.v1.MetricsService/Export"


class ProtoUnavailable(RuntimeError):
    """The OpenCensus descriptors could not be loaded (package missing or unexpected layout)."""


def serialized_descriptor(source: str, origin: str) -> bytes:
    """The serialized FileDescriptorProto a generated `_pb2` module embeds, read without running it."""
    for node in ast.parse(source, origin).body:
        if not isinstance(node, ast.Assign) or not any(
            isinstance(t, ast.Name) and t.id == "DESCRIPTOR" for t in node.targets
        ):
            continue
        call = node.value
        if not isinstance(call, ast.Call):
            continue
        # protoc < 3.20: FileDescriptor(..., serialized_pb=_b('...')) or serialized_pb=b'...'
        candidates = [k.value for k in call.keywords if k.arg == "serialized_pb"]
        # protoc >= 3.20: _descriptor_pool.Default().AddSerializedFile(b'...')
        if isinstance(call.func, ast.Attribute) and call.func.attr == "AddSerializedFile":
            candidates.extend(call.args[:1])
        for candidate in candidates:
            data = _literal_bytes(candidate)
            if data is not None:
                return data
    raise ProtoUnavailable(f"{origin}: no embedded serialized file descriptor found")


def _literal_bytes(node: ast.expr) -> bytes | None:
    if isinstance(node, ast.Call) and len(node.args) == 1:  # the `_b('...')` py2/3 shim
        node = node.args[0]
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1")  # what the `_b` shim does on Python 3
    return None


def _installed_source(path: str) -> tuple[str, str]:
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ProtoUnavailable(
            f"the {DISTRIBUTION!r} package is not installed (pip install {DISTRIBUTION})"
        ) from exc
    location = Path(str(dist.locate_file(path)))
    try:
        return location.read_text(encoding="utf-8"), str(location)
    except OSError as exc:
        raise ProtoUnavailable(f"{DISTRIBUTION}: cannot read {path}: {exc}") from exc


def build_pool(sources: dict[str, tuple[str, str]] | None = None) -> descriptor_pool.DescriptorPool:
    """A private pool holding the agent protocol's files (and the well-known types they use)."""
    pool = descriptor_pool.DescriptorPool()
    for module in (timestamp_pb2, wrappers_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    for path, expected in FILES:
        source, origin = sources[path] if sources is not None else _installed_source(path)
        proto = descriptor_pb2.FileDescriptorProto.FromString(serialized_descriptor(source, origin))
        if proto.name != expected:
            raise ProtoUnavailable(f"{origin}: describes {proto.name!r}, expected {expected!r}")
        try:
            pool.Add(proto)
        except (TypeError, ValueError) as exc:
            raise ProtoUnavailable(f"{origin}: descriptor rejected by protobuf: {exc}") from exc
    return pool


class AgentProtos:
    """The message classes the exporter needs, resolved once from one pool."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        def message(name: str) -> Any:
            return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

        self.pool = pool
        self.Node = message("opencensus.proto.agent.common.v1.Node")
        self.LibraryInfo = message("opencensus.proto.agent.common.v1.LibraryInfo")
        self.Resource = message("opencensus.proto.resource.v1.Resource")
        self.Span = message("opencensus.proto.trace.v1.Span")
        self.AttributeValue = message("opencensus.proto.trace.v1.AttributeValue")
        self.Metric = message("opencensus.proto.metrics.v1.Metric")
        self.MetricDescriptor = message("opencensus.proto.metrics.v1.MetricDescriptor")
        self.TimeSeries = message("opencensus.proto.metrics.v1.TimeSeries")
        self.ExportTraceServiceRequest = message(
            "opencensus.proto.agent.trace.v1.ExportTraceServiceRequest")
        self.ExportTraceServiceResponse = message(
            "opencensus.proto.agent.trace.v1.ExportTraceServiceResponse")
        self.ExportMetricsServiceRequest = message(
            "opencensus.proto.agent.metrics.v1.ExportMetricsServiceRequest")
        self.ExportMetricsServiceResponse = message(
            "opencensus.proto.agent.metrics.v1.ExportMetricsServiceResponse")


@functools.cache
def agent_protos() -> AgentProtos:
    """The agent protocol's classes, loaded on first use (never at import)."""
    return AgentProtos(build_pool())
