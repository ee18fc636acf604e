"""Span start/end on the request path: no objects for unsampled work, finished spans to a sink."""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Callable

from gatescope.propagation import TraceContext
from gatescope.sampling import Sampler, always
from gatescope.spans import OK, STATUS_NAMES, AttributeValue, SpanRecord, status_from_http

# The innermost active span, or a bare TraceContext when the request is not sampled.
current: contextvars.ContextVar[Span | TraceContext | None] = contextvars.ContextVar(
    "gatescope_current", default=None
)

_getrandbits = random.getrandbits
_randbytes = random.randbytes
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_time_ns = time.time_ns

# HTTP status -> (canonical code, message), filled on first use of each status (a few dozen).
_HTTP_STATUS: dict[int, tuple[int, str]] = {}


def _http_status(status: int) -> tuple[int, str]:
    code = status_from_http(status)
    resolved = (code, "" if code == OK else STATUS_NAMES.get(code, ""))
    if len(_HTTP_STATUS) < 1000:
        _HTTP_STATUS[status] = resolved
    return resolved


def new_trace_id() -> str:
    return f"{_getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    span_id = _randbytes(8).hex()  # faster than formatting getrandbits(64)
    return span_id if span_id != _ZERO_SPAN else f"{_getrandbits(64) or 1:016x}"


def new_ids() -> tuple[str, str]:
    """A new trace id and span id from one random draw (neither may be all zeros)."""
    ids = _randbytes(24).hex()
    trace_id, span_id = ids[:32], ids[32:]
    if trace_id != _ZERO_TRACE and span_id != _ZERO_SPAN:
        return trace_id, span_id
    return new_trace_id(), new_span_id()


class Span(SpanRecord):
    """A sampled span in flight; `end()` hands it to the export sink exactly once."""

    __slots__ = ("_sink",)

    def __init__(self, name: str, trace_id: str, parent_span_id: str | None, kind: int,
                 sink: Callable[[SpanRecord], None], span_id: str | None = None) -> None:
        # The slots are set directly: this runs once per sampled request.
        self.name = name
        self.trace_id = trace_id
        self.span_id = span_id or new_span_id()
        self.parent_span_id = parent_span_id
        self.kind = kind
        self.start_ns = _time_ns()
        self.end_ns = 0
        self.attributes: dict[str, AttributeValue] = {}
        self.status_code = OK
        self.status_message = ""
        self._sink: Callable[[SpanRecord], None] | None = sink

    @property
    def context(self) -> TraceContext:
        return TraceContext(self.trace_id, self.span_id, True)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def set_status(self, code: int, message: str = "") -> None:
        self.status_code = code
        self.status_message = message

    def set_http_status(self, status: int) -> None:
        self.attributes["http.status_code"] = status
        self.status_code, self.status_message = _HTTP_STATUS.get(status) or _http_status(status)

    def end(self) -> None:
        sink = self._sink
        if sink is not None:
            self._sink = None
            self.end_ns = _time_ns()
            sink(self)


class Tracer:
    """Starts spans under the configured sampler; finished spans go to `sink` (the queue)."""

    def __init__(self, sampler: Sampler, sink: Callable[[SpanRecord], None]) -> None:
        self.sampler = sampler
        self.sink = sink

    def start_root(self, name: str, kind: int, parent: TraceContext | None) -> Span | TraceContext | None:
        """A server-side span: sampled -> Span; unsampled with a remote parent -> that context."""
        if parent is None and self.sampler is always:
            trace_id, span_id = new_ids()
            return Span(name, trace_id, None, kind, self.sink, span_id)
        trace_id = parent.trace_id if parent is not None else new_trace_id()
        if self.sampler(trace_id, parent):
            return Span(name, trace_id, parent.span_id if parent else None, kind, self.sink)
        if parent is not None:
            return TraceContext(trace_id, parent.span_id, False, remote=True)
        return None

    def start_child(self, name: str, kind: int) -> Span | None:
        """A child of the current span, only when the current span is sampled."""
        parent = current.get()
        if isinstance(parent, Span):
            return Span(name, parent.trace_id, parent.span_id, kind, self.sink)
        return None
