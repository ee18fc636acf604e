"""Backend layer for requests: an `HTTPAdapter` mounted on a `Session`."""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import copy_context
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from gatescope.backend import ClientCall, ClientLayer
from gatescope.lengths import declared_length

if TYPE_CHECKING:
    from gatescope.runtime import Kit


class TelemetryAdapter(HTTPAdapter):
    """Every request sent through this adapter is the backend layer (metrics, span, propagation)."""

    def __init__(self, kit: Kit, **options: Any) -> None:
        super().__init__(**options)
        self._layer = ClientLayer(kit)

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        url = request.url or ""
        parts = urlsplit(url)
        headers = request.headers
        length = _text(headers.get("Content-Length"))
        call = self._layer.begin(request.method or "GET", parts.netloc, parts.path or "/", url,
                                 _text(headers.get("User-Agent")) or "",
                                 _body_size(request.body, length))
        if call is None:
            return super().send(request, stream=stream, **kwargs)
        for name, value in call.headers:
            headers[name] = value
        try:
            response = super().send(request, stream=stream, **kwargs)
        except BaseException as exc:
            call.finish(0, 0, exc)
            raise
        if stream:
            if request.method == "HEAD" or response.status_code in (204, 304) or \
                    response.headers.get("Content-Length") == "0":
                call.finish(response.status_code, 0)  # no body will come
            else:  # the caller reads the body later: the call ends with it
                response.raw = StreamedBody(response.raw, call, response.status_code)
            return response
        try:
            received = len(response.content)  # what Session.send would read next anyway
        except BaseException as exc:
            call.finish(response.status_code, 0, exc)
            raise
        call.finish(response.status_code, received)
        return response


class StreamedBody:
    """Stands in for a streamed response's `raw` (urllib3's response): counts the body bytes
    read through it and records the call once, when the body ends, fails, or is closed first.
    Everything else is the urllib3 response's own."""

    def __init__(self, raw: Any, call: ClientCall, status: int) -> None:
        self._raw = raw
        self._call = call
        self._status = status
        self._context = copy_context()  # the caller's: the backend's endpoint names the path
        self.received = 0

    def stream(self, amt: int | None = 2**16, decode_content: bool | None = None) -> Iterator[bytes]:
        try:
            for chunk in self._raw.stream(amt, decode_content=decode_content):
                self.received += len(chunk)
                yield chunk
        except GeneratorExit:  # the caller stopped reading: not a failure
            self._finish(None)
            raise
        except Exception as exc:
            self._finish(exc)
            raise
        self._finish(None)

    def read(self, amt: int | None = None, *args: Any, **kwargs: Any) -> bytes:
        try:
            data: bytes = self._raw.read(amt, *args, **kwargs)
        except Exception as exc:
            self._finish(exc)
            raise
        self.received += len(data)
        if amt is None or not data:
            self._finish(None)
        return data

    def close(self) -> None:
        self._finish(None)
        self._raw.close()

    def release_conn(self) -> None:
        self._finish(None)
        self._raw.release_conn()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def _finish(self, error: BaseException | None) -> None:
        """Record the call (`ClientCall.finish` records once: later calls change nothing)."""
        self._context.run(self._call.finish, self._status, self.received, error)


def _text(value: str | bytes | None) -> str | None:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _body_size(body: Any, length: str | None) -> int:
    declared = None if length is None else declared_length(length)
    if declared is not None:
        return declared
    if isinstance(body, bytes | bytearray | str):
        return len(body)
    return 0


def instrument_session(kit: Kit, session: requests.Session | None = None) -> requests.Session:
    """Mount the backend-layer adapter on `session` (a new Session when None) for http and https."""
    if session is None:
        session = requests.Session()
    adapter = TelemetryAdapter(kit)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
