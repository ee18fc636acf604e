"""gatescope spans as Datadog agent spans, field for field as Datadog's Go OpenCensus exporter."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from gatescope.spans import KIND_CLIENT, KIND_SERVER, SpanRecord

from gatescope_datadog.config import TagValue, render_tag_value

OPERATION_NAME = "opencensus"
KEY_STATUS_CODE = "opencensus.status_code"
KEY_STATUS = "opencensus.status"
KEY_STATUS_DESCRIPTION = "opencensus.status_description"
KEY_SAMPLING_PRIORITY = "_sampling_priority_v1"
KEY_SAMPLING_PRIORITY_RATE = "_sampling_priority_rate_v1"
KEY_EVENT_SAMPLE_RATE = "_dd1.sr.eausr"
PRIORITY_AUTO_KEEP = 1.0
PRIORITY_AUTO_REJECT = 0.0
_KNUTH_FACTOR = 1111111111111111111
_MAX_UINT64 = 2**64 - 1

# OpenCensus canonical code -> (Datadog's status message, the HTTP code it stands for).
STATUS_CODES: dict[int, tuple[str, int]] = {
    0: ("ok", 200), 1: ("cancelled", 499), 2: ("unknown", 500), 3: ("invalid_argument", 400),
    4: ("deadline_exceeded", 504), 5: ("not_found", 404), 6: ("already_exists", 409),
    7: ("permission_denied", 403), 8: ("resource_exhausted", 429), 9: ("failed_precondition", 400),
    10: ("aborted", 409), 11: ("out_of_range", 400), 12: ("unimplemented", 501),
    13: ("internal", 500), 14: ("unavailable", 503), 15: ("data_loss", 501),
    16: ("unauthenticated", 401),
}


def status_message(code: int) -> str:
    entry = STATUS_CODES.get(code)
    return entry[0] if entry else f"error code {code}"


def _is_error(kind: int, code: int) -> bool:
    """Client spans fail on 4xx-like codes, all others on 5xx-like codes (Datadog's rule)."""
    http = STATUS_CODES.get(code, ("", 500))[1]
    if kind == KIND_CLIENT:
        return 400 <= http < 500
    return 500 <= http < 600


def to_dd_span(span: SpanRecord, service: str, global_tags: Mapping[str, TagValue]) -> dict[str, Any]:
    """One agent span (a msgpack-ready dict); ids are the low 64 bits as unsigned integers."""
    dd: dict[str, Any] = {
        "trace_id": int(span.trace_id[-16:], 16),
        "span_id": int(span.span_id, 16),
        "parent_id": int(span.parent_span_id, 16) if span.parent_span_id else 0,
        "name": OPERATION_NAME,
        "resource": span.name,
        "service": service,
        "type": {KIND_CLIENT: "client", KIND_SERVER: "server"}.get(span.kind, ""),
        "start": span.start_ns,
        "duration": span.end_ns - span.start_ns,
        "error": 0,
        "meta": {},
        "metrics": {},
    }
    meta: dict[str, str] = dd["meta"]
    if _is_error(span.kind, span.status_code):
        dd["error"] = 1
        meta["error.type"] = status_message(span.status_code)
        if span.status_message:
            meta["error.msg"] = span.status_message
    meta[KEY_STATUS_CODE] = str(span.status_code)
    meta[KEY_STATUS] = status_message(span.status_code)
    if span.status_message:
        meta[KEY_STATUS_DESCRIPTION] = span.status_message
    for key, value in global_tags.items():
        _set_tag(dd, key, value)
    for key, value in span.attributes.items():
        _set_tag(dd, key, value)
    return dd


def _set_tag(dd: dict[str, Any], key: str, value: TagValue) -> None:
    if key == "error":
        _set_error(dd, value)
    elif isinstance(value, bool):
        _set_string_tag(dd, key, "true" if value else "false")
    elif isinstance(value, int | float):
        _set_metric(dd, key, float(value))
    else:
        _set_string_tag(dd, key, render_tag_value(value))


def _set_metric(dd: dict[str, Any], key: str, value: float) -> None:
    dd["metrics"][KEY_SAMPLING_PRIORITY if key == "sampling.priority" else key] = value


def _set_string_tag(dd: dict[str, Any], key: str, value: str) -> None:
    if key == "service.name":
        dd["service"] = value
    elif key == "resource.name":
        dd["resource"] = value
    elif key == "span.type":
        dd["type"] = value
    elif key == "span.name":
        dd["name"] = value
    elif key == "analytics.event":
        _set_metric(dd, KEY_EVENT_SAMPLE_RATE, 0.0 if value == "false" else 1.0)
    else:
        dd["meta"][key] = value


def _set_error(dd: dict[str, Any], value: TagValue) -> None:
    if isinstance(value, str):
        dd["error"] = 1
        dd["meta"]["error.msg"] = value
    elif isinstance(value, bool):
        dd["error"] = int(value)
    elif isinstance(value, int | float):
        dd["error"] = 1 if value > 0 else 0
    else:
        dd["error"] = 0 if value is None else 1


class PrioritySampler:
    """Applies the agent's per-service rates (from its responses) as sampling priorities."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rates: dict[str, float] = {}
        self._default = 1.0

    def update(self, rates: Mapping[str, Any]) -> None:
        clean = {k: float(v) for k, v in rates.items()
                 if isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)}
        with self._lock:
            self._default = clean.pop("service:,env:", self._default)
            self._rates = clean

    def apply(self, dd: dict[str, Any]) -> None:
        metrics: dict[str, float] = dd["metrics"]
        if KEY_SAMPLING_PRIORITY in metrics:
            return  # set explicitly through the `sampling.priority` attribute
        key = f"service:{dd['service']},env:{dd['meta'].get('env', '')}"
        with self._lock:
            rate = self._rates.get(key, self._default)
        keep = rate >= 1 or (dd["trace_id"] * _KNUTH_FACTOR) & _MAX_UINT64 < int(rate * _MAX_UINT64)
        metrics[KEY_SAMPLING_PRIORITY] = PRIORITY_AUTO_KEEP if keep else PRIORITY_AUTO_REJECT
        metrics[KEY_SAMPLING_PRIORITY_RATE] = rate
