"""Backend layer for httpx: transport wrappers for `Client` and `AsyncClient`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, cast

import httpx

from gatescope.backend import ClientCall, ClientLayer
from gatescope.lengths import declared_length

if TYPE_CHECKING:
    from gatescope.runtime import Kit


# The names this layer injects, lower-cased as httpx keys them.
_PROPAGATION_KEYS = frozenset((b"x-b3-traceid", b"x-b3-spanid", b"x-b3-sampled", b"traceparent"))
# What a lean layer (rate 0, no host or path tag) reads of a request's headers.
_LEAN_KEYS = _PROPAGATION_KEYS | {b"content-length"}


def _has_raw_list() -> bool:
    """httpx keeps headers as a list of (name, lower-case name, value) bytes; checked once so a
    different layout falls back to the public (slower) `Headers` API."""
    probe = httpx.Headers({"A": "b"})
    return getattr(probe, "_list", None) == [(b"A", b"a", b"b")]


_RAW_LIST = _has_raw_list()
# httpx decodes a body (gzip, deflate, br, zstd) in `Response.iter_bytes` with the decoder that
# `_get_content_decoder` makes once and keeps in `_decoder`; a counting stand-in there sees the
# decoded bytes. Checked once, like `_RAW_LIST`: without it, the bytes on the wire are counted.
_DECODER_HOOK = callable(getattr(httpx.Response, "_get_content_decoder", None))


def _text(value: bytes, headers: httpx.Headers) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return value.decode(headers.encoding)


# What `_begin` put on a request, to take back off: the raw list and the entries, or the names.
Added = tuple[list[tuple[bytes, bytes, bytes]], tuple[tuple[bytes, bytes, bytes], ...]] | \
    tuple[httpx.Headers, tuple[str, ...]]


def _begin(layer: ClientLayer, request: httpx.Request) -> tuple[ClientCall, Added] | None:
    """Start the call and put the propagation headers on the request, saying what was added."""
    headers = request.headers
    if not _RAW_LIST:
        return _begin_public(layer, request)
    items: list[tuple[bytes, bytes, bytes]] = headers._list
    call = None
    if layer.lean:  # only the length and a clash matter: one set test for each other header
        length, clash = None, False
        for _, key, value in items:
            if key in _LEAN_KEYS:
                if key == b"content-length":
                    length = value if length is None else length + b", " + value
                else:
                    clash = True
        declared = None if length is None else declared_length(length)
        call = layer.start_lean(request.method, declared or 0)
    if call is None:  # not lean, or another Telemetry's span is current after all
        host = length = agent = None
        clash = False
        for _, key, value in items:  # one pass instead of three case-folding lookups
            if key == b"host":
                host = value if host is None else host + b", " + value
            elif key == b"content-length":
                length = value if length is None else length + b", " + value
            elif key == b"user-agent":
                agent = value if agent is None else agent + b", " + value
            elif key in _PROPAGATION_KEYS:
                clash = True
        declared = None if length is None else declared_length(length)
        url = request.url
        call = layer.start(request.method, url.host if host is None else _text(host, headers),
                           url.path, declared or 0)
        if call is None:
            return None
        if call.span is not None:
            call.describe(str(url), "" if agent is None else _text(agent, headers))
    added: Added
    if clash:
        added = _set_by_name(headers, call)
    else:
        entries = call.raw_headers()
        items.extend(entries)
        added = (items, entries)
    if declared is None and (length is not None or type(request.stream) is not httpx.ByteStream):
        _count_undeclared(request, call, length)  # not for a GET: no length, no body
    return call, added


def _begin_public(layer: ClientLayer, request: httpx.Request) -> tuple[ClientCall, Added] | None:
    headers = request.headers
    length = headers.get("content-length")
    declared = None if length is None else declared_length(length)
    url = request.url
    call = layer.begin(request.method, headers.get("host", url.host), url.path, str(url),
                       headers.get("user-agent", ""), declared or 0)
    if call is None:
        return None
    added = _set_by_name(headers, call)
    if declared is None:
        _count_undeclared(request, call, length)
    return call, added


def _count_undeclared(request: httpx.Request, call: ClientCall, length: Any) -> None:
    """A body whose length no header declares (or none a server would take) is counted."""
    if not isinstance(request.stream, httpx.ByteStream):
        request.stream = _CountingRequestStream(request.stream, call)  # chunked upload
    elif length is not None:  # bytes with a Content-Length they cannot have: their own length
        call.sent = len(request.content)


def _set_by_name(headers: httpx.Headers, call: ClientCall) -> Added:
    """Set each header as `headers[name] = value` would: one the caller set is replaced, and
    keeps this call's value afterwards; only the names that were absent come off again."""
    fresh = []
    for name, value in call.headers:
        if name not in headers:
            fresh.append(name)
        headers[name] = value
    return headers, tuple(fresh)


def _withdraw(added: Added) -> None:
    """Take the propagation headers off the request once they are on the wire.

    After the transport returns, httpx copies every request header for its cookie jar, looking
    each name up through the whole list (quadratic: ~3 µs per header here), and a redirect copies
    them into the next request, which gets its own. What the caller set stays."""
    target, entries = added
    if isinstance(target, list):
        count = len(entries)
        if len(target) >= count and target[-1] is entries[-1] and target[-count] is entries[0]:
            del target[-count:]
        else:  # something inside the transport added headers after ours
            ours = {id(entry) for entry in entries}
            target[:] = [entry for entry in target if id(entry) not in ours]
    else:
        for name in cast("tuple[str, ...]", entries):  # mypy cannot narrow a tuple union
            target.pop(name, None)


class _CountingRequestStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Counts request body bytes that pass when no Content-Length announced them."""

    def __init__(self, stream: Any, call: ClientCall) -> None:
        self._stream = stream
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            self._call.sent += len(chunk)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            self._call.sent += len(chunk)
            yield chunk


class _CountingResponseStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Counts response body bytes; the call is recorded when the body is closed (as ochttp does).

    Plain (async) iterators, not generators: one method call per chunk and nothing else (asyncio
    registers every async generator in a weak set and runs a hook on its first step)."""

    def __init__(self, stream: Any, call: ClientCall, status: int) -> None:
        self._stream = stream
        self._call = call
        self._status = status
        self._received = 0
        self.decoded: int | None = None  # counted by `_DecodedCount` once httpx decodes the body
        self._chunks: Any = None

    def failed(self, exc: BaseException) -> None:
        self._call.finish(self._status, self._counted(), exc)

    def _counted(self) -> int:
        """The body as the caller read it: decoded when httpx decoded it (OpenCensus counts
        response bytes uncompressed), else as it arrived (`iter_raw`, no Content-Encoding)."""
        return self._received if self.decoded is None else self.decoded

    def __iter__(self) -> Iterator[bytes]:
        self._chunks = iter(self._stream)
        return self

    def __next__(self) -> bytes:
        try:
            chunk: bytes = next(self._chunks)
        except StopIteration:
            raise
        except Exception as exc:
            self.failed(exc)
            raise
        self._received += len(chunk)
        return chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._chunks = self._stream.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk: bytes = await self._chunks.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            self.failed(exc)
            raise
        self._received += len(chunk)
        return chunk

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._call.finish(self._status, self._counted())

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._call.finish(self._status, self._counted())


class _DecodedCount:
    """Stands in for an encoded body's decoder, adding what it yields to the stream's count; a
    body that fails to decode fails the call, as a body cut off does."""

    __slots__ = ("_decoder", "_stream")

    def __init__(self, decoder: Any, stream: _CountingResponseStream) -> None:
        self._decoder = decoder
        self._stream = stream

    def decode(self, data: bytes) -> bytes:
        return self._counted(self._decoder.decode, data)

    def flush(self) -> bytes:
        # httpx flushes once the raw stream has closed, so after the record; its decoders hand
        # out everything in `decode` (zlib without max_length, brotli, zstd): this gives b"".
        return self._counted(self._decoder.flush)

    def _counted(self, step: Any, *data: bytes) -> bytes:
        stream = self._stream
        try:
            out: bytes = step(*data)
        except Exception as exc:
            stream.failed(exc)
            raise
        stream.decoded = (stream.decoded or 0) + len(out)
        return out


def _encoded(response: httpx.Response) -> bool:
    """Whether the response names a Content-Encoding other than identity."""
    if _RAW_LIST:
        for _, key, value in response.headers._list:
            if key == b"content-encoding" and value.strip().lower() != b"identity":
                return True
        return False
    encoding: str = response.headers.get("content-encoding", "identity")
    return encoding.strip().lower() != "identity"


def _counted(response: httpx.Response, call: ClientCall) -> httpx.Response:
    """The response with its body counted; recorded at once if the transport already read it."""
    if response.is_closed:  # already read, and decoded, by the transport (MockTransport, caches)
        call.finish(response.status_code, len(response.content))
        return response
    stream = _CountingResponseStream(response.stream, call, response.status_code)
    if _DECODER_HOOK and _encoded(response):
        response._decoder = _DecodedCount(response._get_content_decoder(), stream)  # type: ignore[assignment]
    response.stream = stream
    return response


class TelemetryTransport(httpx.BaseTransport):
    """Wraps an httpx transport (default `httpx.HTTPTransport(**options)`) with the backend layer."""

    def __init__(self, kit: Kit, transport: httpx.BaseTransport | None = None,
                 **options: Any) -> None:
        self._transport = transport if transport is not None else httpx.HTTPTransport(**options)
        self._layer = ClientLayer(kit)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        begun = _begin(self._layer, request)
        if begun is None:
            return self._transport.handle_request(request)
        call, added = begun
        try:
            response = self._transport.handle_request(request)
        except BaseException as exc:
            call.finish(0, 0, exc)
            raise
        finally:
            _withdraw(added)
        return _counted(response, call)

    def close(self) -> None:
        self._transport.close()


class AsyncTelemetryTransport(httpx.AsyncBaseTransport):
    """Wraps an async httpx transport (default `httpx.AsyncHTTPTransport(**options)`)."""

    def __init__(self, kit: Kit, transport: httpx.AsyncBaseTransport | None = None,
                 **options: Any) -> None:
        self._transport = transport if transport is not None else \
            httpx.AsyncHTTPTransport(**options)
        self._layer = ClientLayer(kit)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        begun = _begin(self._layer, request)
        if begun is None:
            return await self._transport.handle_async_request(request)
        call, added = begun
        try:
            response = await self._transport.handle_async_request(request)
        except BaseException as exc:
            call.finish(0, 0, exc)
            raise
        finally:
            _withdraw(added)
        return _counted(response, call)

    async def aclose(self) -> None:
        await self._transport.aclose()
