"""Router layer for ASGI apps: a plain ASGI middleware (not BaseHTTPMiddleware), one record per request."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from gatescope import sampling
from gatescope.lengths import SHORT_DIGITS, declared_length
from gatescope.paths import UNKNOWN_ROUTE, Endpoint, EndpointsOption
from gatescope.propagation import extract
from gatescope.router import CLIENT_CLOSED, ROUTE_ENVIRON_KEY, SERVER_ERROR, STATUS_TEXT, RouterLayer
from gatescope.spans import KIND_SERVER
from gatescope.tracing import Span, current, new_ids

if TYPE_CHECKING:
    from gatescope.runtime import Kit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HOST, _AGENT, _LENGTH, _ENCODING = b"host", b"user-agent", b"content-length", b"transfer-encoding"
_WANTED = frozenset({
    _HOST, _AGENT, _LENGTH, _ENCODING,
    b"x-b3-traceid", b"x-b3-spanid", b"x-b3-sampled", b"x-b3-flags", b"b3", b"traceparent",
})


# What a request's send wrapper learns, as indexes into its state list (a closure over a list
# is called faster than an object's __call__, and this runs for every response message).
STATUS, SENT, COMPLETE, SENDING = range(4)
CHAIN_LIMIT = 8  # causes and contexts looked through for the send that failed
ROUTE_CACHE_LIMIT = 10_000  # route objects remembered with their endpoint (apps have far fewer)


def _watch(send: Send, state: list[Any]) -> Send:
    """The send wrapper of one request: learns the status and counts body bytes as they pass.

    A plain function handing back the server's own awaitable: an `async def` wrapper would add a
    coroutine per message. The last awaitable is kept: a send that fails is told apart by its
    code in the exception's traceback (`_failure`)."""

    def sending(message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.body":
            body = message.get("body")
            if body:
                state[SENT] += len(body)
            if not message.get("more_body"):
                state[COMPLETE] = True  # the final body message went out
        elif kind == "http.response.start":
            state[STATUS] = message["status"]
        elif kind == "http.response.pathsend":
            state[SENT] += os.path.getsize(message["path"])
            state[COMPLETE] = True
        awaitable = state[SENDING] = send(message)
        return awaitable

    return sending


def _code_of(send: Any) -> Any:
    """The code a call to `send` runs first (a function's, a method's or a callable object's)."""
    while isinstance(send, functools.partial):
        send = send.func
    code = getattr(send, "__code__", None)
    if code is None:  # a callable object: its class's Python __call__, if it has one
        call = next((vars(c)["__call__"] for c in type(send).__mro__ if "__call__" in vars(c)),
                    None)
        code = getattr(call, "__code__", None)
    return code


def _left_while_sending(exc: BaseException, send: Send, sending: Any) -> bool:
    """Whether `exc` is, or was caused by, an OSError raised inside `send` (`sending`: the
    awaitable of its last call): servers say that the client went away by raising from send
    (an OSError the app raised itself is its failure)."""
    # The awaitable's own code is found even when `send` is a plain function handing back the
    # awaitable of another (as `_watch` does), whose frame is never in the traceback; send's
    # code, when it raised before handing anything back.
    codes = {code for code in (getattr(sending, "cr_code", None), _code_of(send)) if code}
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < CHAIN_LIMIT:
        if isinstance(current, OSError):
            if not codes:
                return True  # a send without Python code (a C callable): cannot tell, say it left
            tb = current.__traceback__
            while tb is not None:
                if tb.tb_frame.f_code in codes:
                    return True
                tb = tb.tb_next
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _failure(exc: BaseException, send: Send, exchange: list[Any]) -> int:
    """The status recorded when the app raised: the client left (499) or the app failed (500)."""
    return CLIENT_CLOSED if isinstance(exc, asyncio.CancelledError) \
        or _left_while_sending(exc, send, exchange[SENDING]) else SERVER_ERROR


_LEAN_WANTED = _WANTED - {_HOST, _AGENT}


class _CountingReceive:
    """Counts request body bytes when no Content-Length announces them (chunked uploads)."""

    __slots__ = ("receive", "received")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.received = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
        return message


def _long_length(value: bytes, receive: Receive,
                 counting: _CountingReceive | None) -> tuple[int, _CountingReceive | None]:
    """A Content-Length the inline check let by: the length it declares, or (when it declares
    none a Go server would take) 0 and the body counted as it arrives, as for a chunked one."""
    length = declared_length(value)
    if length is None:
        return 0, counting if counting is not None else _CountingReceive(receive)
    return length, counting


class TelemetryASGIMiddleware(RouterLayer):
    """KrakenD's router layer for any ASGI app: server views, a SERVER span, trace context in."""

    app: ASGIApp

    def __new__(cls, app: ASGIApp, kit: Kit, **options: Any) -> TelemetryASGIMiddleware:
        if cls is TelemetryASGIMiddleware and not kit.tags.host and not kit.tags.path \
                and kit.router is not None:  # default tags
            if kit.tracer.sampler is sampling.never:
                cls = _RecordOnlyASGIMiddleware  # sample_rate 0: most gateways
            elif kit.tracer.sampler is sampling.always:
                cls = _SampledASGIMiddleware  # sample_rate 100
        return super().__new__(cls)

    def __init__(self, app: ASGIApp, kit: Kit, *, endpoints: EndpointsOption = None,
                 unknown_route: str = UNKNOWN_ROUTE) -> None:
        super().__init__(app, kit, endpoints, unknown_route)
        self._by_route: dict[int, tuple[Any, Endpoint]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        check = self._check
        if scope["type"] != "http" or self._off or (check is not None and not check(scope["path"])):
            await self.app(scope, receive, send)
            return
        start = perf_counter_ns()
        host = agent = b""
        request_bytes = 0
        counting: _CountingReceive | None = None
        carried: dict[str, str] | None = None
        for name, value in scope["headers"]:
            if name in _WANTED:
                if name == _HOST:
                    host = value
                elif name == _LENGTH:
                    if len(value) < SHORT_DIGITS and value.isdigit():
                        request_bytes = int(value)
                    else:
                        request_bytes, counting = _long_length(value, receive, counting)
                elif name == _AGENT:
                    agent = value
                elif name == _ENCODING:
                    counting = _CountingReceive(receive)
                else:
                    if carried is None:
                        carried = {}
                    carried[name.decode("latin-1")] = value.decode("latin-1")
        parent = extract(carried.get) if carried is not None else None
        span = None if parent is None and self._never else \
            self._tracer.start_root(UNKNOWN_ROUTE, KIND_SERVER, parent)
        token = current.set(span) if span is not None else None
        # Mounts extend root_path in place; only naming the route needs the original.
        root_path = scope.get("root_path", "") if span is not None or self._tag_path else ""
        exchange: list[Any] = [0, 0, False, None]  # STATUS, SENT, COMPLETE, SENDING
        failed = 0
        try:
            await self.app(scope, receive if counting is None else counting,
                           _watch(send, exchange))
        except BaseException as exc:
            failed = _failure(exc, send, exchange)
            raise
        finally:
            elapsed_ns = perf_counter_ns() - start
            if counting is not None:
                request_bytes = counting.received
            if token is not None:
                current.reset(token)
            if span is None and not self._tag_path and not failed and exchange[COMPLETE]:
                # The common unsampled case: nothing but the one record.
                status = exchange[STATUS]
                self._record(host.decode("latin-1") if self._tag_host else "", "",
                             scope["method"], STATUS_TEXT.get(status) or str(status),
                             request_bytes, exchange[SENT], elapsed_ns / 1e6)
            else:
                self._finish(scope, root_path, exchange, failed, span, host, agent,
                             request_bytes, elapsed_ns)

    def _finish(self, scope: Scope, root_path: str, exchange: list[Any], failed: int,
                span: Any, host: bytes, agent: bytes, request_bytes: int, elapsed_ns: int) -> None:
        if failed:
            status = failed
        elif exchange[STATUS] and not exchange[COMPLETE]:
            # uvicorn reports a client that left only through receive(); the app (e.g. Starlette's
            # StreamingResponse) then stops without the final body message.
            status = CLIENT_CLOSED
        else:
            status = exchange[STATUS] or SERVER_ERROR  # an app that never answered: the server sends 500
        sampled = type(span) is Span
        endpoint = self._endpoint(scope, root_path) if self._tag_path or sampled else None
        path_tag = ""
        if endpoint is not None and self._tag_path:
            path_tag = endpoint.fixed if endpoint.fixed is not None else endpoint.path_tag(scope["path"])
        self._record(host.decode("latin-1") if self._tag_host else "", path_tag, scope["method"],
                     STATUS_TEXT.get(status) or str(status), request_bytes, exchange[SENT], elapsed_ns / 1e6)
        if sampled and endpoint is not None:
            span.name = endpoint.name
            # attributes and status are made from these on the export side (tracing.settle)
            span.http_facts = (scope["path"], scope.get("query_string", b""), host,
                               scope["method"], agent, status)
            span.end()

    def _endpoint(self, scope: Scope, root_path: str) -> Endpoint:
        """The route template the framework matched (Starlette/FastAPI), else resolver matching."""
        route = scope.get("route")
        if route is None:
            named = scope.get(ROUTE_ENVIRON_KEY)  # left by a framework hook (Django)
            return self._resolver.for_template(named) if isinstance(named, str) \
                else self._resolver.for_path(scope["path"])
        mounted = scope.get("root_path", "")
        if mounted == root_path:  # not under a mount: the route object alone names the endpoint
            hit = self._by_route.get(id(route))
            if hit is not None and hit[0] is route:
                return hit[1]
        template = getattr(route, "path", None)
        if isinstance(template, str):
            # Mounts extend root_path by what they matched; a mount itself serves a sub-tree.
            prefix = mounted[len(root_path):] if len(mounted) > len(root_path) else ""
            if getattr(route, "endpoint", None) is None:
                template = "/{path:path}"
            endpoint = self._resolver.for_template(prefix + template if prefix else template)
            if not prefix and len(self._by_route) < ROUTE_CACHE_LIMIT:
                self._by_route[id(route)] = (route, endpoint)  # the route is kept: its id stays its own
            return endpoint
        return self._resolver.for_path(scope["path"])


class _RecordOnlyASGIMiddleware(TelemetryASGIMiddleware):
    """The router layer when a request can only be recorded (never-sampler, no host or path tag);
    a request carrying trace context takes the general path, which passes the context on."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        check = self._check
        if scope["type"] != "http" or (check is not None and not check(scope["path"])):
            await self.app(scope, receive, send)
            return
        request_bytes = 0
        counting: _CountingReceive | None = None
        for name, value in scope["headers"]:
            if name in _LEAN_WANTED:
                if name == _LENGTH:
                    if len(value) < SHORT_DIGITS and value.isdigit():
                        request_bytes = int(value)
                    else:
                        request_bytes, counting = _long_length(value, receive, counting)
                elif name == _ENCODING:
                    counting = _CountingReceive(receive)
                else:
                    await TelemetryASGIMiddleware.__call__(self, scope, receive, send)
                    return
        start = perf_counter_ns()
        exchange: list[Any] = [0, 0, False, None]  # STATUS, SENT, COMPLETE, SENDING
        failed = 0
        try:
            await self.app(scope, receive if counting is None else counting, _watch(send, exchange))
        except BaseException as exc:
            failed = _failure(exc, send, exchange)
            raise
        finally:
            elapsed_ns = perf_counter_ns() - start
            if counting is not None:
                request_bytes = counting.received
            if not failed and exchange[COMPLETE]:
                status = exchange[STATUS]
                self._record("", "", scope["method"], STATUS_TEXT.get(status) or str(status),
                             request_bytes, exchange[SENT], elapsed_ns / 1e6)
            else:
                self._finish(scope, "", exchange, failed, None, b"", b"", request_bytes, elapsed_ns)


class _SampledASGIMiddleware(TelemetryASGIMiddleware):
    """The router layer when every request is sampled (sample_rate 100, no host or path tag);
    a request carrying trace context takes the general path, which continues that trace."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        check = self._check
        if scope["type"] != "http" or (check is not None and not check(scope["path"])):
            await self.app(scope, receive, send)
            return
        start = perf_counter_ns()
        host = agent = b""
        request_bytes = 0
        counting: _CountingReceive | None = None
        for name, value in scope["headers"]:
            if name in _WANTED:
                if name == _HOST:
                    host = value
                elif name == _LENGTH:
                    if len(value) < SHORT_DIGITS and value.isdigit():
                        request_bytes = int(value)
                    else:
                        request_bytes, counting = _long_length(value, receive, counting)
                elif name == _AGENT:
                    agent = value
                elif name == _ENCODING:
                    counting = _CountingReceive(receive)
                else:
                    await TelemetryASGIMiddleware.__call__(self, scope, receive, send)
                    return
        trace_id, span_id = new_ids()
        span = Span(UNKNOWN_ROUTE, trace_id, None, KIND_SERVER, self._tracer.sink, span_id)
        token = current.set(span)
        root_path = scope.get("root_path", "")
        exchange: list[Any] = [0, 0, False, None]  # STATUS, SENT, COMPLETE, SENDING
        failed = 0
        try:
            await self.app(scope, receive if counting is None else counting, _watch(send, exchange))
        except BaseException as exc:
            failed = _failure(exc, send, exchange)
            raise
        finally:
            elapsed_ns = perf_counter_ns() - start
            current.reset(token)
            if counting is not None:
                request_bytes = counting.received
            route = scope.get("route")
            hit = self._by_route.get(id(route))
            if hit is not None and hit[0] is route and not failed and exchange[COMPLETE] \
                    and scope.get("root_path", "") == root_path:
                # The common case, a completed response on a route already named, done inline:
                # the `_finish` and `_endpoint` calls cost ~1.5 µs a request in process.
                status = exchange[STATUS]
                method = scope["method"]
                self._record("", "", method, STATUS_TEXT.get(status) or str(status),
                             request_bytes, exchange[SENT], elapsed_ns / 1e6)
                span.name = hit[1].name
                # attributes and status are made from these on the export side (tracing.settle)
                span.http_facts = (scope["path"], scope.get("query_string", b""), host, method,
                                   agent, status)
                span.end()
            else:
                self._finish(scope, root_path, exchange, failed, span, host, agent,
                             request_bytes, elapsed_ns)
