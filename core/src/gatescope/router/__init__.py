"""Router layer: server middleware for ASGI and WSGI apps (KrakenD's router metrics and span)."""

from __future__ import annotations

from gatescope.paths import UNKNOWN_ROUTE, Endpoint, EndpointResolver, EndpointsOption
from gatescope.spans import KIND_SERVER

# Status codes as tag values, built once: `str(int)` on every request is avoidable work.
STATUS_TEXT = {code: str(code) for code in range(100, 600)}
CLIENT_CLOSED = 499  # nginx's "client closed request"; OpenCensus maps it to CANCELLED
SERVER_ERROR = 500
ROUTE_ENVIRON_KEY = "gatescope.route"  # WSGI: a route template any framework may leave here


def status_text(code: int) -> str:
    return STATUS_TEXT.get(code) or str(code)


__all__ = [
    "CLIENT_CLOSED",
    "KIND_SERVER",
    "ROUTE_ENVIRON_KEY",
    "SERVER_ERROR",
    "STATUS_TEXT",
    "UNKNOWN_ROUTE",
    "Endpoint",
    "EndpointResolver",
    "EndpointsOption",
    "status_text",
]
