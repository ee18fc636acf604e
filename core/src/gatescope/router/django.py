"""Django: a middleware that leaves the matched URL pattern where the router layer reads it.

Django resolves URLs inside the app, out of sight of a WSGI or ASGI middleware. Add
`"gatescope.router.django.route_middleware"` to `MIDDLEWARE` (any position) and wrap the
application as usual (`telemetry.wsgi(get_wsgi_application())` or
`telemetry.asgi(get_asgi_application())`): each request is then named by its pattern,
`path("users/<int:user_id>", ...)` as `/users/{user_id}`, never by its raw path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gatescope.router import ROUTE_ENVIRON_KEY


def route_template(request: Any) -> str | None:
    """The matched pattern with its leading slash (Django's `route` has none), or None."""
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None) if match is not None else None
    if not isinstance(route, str):
        return None
    if route.startswith("^") or "(" in route:  # re_path(): groups become {name} parameters
        route = _UNESCAPE.sub(r"\1", _GROUP.sub(_param, route.lstrip("^").removesuffix("$")))
    return "/" + route.lstrip("/")


_GROUP = re.compile(r"\((?:\?P<(\w+)>)?(?:[^()]|\([^()]*\))*\)")  # one level of nesting
_UNESCAPE = re.compile(r"\\(.)")


def _param(match: re.Match[str]) -> str:
    return "{" + (match.group(1) or "param") + "}"


def route_middleware(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Django middleware (sync): after the view, record the pattern for the router layer."""

    def middleware(request: Any) -> Any:
        response = get_response(request)
        template = route_template(request)
        if template is not None:
            scope = getattr(request, "scope", None)  # ASGI: the very scope the layer holds
            if isinstance(scope, dict):
                scope[ROUTE_ENVIRON_KEY] = template
            else:  # WSGI: META is the environ itself
                request.META[ROUTE_ENVIRON_KEY] = template
        return response

    return middleware


__all__ = ["route_middleware", "route_template"]
