"""The agent protocol classes come from opencensus-proto's embedded descriptors and match the
official .proto files field for field."""

from __future__ import annotations

import pytest
from gatescope_ocagent.protos import (
    FILES,
    ProtoUnavailable,
    agent_protos,
    build_pool,
    serialized_descriptor,
)

MESSAGES = (
    "opencensus.proto.agent.common.v1.Node",
    "opencensus.proto.agent.trace.v1.ExportTraceServiceRequest",
    "opencensus.proto.agent.metrics.v1.ExportMetricsServiceRequest",
    "opencensus.proto.trace.v1.Span",
    "opencensus.proto.trace.v1.AttributeValue",
    "opencensus.proto.metrics.v1.Metric",
    "opencensus.proto.metrics.v1.MetricDescriptor",
    "opencensus.proto.metrics.v1.TimeSeries",
    "opencensus.proto.metrics.v1.Point",
    "opencensus.proto.metrics.v1.DistributionValue",
)


def _fields(descriptor, seen=None):
    """Every (path, number, type, label) reachable from a message, recursively."""
    seen = set() if seen is None else seen
    if descriptor.full_name in seen:
        return set()
    seen.add(descriptor.full_name)
    out = set()
    for field in descriptor.fields:
        out.add((f"{descriptor.full_name}.{field.name}", field.number, field.type,
                 field.is_repeated if hasattr(field, "is_repeated") else field.label))
        if field.message_type is not None:
            out |= _fields(field.message_type, seen)
    return out


@pytest.mark.parametrize("name", MESSAGES)
def test_embedded_descriptors_match_the_official_protos(reference_protos, name):
    ours = agent_protos().pool.FindMessageTypeByName(name)
    official = reference_protos.pool.FindMessageTypeByName(name)
    missing = _fields(official) - _fields(ours)
    # Fields added upstream after opencensus-proto 0.1.0 would show here; the wire format of
    # every field we write must be identical.
    assert not {f for f in missing if not f[0].endswith(("tracestate", ".resource"))}, missing


def test_services_are_bidirectional_streams():
    pool = agent_protos().pool
    for service in ("opencensus.proto.agent.trace.v1.TraceService",
                    "opencensus.proto.agent.metrics.v1.MetricsService"):
        export = pool.FindServiceByName(service).methods_by_name["Export"]
        assert export.client_streaming and export.server_streaming


def test_reads_old_and_new_protoc_layouts():
    payload = b"\n\x0bx/y.proto\x12\x01x"
    old = ("import sys\n_b=sys.version_info[0]<3 and (lambda x:x) or (lambda x:x.encode('latin1'))\n"
           "DESCRIPTOR = _descriptor.FileDescriptor(name='x/y.proto', package='x', "
           f"serialized_pb=_b({payload.decode('latin-1')!r}))\n")
    new = f"DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile({payload!r})\n"
    assert serialized_descriptor(old, "old.py") == payload
    assert serialized_descriptor(new, "new.py") == payload


def test_the_generated_code_is_never_executed():
    source = "raise SystemExit('executed!')\nDESCRIPTOR = x.AddSerializedFile(b'\\n\\x03a.b')\n"
    assert serialized_descriptor(source, "evil.py") == b"\n\x03a.b"


def test_missing_or_wrong_descriptors_are_clear_errors():
    with pytest.raises(ProtoUnavailable, match="no embedded serialized file descriptor"):
        serialized_descriptor("DESCRIPTOR = None\n", "empty.py")
    sources = {path: ("DESCRIPTOR = x.AddSerializedFile(b'\\n\\x05o.pro')\n", path)
               for path, _ in FILES}
    with pytest.raises(ProtoUnavailable, match=r"describes 'o\.pro', expected"):
        build_pool(sources)
