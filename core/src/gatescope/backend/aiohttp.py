"""Backend layer for aiohttp: a `TraceConfig` for `ClientSession(trace_configs=[...])`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp

from gatescope.backend import ClientLayer

if TYPE_CHECKING:
    from gatescope.runtime import Kit


def trace_config(kit: Kit) -> aiohttp.TraceConfig:
    """A TraceConfig recording each call when its response headers arrive (aiohttp has no
    end-of-body signal): received bytes are the announced Content-Length, else 0."""
    layer = ClientLayer(kit)

    async def on_request_start(session: aiohttp.ClientSession, context: SimpleNamespace,
                               params: aiohttp.TraceRequestStartParams) -> None:
        url = params.url
        headers = params.headers
        length = headers.get("Content-Length", "")
        host = url.host or ""
        if url.explicit_port:
            host = f"{host}:{url.port}"
        call = layer.begin(params.method, host, url.path, str(url), headers.get("User-Agent", ""),
                           int(length) if length.isdigit() else 0)
        context.gatescope_call = call
        context.gatescope_counted = not length
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
            response = params.response
            call.finish(response.status, response.content_length or 0)

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


__all__: list[Any] = ["trace_config"]
