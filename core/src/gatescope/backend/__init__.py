"""Backend layer: KrakenD's client views and CLIENT span, shared by the httpx/requests/aiohttp glue."""

from __future__ import annotations

from time import perf_counter_ns
from typing import TYPE_CHECKING

from gatescope import sampling
from gatescope.filters import allow_all
from gatescope.paths import PATH_AGGREGATIONS, PATTERN, Endpoint
from gatescope.pipe import LayerScope, backend_endpoint
from gatescope.propagation import TraceContext, inject
from gatescope.router import STATUS_TEXT
from gatescope.spans import KIND_CLIENT, UNKNOWN
from gatescope.tracing import Span, current, new_ids, new_span_id

if TYPE_CHECKING:
    from gatescope.runtime import Kit
    from gatescope.tracing import Tracer

TRANSPORT_ERROR_STATUS = 500  # what OpenCensus' ochttp records when the round trip itself failed


class Backend(LayerScope):
    """KrakenD's backend layer for one `url_pattern`: a `backend-<url_pattern>` span, and the
    pattern (with its `path_aggregation`) that names the `http_client_path` tag of calls inside."""

    __slots__ = ("url_pattern",)

    def __init__(self, kit: Kit, url_pattern: str, path_aggregation: str | None = None) -> None:
        if path_aggregation is None:
            path_aggregation = _configured_aggregation(kit, url_pattern)
        elif path_aggregation not in PATH_AGGREGATIONS:
            raise ValueError(f"path_aggregation must be one of {', '.join(PATH_AGGREGATIONS)}; "
                             f"got {path_aggregation!r}")
        allow = kit.backend
        super().__init__(kit.tracer, f"backend-{url_pattern}", allow is not None and allow(url_pattern),
                         Endpoint(url_pattern, path_aggregation) if kit.tags.path else None)
        self.url_pattern = url_pattern


def _configured_aggregation(kit: Kit, url_pattern: str) -> str:
    for endpoint in kit.endpoints.values():
        for backend in endpoint.backends:
            if backend.url_pattern == url_pattern:
                return backend.path_aggregation
    return PATTERN


class ClientCall:
    """One outgoing request in flight: the trace context to inject and its single record."""

    __slots__ = ("host", "layer", "method", "path", "recorded", "sampled", "sent", "span",
                 "span_id", "start", "trace_id")

    def __init__(self, layer: ClientLayer, method: str, host: str, path: str, span: Span | None,
                 trace_id: str, span_id: str, sampled: bool, sent: int) -> None:
        self.layer = layer
        self.method = method
        self.host = host
        self.path = path
        self.span = span
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.sent = sent
        self.recorded = False
        self.start = perf_counter_ns()

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The propagation headers (B3 multi-header and W3C traceparent) as text pairs."""
        return inject(self.trace_id, self.span_id, self.sampled)

    def raw_headers(self) -> tuple[tuple[bytes, bytes, bytes], ...]:
        """The propagation headers as (name, lower-case name, value) bytes, built in one go."""
        trace_id = self.trace_id.encode()
        span_id = self.span_id.encode()
        flag = b"1" if self.sampled else b"0"
        return ((b"X-B3-TraceId", b"x-b3-traceid", trace_id),
                (b"X-B3-SpanId", b"x-b3-spanid", span_id),
                (b"X-B3-Sampled", b"x-b3-sampled", flag),
                (b"traceparent", b"traceparent", b"00-%s-%s-0%s" % (trace_id, span_id, flag)))

    def describe(self, url: str, user_agent: str) -> None:
        """Set the CLIENT span's attributes (only called when a span exists: url is costly)."""
        span = self.span
        if span is not None:
            attributes = span.attributes
            attributes["http.host"] = self.host
            attributes["http.method"] = self.method
            attributes["http.path"] = self.path
            attributes["http.url"] = url
            attributes["http.user_agent"] = user_agent

    def finish(self, status: int, received: int, error: BaseException | None = None) -> None:
        """Record the exchange once (later calls are ignored) and end the CLIENT span."""
        if self.recorded:
            return
        self.recorded = True
        elapsed = perf_counter_ns() - self.start
        layer = self.layer
        path_tag = ""
        if layer.tag_path:
            endpoint = backend_endpoint.get()
            path_tag = endpoint.path_tag(self.path) if endpoint is not None else self.path
        if error is not None:
            status = TRANSPORT_ERROR_STATUS
        layer.record(self.host if layer.tag_host else "", path_tag, self.method,
                     STATUS_TEXT.get(status) or str(status), self.sent, max(received, 0),
                     elapsed / 1e6)
        span = self.span
        if span is not None:
            if error is not None:
                span.set_status(UNKNOWN, str(error) or type(error).__name__)
            else:
                span.set_http_status(status)
            span.end()




class ClientLayer:
    """What every client integration needs from the kit, resolved once."""

    __slots__ = ("_never", "allow", "lean", "record", "tag_host", "tag_path", "tracer")

    def __init__(self, kit: Kit) -> None:
        self.allow = kit.backend
        self.record = kit.client.record
        self.tracer: Tracer = kit.tracer
        self.tag_host = kit.tags.host
        self.tag_path = kit.tags.path
        self._never = kit.tracer.sampler is sampling.never
        # Nothing about a call but its record and unsampled propagation headers is ever needed:
        # no span can start, no tag names its host or path, no filter reads its path.
        self.lean = self._never and not self.tag_host and not self.tag_path \
            and self.allow is allow_all

    def start(self, method: str, host: str, path: str, sent: int) -> ClientCall | None:
        """Start a call (None when the backend layer is off for it) and pick the ids to inject;
        the caller sets the span's attributes with `describe` when `call.span` is not None."""
        allow = self.allow
        if allow is None or (allow is not allow_all and not allow(path)):  # no per-call no-op
            return None
        parent = current.get()
        span: Span | None = None
        if type(parent) is Span:
            span = self.tracer.start_child(path or "/", KIND_CLIENT)
        elif parent is None and not self._never:
            started = self.tracer.start_root(path or "/", KIND_CLIENT, None)
            span = started if type(started) is Span else None
        if span is not None:
            return ClientCall(self, method, host, path, span, span.trace_id, span.span_id, True,
                              sent)
        if isinstance(parent, TraceContext):
            return ClientCall(self, method, host, path, None, parent.trace_id, new_span_id(),
                              False, sent)
        trace_id, span_id = new_ids()  # unsampled, no parent
        return ClientCall(self, method, host, path, None, trace_id, span_id, False, sent)

    def start_lean(self, method: str, sent: int) -> ClientCall | None:
        """`start` for a `lean` layer (host and path untouched); None: a span is current after
        all (another Telemetry's), so the caller takes the full `start`."""
        parent = current.get()
        if parent is None:
            trace_id, span_id = new_ids()
            return ClientCall(self, method, "", "", None, trace_id, span_id, False, sent)
        if type(parent) is TraceContext:
            return ClientCall(self, method, "", "", None, parent.trace_id, new_span_id(), False,
                              sent)
        return None

    def begin(self, method: str, host: str, path: str, url: str, user_agent: str,
              sent: int) -> ClientCall | None:
        """Start a call with its span attributes set (for glue that has the url at hand)."""
        call = self.start(method, host, path, sent)
        if call is not None and call.span is not None:
            call.describe(url, user_agent)
        return call


__all__ = ["Backend", "ClientCall", "ClientLayer"]
