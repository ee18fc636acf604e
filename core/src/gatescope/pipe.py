"""Pipe layer: the `pipe-<endpoint>` span around a handler's backend merging, sync or async."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from gatescope.sampling import never
from gatescope.spans import CANCELLED, KIND_UNSPECIFIED, STATUS_NAMES, UNKNOWN
from gatescope.tracing import Span, Tracer, current

if TYPE_CHECKING:
    from gatescope.paths import Endpoint
    from gatescope.runtime import Kit

F = TypeVar("F", bound=Callable[..., Any])

# The innermost entered layer scope of this task/thread, linked to the one it is nested in.
_active: ContextVar[LayerCall | None] = ContextVar("gatescope_layer_call", default=None)
# The backend (url pattern + path_aggregation) an outgoing call is made for, if one was named.
backend_endpoint: ContextVar[Endpoint | None] = ContextVar("gatescope_backend", default=None)


class LayerCall:
    """What `with pipe as call:` yields: lets the handler mark the result incomplete or failed."""

    __slots__ = ("active_token", "backend_token", "complete", "error", "owner", "span",
                 "span_token")

    def __init__(self, owner: LayerScope, span: Span | None) -> None:
        self.complete = True  # set before `owner`: the shared untraced stand-in freezes after it
        self.error: str | None = None
        self.owner = owner
        self.span = span
        self.span_token: Token[Any] | None = None
        self.backend_token: Token[Endpoint | None] | None = None
        self.active_token: Token[LayerCall | None] | None = None

    def fail(self, error: BaseException | str) -> None:
        """Record an error the handler caught (KrakenD's `error` attribute); implies incomplete."""
        self.error = str(error) or type(error).__name__
        self.complete = False

    def close(self, exc: BaseException | None) -> None:
        span = self.span
        if span is None:
            return
        self.complete, self.error = leave_layer(span, exc, self.complete, self.error)


def leave_layer(span: Span | None, exc: BaseException | None, complete: bool, error: str | None,
                span_token: Token[Any] | None = None,
                named: Token[Endpoint | None] | None = None) -> tuple[bool, str | None]:
    """Reset what a decorated call set (in `__exit__`'s order), then end its span with KrakenD's
    attributes: `error` (and the status), `complete`, `canceled`. An exception makes the call
    incomplete and, unless it is a cancellation, its error. Returns the call's `complete` and
    `error` as the span records them (as given when there is no span)."""
    if named is not None:
        backend_endpoint.reset(named)
    if span_token is not None:
        current.reset(span_token)
    if span is None:
        return complete, error
    canceled = isinstance(exc, asyncio.CancelledError)
    if exc is not None:
        complete = False
        if error is None and not canceled:
            error = str(exc) or type(exc).__name__
    attributes = span.attributes
    if error is not None:
        attributes["error"] = error
        span.set_status(UNKNOWN, error)
    elif canceled:
        span.set_status(CANCELLED, STATUS_NAMES[CANCELLED])
    attributes["complete"] = complete
    attributes["canceled"] = canceled
    span.end()
    return complete, error


class _Untraced(LayerCall):
    """Shared stand-in when nothing is traced: every mark is ignored."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("complete", "error") and hasattr(self, "owner"):
            return
        object.__setattr__(self, name, value)

    def fail(self, error: BaseException | str) -> None:
        return None


class LayerScope:
    """A named child span around a unit of work: decorator (sync/async) and (async) context manager."""

    __slots__ = ("_passthrough", "_tracer", "_untraced", "enabled", "endpoint", "name")

    def __init__(self, tracer: Tracer, name: str, enabled: bool,
                 endpoint: Endpoint | None = None) -> None:
        self.name = name
        self.enabled = enabled
        self.endpoint = endpoint  # set as `backend_endpoint` while inside (backend layer only)
        self._tracer = tracer
        self._untraced = _Untraced(self, None)
        # Nothing can happen inside: the layer is off, or no span can start and no backend
        # endpoint is to be named (the never-sampler, sample_rate 0).
        self._passthrough = not enabled or (tracer.sampler is never and endpoint is None)

    def __enter__(self) -> LayerCall:
        if self._passthrough:
            return self._untraced
        span = self._tracer.start_child(self.name, KIND_UNSPECIFIED)
        if span is None and self.endpoint is None:
            return self._untraced
        call = LayerCall(self, span)
        if span is not None:
            call.span_token = current.set(span)
        if self.endpoint is not None:
            call.backend_token = backend_endpoint.set(self.endpoint)
        call.active_token = _active.set(call)
        return call

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._passthrough:
            return
        call = _active.get()
        if call is None or call.owner is not self:
            return  # nothing was entered for this scope (disabled or unsampled)
        assert call.active_token is not None
        _active.reset(call.active_token)
        if call.backend_token is not None:
            backend_endpoint.reset(call.backend_token)
        if call.span_token is not None:
            current.reset(call.span_token)
        call.close(exc)

    async def __aenter__(self) -> LayerCall:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, function: F) -> F:
        """Decorate a sync or async function: each call runs inside this scope.

        The function cannot reach a `LayerCall`, so none is made: the span and the context
        tokens stay in the wrapper's locals (about half the steps of `with self`)."""
        if self._passthrough:
            return function  # the scope could never record anything around it
        start_child, name, endpoint = self._tracer.start_child, self.name, self.endpoint
        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                span = start_child(name, KIND_UNSPECIFIED)
                if span is None and endpoint is None:
                    return await function(*args, **kwargs)
                span_token = current.set(span) if span is not None else None
                named = backend_endpoint.set(endpoint) if endpoint is not None else None
                try:
                    result = await function(*args, **kwargs)
                    complete = _is_complete(result)  # inside: a `complete` that raises fails the call
                except BaseException as exc:
                    leave_layer(span, exc, False, None, span_token, named)
                    raise
                leave_layer(span, None, complete, None, span_token, named)
                return result
            return cast(F, run_async)

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            span = start_child(name, KIND_UNSPECIFIED)
            if span is None and endpoint is None:
                return function(*args, **kwargs)
            span_token = current.set(span) if span is not None else None
            named = backend_endpoint.set(endpoint) if endpoint is not None else None
            try:
                result = function(*args, **kwargs)
                complete = _is_complete(result)
            except BaseException as exc:
                leave_layer(span, exc, False, None, span_token, named)
                raise
            leave_layer(span, None, complete, None, span_token, named)
            return result
        return cast(F, run)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, enabled={self.enabled})"


def _is_complete(result: Any) -> bool:
    """KrakenD's `resp != nil && resp.IsComplete`: a `complete` flag on the result wins."""
    if result is None:
        return False
    flag = getattr(result, "complete", None)
    return flag if isinstance(flag, bool) else True


class Pipe(LayerScope):
    """KrakenD's pipe layer for one endpoint: a `pipe-<endpoint>` span (no metrics, as in KrakenD)."""

    __slots__ = ("endpoint_name",)

    def __init__(self, kit: Kit, endpoint: str) -> None:
        allow = kit.pipe
        super().__init__(kit.tracer, f"pipe-{endpoint}", allow is not None and allow(endpoint))
        self.endpoint_name = endpoint
