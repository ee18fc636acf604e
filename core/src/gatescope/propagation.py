"""B3 (multi and single header) and W3C traceparent: extract and inject trace context."""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_ZERO32 = "0" * 32
_ZERO16 = "0" * 16
_MAX_HEADER = 512  # longer values are never valid trace context; do not even parse them
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")

Getter = Callable[[str], str | None]  # lower-case header name -> value


@attrs.frozen(slots=True)
class TraceContext:
    """A remote or local parent: ids in lower-case hex."""

    trace_id: str
    span_id: str
    sampled: bool
    remote: bool = False


def _trace_id(value: str) -> str | None:
    value = value.strip().lower()
    if len(value) == 16:
        value = _ZERO16 + value
    if _HEX32.match(value) and value != _ZERO32:
        return value
    return None


def _span_id(value: str) -> str | None:
    value = value.strip().lower()
    if _HEX16.match(value) and value != _ZERO16:
        return value
    return None


def _b3_sampled(value: str | None) -> bool | None:
    if value is None:
        return None
    return {"1": True, "true": True, "d": True, "0": False, "false": False}.get(value.strip().lower())


def extract_b3_multi(get: Getter) -> TraceContext | None:
    raw_trace, raw_span = get("x-b3-traceid"), get("x-b3-spanid")
    if raw_trace is None or raw_span is None:
        return None
    if len(raw_trace) > _MAX_HEADER or len(raw_span) > _MAX_HEADER:
        return None
    trace_id, span_id = _trace_id(raw_trace), _span_id(raw_span)
    if trace_id is None or span_id is None:
        return None
    flags = get("x-b3-flags")
    sampled = (flags is not None and flags.strip() == "1") or bool(_b3_sampled(get("x-b3-sampled")))
    return TraceContext(trace_id, span_id, sampled, remote=True)


def extract_b3_single(get: Getter) -> TraceContext | None:
    raw = get("b3")
    if raw is None or len(raw) > _MAX_HEADER:
        return None
    parts = raw.strip().split("-")
    if len(parts) < 2 or len(parts) > 4:
        return None  # a lone sampling flag carries no ids to continue
    trace_id, span_id = _trace_id(parts[0]), _span_id(parts[1])
    if trace_id is None or span_id is None:
        return None
    sampled = _b3_sampled(parts[2]) if len(parts) > 2 else False
    if len(parts) > 2 and sampled is None:
        return None
    if len(parts) == 4 and _span_id(parts[3]) is None:
        return None
    return TraceContext(trace_id, span_id, bool(sampled), remote=True)


def extract_traceparent(get: Getter) -> TraceContext | None:
    raw = get("traceparent")
    if raw is None or len(raw) > _MAX_HEADER:
        return None
    match = _TRACEPARENT.match(raw.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO32 or span_id == _ZERO16:
        return None
    return TraceContext(trace_id, span_id, bool(int(flags, 16) & 1), remote=True)


def extract(get: Getter) -> TraceContext | None:
    """First valid context among B3 multi, B3 single and traceparent; invalid ones are ignored."""
    return extract_b3_multi(get) or extract_b3_single(get) or extract_traceparent(get)


def inject(trace_id: str, span_id: str, sampled: bool) -> list[tuple[str, str]]:
    """Headers for an outgoing call: B3 multi-header (KrakenD) and W3C traceparent."""
    flag = "1" if sampled else "0"
    return [
        ("X-B3-TraceId", trace_id),
        ("X-B3-SpanId", span_id),
        ("X-B3-Sampled", flag),
        ("traceparent", f"00-{trace_id}-{span_id}-0{flag}"),
    ]
