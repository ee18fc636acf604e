"""Span start/end on the request path: no objects for unsampled work, finished spans to a sink."""

from __future__ import annotations

import contextvars
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator

from gatescope.propagation import TraceContext
from gatescope.sampling import Sampler, always
from gatescope.spans import OK, STATUS_NAMES, AttributeValue, SpanRecord, status_from_http

# The innermost active span, or a bare TraceContext when the request is not sampled.
current: contextvars.ContextVar[Span | TraceContext | None] = contextvars.ContextVar(
    "gatescope_current", default=None
)

_getrandbits = random.getrandbits
_randbytes = random.randbytes
_time_ns = time.time_ns

# HTTP status -> (canonical code, message), filled on first use of each status (a few dozen).
_HTTP_STATUS: dict[int, tuple[int, str]] = {}


def _http_status(status: int) -> tuple[int, str]:
    code = status_from_http(status)
    resolved = (code, "" if code == OK else STATUS_NAMES.get(code, ""))
    if len(_HTTP_STATUS) < 1000:
        _HTTP_STATUS[status] = resolved
    return resolved


# Ids are drawn POOL_SIZE at a time: one draw, one hex() and one split() for many requests cost
# a fraction of a draw per request. A forked child forgets its parent's pools (it would repeat
# their ids).
POOL_SIZE = 256
_trace_ids: Iterator[str] = iter(())
_span_ids: Iterator[str] = iter(())
_root_ids: Iterator[tuple[str, str]] = iter(())  # a root span's pair: one next() per request
_fork_hook = False


def _forget_pools() -> None:
    global _trace_ids, _span_ids, _root_ids
    _trace_ids = _span_ids = iter(())
    _root_ids = iter(())


def _draw(size: int) -> list[str]:
    """POOL_SIZE random ids of `size` bytes in lower-case hex, none all zeros."""
    global _fork_hook
    if not _fork_hook:
        _fork_hook = True
        os.register_at_fork(after_in_child=_forget_pools)
    ids = _randbytes(size * POOL_SIZE).hex(" ", size).split()
    zero = "0" * (2 * size)
    if zero in ids:  # all-zero ids are invalid in B3 and W3C
        ids = [i for i in ids if i != zero] or [f"{_getrandbits(8 * size) or 1:0{2 * size}x}"]
    return ids


def _refill_trace_ids() -> str:
    global _trace_ids
    _trace_ids = iter(_draw(16))
    return next(_trace_ids, None) or _refill_trace_ids()


def _refill_span_ids() -> str:
    global _span_ids
    _span_ids = iter(_draw(8))
    return next(_span_ids, None) or _refill_span_ids()


def new_trace_id() -> str:
    """A trace id: 32 hex digits, never all zeros."""
    return next(_trace_ids, None) or _refill_trace_ids()


def new_span_id() -> str:
    """A span id: 16 hex digits, never all zeros."""
    return next(_span_ids, None) or _refill_span_ids()


def _refill_root_ids() -> tuple[str, str]:
    global _root_ids
    _root_ids = zip(_draw(16), _draw(8), strict=False)  # a draw without its zero ids is shorter
    return next(_root_ids, None) or _refill_root_ids()


def new_ids() -> tuple[str, str]:
    """A new trace id and span id for a root span."""
    return next(_root_ids, None) or _refill_root_ids()


# What a server span learned about its request, as raw as the server gave it: path, query
# string, host, method, user agent, status (bytes from ASGI headers, text from a WSGI environ).
# The export side turns it into attributes (`settle`).
HttpFacts = tuple[str, bytes | str, bytes | str, str, bytes | str, int]


class Span(SpanRecord):
    """A sampled span in flight; `end()` hands it to the export sink exactly once."""

    __slots__ = ("_sink", "http_facts")

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
        self.http_facts: HttpFacts | None = None

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


def _text(value: bytes | str) -> str:
    """ASGI gives bytes; a server that gives str is taken as it is."""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def apply_http_facts(span: SpanRecord, facts: HttpFacts) -> None:
    """A server span's attributes and status, made from what it learned about its request."""
    path, query, host, method, agent, status = facts
    known: dict[str, AttributeValue] = {
        "http.path": path,
        "http.url": f"{path}?{_text(query)}" if query else path,
        "http.host": _text(host), "http.method": method,
        "http.user_agent": _text(agent), "http.status_code": status,
    }
    if span.attributes:  # the app set some of its own: ours are added, as before
        span.attributes.update(known)
    else:
        span.attributes = known
    span.status_code, span.status_message = _HTTP_STATUS.get(status) or _http_status(status)


def settled(span: SpanRecord) -> SpanRecord:
    """The span as `settle` would leave it, made on a copy: a batch is shared by every exporter,
    so one that settles its own spans (`settles_http_facts`) must not change them. Raises what
    making the attributes raised."""
    facts = span.http_facts if type(span) is Span else None
    if facts is None:
        return span
    copy = SpanRecord(span.name, span.trace_id, span.span_id, span.parent_span_id, span.kind,
                      span.start_ns, span.end_ns, dict(span.attributes), span.status_code,
                      span.status_message)
    apply_http_facts(copy, facts)
    return copy


class SettledViews:
    """`settled` for an exporter that settles its own spans (`settles_http_facts`): a span
    whose facts cannot be read is kept as it is, and counted for the exporter to report."""

    def __init__(self) -> None:
        self.problems = 0
        self.last_problem: Exception | None = None

    def __call__(self, span: SpanRecord) -> SpanRecord:
        try:
            return settled(span)
        except Exception as exc:  # reported by the exporter (`take_problems`), as the core does
            self.problems += 1
            self.last_problem = exc
            return span

    def take_problems(self) -> tuple[int, Exception | None]:
        """Spans whose facts could not be read since the last call, and the last reason."""
        taken = self.problems, self.last_problem
        self.problems, self.last_problem = 0, None
        return taken


def settle(spans: Iterable[SpanRecord]) -> list[Exception]:
    """Turns server spans' raw HTTP facts into attributes and status, off the request path; a
    span whose facts cannot be read keeps what it has, and what went wrong is returned."""
    problems = []
    for span in spans:
        if type(span) is Span:
            facts = span.http_facts
            if facts is not None:
                span.http_facts = None
                try:
                    apply_http_facts(span, facts)
                except Exception as exc:  # reported by the caller
                    problems.append(exc)
    return problems


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
