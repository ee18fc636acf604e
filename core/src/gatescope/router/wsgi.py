"""Router layer for WSGI apps (Flask, Django, any WSGI callable): one record per request."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from gatescope.lengths import SHORT_DIGITS, declared_length
from gatescope.paths import UNKNOWN_ROUTE, EndpointsOption
from gatescope.propagation import extract
from gatescope.router import CLIENT_CLOSED, ROUTE_ENVIRON_KEY, SERVER_ERROR, STATUS_TEXT, RouterLayer
from gatescope.spans import KIND_SERVER
from gatescope.tracing import Span, current

if TYPE_CHECKING:
    from gatescope.runtime import Kit

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_TRACE_KEYS = ("HTTP_X_B3_TRACEID", "HTTP_B3", "HTTP_TRACEPARENT")


class _CountingInput:
    """Counts request body bytes read by the app when no Content-Length announced them."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.received = 0

    def read(self, *args: Any) -> bytes:
        data: bytes = self.stream.read(*args)
        self.received += len(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self.stream.readline(*args)
        self.received += len(data)
        return data

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self.stream.readlines(*args)
        self.received += sum(map(len, lines))
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self.stream:
            self.received += len(line)
            yield line


class _Call:
    """One request: the start_response wrapper, the counted response body, and its single record."""

    __slots__ = ("counting", "environ", "failed", "finished", "iterating", "middleware", "recorded",
                 "request_bytes", "result", "sent", "span", "start", "start_response", "status")

    def __init__(self, middleware: TelemetryWSGIMiddleware, environ: Environ,
                 start_response: StartResponse, span: Any, start: int, request_bytes: int,
                 counting: _CountingInput | None) -> None:
        self.middleware = middleware
        self.environ = environ
        self.start_response = start_response
        self.span = span
        self.start = start
        self.request_bytes = request_bytes
        self.counting = counting
        self.status = 0
        self.sent = 0
        self.failed = 0
        self.iterating = False
        self.finished = False
        self.recorded = False
        self.result: Iterable[bytes] = ()

    def __call__(self, status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], object]:
        code = status[:3]
        # PEP 3333 asks for three digits; what else an app passes is the server's to refuse.
        self.status = int(code) if code.isascii() and code.isdigit() else 0
        write = self.start_response(status, headers, exc_info)
        return self._writer(write)

    def _writer(self, write: Callable[[bytes], object]) -> Callable[[bytes], object]:
        def counted_write(data: bytes) -> object:  # the legacy write() path; rare
            self.sent += len(data)
            return write(data)
        return counted_write

    def __iter__(self) -> Iterator[bytes]:
        self.iterating = True
        try:
            for chunk in self.result:
                self.sent += len(chunk)
                yield chunk
        except GeneratorExit:
            raise  # the server stopped iterating: close() decides what that means
        except BaseException:
            self.failed = SERVER_ERROR
            raise
        self.finished = True
        self.finish()  # the whole body went out; servers (or test clients) that never close() count too

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        except BaseException:
            self.failed = SERVER_ERROR
            raise
        finally:
            if self.iterating and not self.finished and not self.failed:
                self.failed = CLIENT_CLOSED  # stopped in the middle of the body: client went away
            self.finish()

    def finish(self) -> None:
        if self.recorded:
            return
        self.recorded = True
        self.middleware._finish(self, perf_counter_ns() - self.start)


class TelemetryWSGIMiddleware(RouterLayer):
    """KrakenD's router layer for any WSGI app: server views, a SERVER span, trace context in."""

    app: WSGIApp

    def __init__(self, app: WSGIApp, kit: Kit, *, endpoints: EndpointsOption = None,
                 unknown_route: str = UNKNOWN_ROUTE) -> None:
        super().__init__(app, kit, endpoints, unknown_route)
        if not self._off:
            flask_routes(app)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        check = self._check
        if self._off or (check is not None and not check(environ.get("PATH_INFO", ""))):
            return self.app(environ, start_response)
        start = perf_counter_ns()
        length = environ.get("CONTENT_LENGTH")
        declared = None
        if length:
            declared = int(length) if len(length) < SHORT_DIGITS and length.isdigit() \
                and length.isascii() else declared_length(length)
        request_bytes = declared or 0
        counting = None
        # No length a Go server would take, or a chunked body: what the app reads is counted.
        if (declared is None if length else "HTTP_TRANSFER_ENCODING" in environ) \
                and "wsgi.input" in environ:
            environ["wsgi.input"] = counting = _CountingInput(environ["wsgi.input"])
        parent = None
        for key in _TRACE_KEYS:
            if key in environ:
                parent = extract(lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")))
                break
        span = None if parent is None and self._never else \
            self._tracer.start_root(UNKNOWN_ROUTE, KIND_SERVER, parent)
        call = _Call(self, environ, start_response, span, start, request_bytes, counting)
        token = current.set(span) if span is not None else None
        try:
            call.result = self.app(environ, call)
        except BaseException:
            call.failed = SERVER_ERROR
            call.finish()
            raise
        finally:
            if token is not None:
                current.reset(token)
        return call

    def _finish(self, call: _Call, elapsed_ns: int) -> None:
        environ = call.environ
        status = call.failed or call.status or SERVER_ERROR
        span = call.span
        sampled = type(span) is Span
        endpoint = None
        if self._tag_path or sampled:
            template = environ.get(ROUTE_ENVIRON_KEY)
            endpoint = self._resolver.for_template(template) if isinstance(template, str) \
                else self._resolver.for_path(environ.get("PATH_INFO", ""))
        path_tag = ""
        if endpoint is not None and self._tag_path:
            path_tag = endpoint.fixed if endpoint.fixed is not None \
                else endpoint.path_tag(environ.get("PATH_INFO", ""))
        host = (environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")) \
            if self._tag_host or sampled else ""
        request_bytes = call.counting.received if call.counting is not None else call.request_bytes
        self._record(host if self._tag_host else "", path_tag, environ.get("REQUEST_METHOD", "GET"),
                     STATUS_TEXT.get(status) or str(status), request_bytes, call.sent,
                     elapsed_ns / 1e6)
        if sampled and endpoint is not None:
            span.name = endpoint.name
            # attributes and status are made from these on the export side (tracing.settle)
            span.http_facts = (environ.get("PATH_INFO", ""), environ.get("QUERY_STRING") or "",
                               host, environ.get("REQUEST_METHOD", "GET"),
                               environ.get("HTTP_USER_AGENT", ""), status)
            span.end()


def flask_routes(app: Any) -> bool:
    """Make a Flask app leave its matched `url_rule` in the environ; True if `app` is Flask."""
    app = getattr(app, "__self__", app)  # also `flask_app.wsgi_app`, the idiomatic thing to wrap
    funcs = getattr(app, "before_request_funcs", None)
    if not isinstance(funcs, dict) or not hasattr(app, "url_map"):
        return False
    from flask import request

    def note_route() -> None:
        rule = request.url_rule
        if rule is not None:
            request.environ[ROUTE_ENVIRON_KEY] = rule.rule

    hooks = funcs.setdefault(None, [])
    if not any(getattr(h, "__qualname__", "") == note_route.__qualname__ for h in hooks):
        hooks.insert(0, note_route)  # first, so an earlier hook answering still names the route
    return True
