"""Backend layer for aiohttp: a `TraceConfig` for `ClientSession(trace_configs=[...])`."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import Context, copy_context
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp

from gatescope.backend import ClientCall, ClientLayer
from gatescope.lengths import declared_length

if TYPE_CHECKING:
    from gatescope.runtime import Kit


class BodyWatch:
    """Records a call once its response body ends, or is released or closed before its end:
    aiohttp signals neither, so the watch waits on the body stream's end and stands in for the
    response's own `release` and `close`."""

    __slots__ = ("call", "close", "context", "release", "response")

    def __init__(self, call: ClientCall, response: aiohttp.ClientResponse) -> None:
        self.call = call
        self.response = response
        # The body's end is fed from the connection's callbacks, outside the caller's context
        # (where the backend's endpoint, and so the path tag, is set).
        self.context: Context = copy_context()
        self.release: Callable[[], Any] = response.release
        self.close: Callable[[], None] = response.close
        overrides = vars(response)
        overrides["release"] = self._release
        overrides["close"] = self._close
        response.content.on_eof(self._ended)  # at once when the body is already whole

    def _ended(self) -> None:
        self.context.run(self.finish)

    def _release(self) -> Any:
        self.finish()
        return self.release()

    def _close(self) -> None:
        self.finish()
        self.close()

    def finish(self) -> None:
        """Record with the body bytes aiohttp delivered (decompressed when it decompressed them,
        like the requests adapter); a body cut off by the upstream is a failed call. The first
        call records (`ClientCall.finish` ignores later ones)."""
        if self.call.recorded:
            return
        response = self.response
        overrides = vars(response)
        overrides.pop("release", None)
        overrides.pop("close", None)
        content = response.content
        error = None if content.is_eof() else content.exception()
        self.call.finish(response.status, content.total_bytes, error)


def trace_config(kit: Kit) -> aiohttp.TraceConfig:
    """A TraceConfig recording each call when its response body ends (or is given up)."""
    layer = ClientLayer(kit)

    async def on_request_start(session: aiohttp.ClientSession, context: SimpleNamespace,
                               params: aiohttp.TraceRequestStartParams) -> None:
        url = params.url
        headers = params.headers
        length = headers.get("Content-Length", "")
        declared = declared_length(length) if length else None
        host = url.host or ""
        if url.explicit_port:
            host = f"{host}:{url.port}"
        call = layer.begin(params.method, host, url.path, str(url), headers.get("User-Agent", ""),
                           declared or 0)
        context.gatescope_call = call
        context.gatescope_counted = declared is None  # chunks counted as they are sent
        if call is not None:
            for name, value in call.headers:
                headers[name] = value

    async def on_request_chunk_sent(session: aiohttp.ClientSession, context: SimpleNamespace,
                                    params: aiohttp.TraceRequestChunkSentParams) -> None:
        call = getattr(context, "gatescope_call", None)
        if call is not None and context.gatescope_counted:
            call.sent += len(params.chunk)

    async def on_request_end(session: aiohttp.ClientSession, context: SimpleNamespace,
                             params: aiohttp.TraceRequestEndParams) -> None:
        call = getattr(context, "gatescope_call", None)
        if call is not None:
            BodyWatch(call, params.response)

    async def on_request_exception(session: aiohttp.ClientSession, context: SimpleNamespace,
                                   params: aiohttp.TraceRequestExceptionParams) -> None:
        call = getattr(context, "gatescope_call", None)
        if call is not None:
            call.finish(0, 0, params.exception)

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_request_start)
    config.on_request_chunk_sent.append(on_request_chunk_sent)
    config.on_request_end.append(on_request_end)
    config.on_request_exception.append(on_request_exception)
    return config


__all__: list[Any] = ["BodyWatch", "trace_config"]
