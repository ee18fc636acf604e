"""gatescope spans as Cloud Trace v2 spans, shaped as KrakenD's Go exporter wrote them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gatescope.spans import KIND_CLIENT, KIND_SERVER, SpanRecord

MAX_ATTRIBUTES = 32  # Cloud Trace v2 keeps at most 32 attributes per span
MAX_NAME_BYTES = 128
MAX_KEY_BYTES = 128
MAX_VALUE_BYTES = 256
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
AGENT_LABEL = "g.co/agent"
# OpenCensus' HTTP attributes under the names Cloud Trace shows in its HTTP panel.
WELL_KNOWN = {
    "http.host": "/http/host",
    "http.method": "/http/method",
    "http.path": "/http/path",
    "http.status_code": "/http/status_code",
    "http.user_agent": "/http/user_agent",
    "http.url": "/http/url",
}
SPAN_KIND = {KIND_SERVER: 2, KIND_CLIENT: 3}  # google.devtools.cloudtrace.v2.Span.SpanKind


def truncate(target: Any, text: str, limit: int) -> None:
    """Fill a TruncatableString, cutting at a UTF-8 boundary like the Go exporter."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        target.value = text
        return
    cut = data[:limit].decode("utf-8", errors="ignore")
    target.value = cut
    target.truncated_byte_count = len(data) - len(cut.encode("utf-8"))


def span_to_proto(span_class: Any, project: str, span: SpanRecord, agent: str) -> Any:
    out = span_class()
    out.name = f"projects/{project}/traces/{span.trace_id}/spans/{span.span_id}"
    out.span_id = span.span_id
    if span.parent_span_id:
        out.parent_span_id = span.parent_span_id
        # gatescope's server spans only ever have a parent taken from incoming headers.
        out.same_process_as_parent_span.value = span.kind != KIND_SERVER
    prefix = {KIND_SERVER: "Recv.", KIND_CLIENT: "Sent."}.get(span.kind, "")
    truncate(out.display_name, prefix + span.name, MAX_NAME_BYTES)
    out.start_time.FromNanoseconds(span.start_ns)
    out.end_time.FromNanoseconds(max(span.end_ns, span.start_ns))
    out.span_kind = SPAN_KIND.get(span.kind, 0)
    if span.status_code != 0 or span.status_message:
        out.status.code = span.status_code
        out.status.message = span.status_message
    attributes = out.attributes
    dropped = 0
    for key, value in span.attributes.items():
        name = WELL_KNOWN.get(key, key)
        if len(name.encode("utf-8")) > MAX_KEY_BYTES or len(attributes.attribute_map) >= \
                MAX_ATTRIBUTES - 1:  # one slot stays for the agent label
            dropped += 1
            continue
        set_attribute(attributes.attribute_map[name], value)
    truncate(attributes.attribute_map[AGENT_LABEL].string_value, agent, MAX_VALUE_BYTES)
    attributes.dropped_attributes_count = dropped
    return out


def set_attribute(target: Any, value: object) -> None:
    """Cloud Trace knows strings, int64 and bools; other values are sent as their text."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        target.int_value = value
    else:
        truncate(target.string_value, str(value), MAX_VALUE_BYTES)


def spans_to_proto(span_class: Any, project: str, spans: Sequence[SpanRecord],
                   agent: str) -> list[Any]:
    return [span_to_proto(span_class, project, span, agent) for span in spans]
