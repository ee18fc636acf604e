"""Backend layer for requests: an `HTTPAdapter` mounted on a `Session`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from gatescope.backend import ClientLayer

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
            # The body is read later, by the caller; the size announced is what is known now.
            announced = response.headers.get("Content-Length", "")
            call.finish(response.status_code, int(announced) if announced.isdigit() else 0)
            return response
        try:
            received = len(response.content)  # what Session.send would read next anyway
        except BaseException as exc:
            call.finish(response.status_code, 0, exc)
            raise
        call.finish(response.status_code, received)
        return response


def _text(value: str | bytes | None) -> str | None:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _body_size(body: Any, length: str | None) -> int:
    if length is not None and length.isdigit():
        return int(length)
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
