"""Spans as Zipkin v2 JSON (`ListOfSpans`), the way the spec and KrakenD's exporter want them."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from gatescope.spans import KIND_CLIENT, KIND_SERVER, OK, STATUS_NAMES, SpanRecord

KINDS = {KIND_SERVER: "SERVER", KIND_CLIENT: "CLIENT"}
ERROR_TAG = "error"  # opencensus-go's zipkin exporter: the canonical code name
DESCRIPTION_TAG = "opencensus.status_description"
ZERO_HIGH = "0" * 16

# ASCII-only output is valid JSON even for strings holding lone surrogates
dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def tag_text(value: Any) -> str:
    """An attribute as the string Zipkin tags must be (Go's formatting for bools and floats)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        text = repr(value)
        if "e" in text or "E" in text:
            text = format(Decimal(text), "f")
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def trace_id_text(trace_id: str) -> str:
    """16 hex digits for a 64-bit trace id, 32 for a 128-bit one (the spec's two forms)."""
    if len(trace_id) == 32 and trace_id.startswith(ZERO_HIGH):
        return trace_id[16:]
    return trace_id


def duration_us(span: SpanRecord) -> int:
    """Rounded to the microsecond and at least 1, as the spec requires of a finished span."""
    return max(1, (span.end_ns - span.start_ns + 500) // 1000)


def span_object(span: SpanRecord, local_endpoint: dict[str, Any]) -> dict[str, Any]:
    """One v2 span as a JSON-ready dict."""
    out: dict[str, Any] = {
        "traceId": trace_id_text(span.trace_id),
        "id": span.span_id,
        "name": span.name,
        "timestamp": span.start_ns // 1000,
        "duration": duration_us(span),
        "localEndpoint": local_endpoint,
    }
    if span.parent_span_id:
        out["parentId"] = span.parent_span_id
    kind = KINDS.get(span.kind)
    if kind is not None:
        out["kind"] = kind
    tags = {key: tag_text(value) for key, value in span.attributes.items()}
    if span.status_code != OK:
        tags[ERROR_TAG] = STATUS_NAMES.get(span.status_code, str(span.status_code))
        if span.status_message:
            tags[DESCRIPTION_TAG] = span.status_message
    if tags:
        out["tags"] = tags
    return out


def list_of_spans(spans: list[SpanRecord] | tuple[SpanRecord, ...],
                  local_endpoint: dict[str, Any]) -> bytes:
    """The POST body: a JSON array of v2 spans."""
    return dumps([span_object(span, local_endpoint) for span in spans]).encode("ascii")
