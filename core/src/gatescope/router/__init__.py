"""Router layer: server middleware for ASGI and WSGI apps (KrakenD's router metrics and span)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gatescope import sampling
from gatescope.filters import allow_all
from gatescope.paths import UNKNOWN_ROUTE, Endpoint, EndpointResolver, EndpointsOption
from gatescope.spans import KIND_SERVER

if TYPE_CHECKING:
    from gatescope.runtime import Kit

# Status codes as tag values, built once: `str(int)` on every request is avoidable work.
STATUS_TEXT = {code: str(code) for code in range(100, 600)}
CLIENT_CLOSED = 499  # nginx's "client closed request"; OpenCensus maps it to CANCELLED
SERVER_ERROR = 500
ROUTE_ENVIRON_KEY = "gatescope.route"  # WSGI: a route template any framework may leave here


class RouterLayer:
    """What the ASGI and the WSGI middleware resolve from the kit once, at construction."""

    def __init__(self, app: Any, kit: Kit, endpoints: EndpointsOption = None,
                 unknown_route: str = UNKNOWN_ROUTE) -> None:
        self.app = app
        self.kit = kit
        self._off = kit.router is None
        self._check = None if kit.router is allow_all else kit.router  # None: every path
        self._record = kit.server.record
        self._tracer = kit.tracer
        self._resolver = EndpointResolver(kit.endpoints, endpoints, unknown_route)
        self._tag_host = kit.tags.host
        self._tag_path = kit.tags.path
        # With the never-sampler and no incoming context there is nothing to trace or propagate.
        self._never = kit.tracer.sampler is sampling.never


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
    "RouterLayer",
]
