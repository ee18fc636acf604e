"""Endpoint patterns and KrakenD's `path_aggregation`, resolved once so requests only look up."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from gatescope.config import EndpointTelemetry

PATTERN, LASTPARAM, OFF = "pattern", "lastparam", "off"
PATH_AGGREGATIONS = (PATTERN, LASTPARAM, OFF)
UNKNOWN_ROUTE = "unknown route"  # what unmatched requests are named; never their raw path

# Parameters as KrakenD (`:name`), lura backends (`{{.Name}}`), Starlette/FastAPI (`{name}`,
# `{name:int}`) and Flask/werkzeug (`<name>`, `<int:name>`) write them.
_PARAM = re.compile(
    r"\{\{\.([^}]*)\}\}"            # {{.Name}}
    r"|\{([^}:/]+)(?::[^}/]*)?\}"   # {name} {name:conv}
    r"|<(?:[^>:/]+:)?([^>/]+)>"     # <name> <conv:name>
    r"|(?<=/):([^/]+)"              # :name (a whole segment)
)
_CATCH_ALL = re.compile(r"\{[^}:/]+:path\}|<path:[^>/]+>")


def _param_name(match: re.Match[str]) -> str:
    return "{" + next(g for g in match.groups() if g is not None) + "}"


def canonical(template: str) -> str:
    """Any framework's route template with its parameters written `{name}` (the span name)."""
    return _PARAM.sub(_param_name, template)


def normalize(template: str) -> str:
    """Any framework's route template as KrakenD's metric pattern: params as `{name}`, lower-case."""
    return canonical(template).lower()


def is_param(segment: str) -> bool:
    """True when a whole path segment is a parameter in any of the supported syntaxes."""
    return _PARAM.fullmatch("/" + segment, 1) is not None


class Endpoint:
    """One resolved endpoint: the span name and how its `http.path` tag is computed."""

    __slots__ = ("fixed", "lastparam", "mode", "name", "pattern")

    def __init__(self, template: str, mode: str = PATTERN) -> None:
        self.name = canonical(template)
        self.pattern = self.name.lower()
        last = template[template.rfind("/") + 1:]
        if mode == LASTPARAM and not is_param(last):
            mode = PATTERN  # KrakenD: lastparam on a non-parameter last segment is pattern
        self.mode = mode
        self.lastparam = normalize("/" + last)[1:] if mode == LASTPARAM else ""
        # pattern mode: a constant; the per-request work is one attribute read.
        self.fixed: str | None = self.pattern if mode == PATTERN else None

    def path_tag(self, raw_path: str) -> str:
        """The `http.path` / `http_client_path` tag value for a request to this endpoint."""
        if self.fixed is not None:
            return self.fixed
        if self.mode == OFF:
            return raw_path
        return (raw_path[: raw_path.rfind("/") + 1] + self.lastparam).lower()

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r}, mode={self.mode!r})"


UNKNOWN = Endpoint(UNKNOWN_ROUTE)


def compile_template(template: str) -> re.Pattern[str]:
    """A regex matching the request paths a route template serves."""
    out, pos = ["^"], 0
    for match in _PARAM.finditer(template):
        out.append(re.escape(template[pos:match.start()]))
        out.append(".+" if _CATCH_ALL.fullmatch(match.group(0)) else "[^/]+")
        pos = match.end()
    out.append(re.escape(template[pos:]) + "/?$")
    return re.compile("".join(out))


EndpointsOption = Mapping[str, str] | Iterable[str] | Callable[[str], str | None] | None
_CACHE_LIMIT = 4096


class EndpointResolver:
    """Names a request's endpoint from a route template, an explicit mapping, or krakend.json."""

    def __init__(self, configured: Mapping[str, EndpointTelemetry], explicit: EndpointsOption = None,
                 unknown: str = UNKNOWN_ROUTE) -> None:
        self._modes = {normalize(e.endpoint): e.path_aggregation for e in configured.values()}
        self._by_template: dict[str, Endpoint] = {}
        self._by_path: dict[str, Endpoint] = {}
        self.unknown = UNKNOWN if unknown == UNKNOWN_ROUTE else Endpoint(unknown)
        self._callable: Callable[[str], str | None] | None = None
        templates: list[str] = []
        if callable(explicit):
            self._callable = explicit
        elif isinstance(explicit, Mapping):
            for template, mode in explicit.items():
                if mode not in PATH_AGGREGATIONS:
                    raise ValueError(f"endpoints[{template!r}]: path_aggregation must be one of "
                                     f"pattern, lastparam, off; got {mode!r}")
                self._modes[normalize(template)] = mode
                templates.append(template)
        elif explicit is not None:
            templates.extend(explicit)
        templates.extend(e.endpoint for e in configured.values())
        # Static routes win over parameterised ones, as in gin/httprouter.
        unique = list(dict.fromkeys(templates))
        unique.sort(key=lambda t: (len(_PARAM.findall(t)), -len(t)))
        self._matchers = [(compile_template(t), t) for t in unique]

    def for_template(self, template: str) -> Endpoint:
        """The endpoint for a framework route template (cached per template string)."""
        endpoint = self._by_template.get(template)
        if endpoint is None:
            endpoint = Endpoint(template, self._modes.get(normalize(template), PATTERN))
            if len(self._by_template) < _CACHE_LIMIT:
                self._by_template[template] = endpoint
        return endpoint

    def for_path(self, raw_path: str) -> Endpoint:
        """The endpoint serving a raw request path, or the fixed unknown-route placeholder."""
        endpoint = self._by_path.get(raw_path)
        if endpoint is not None:
            return endpoint
        endpoint = self._match(raw_path)
        if len(self._by_path) >= _CACHE_LIMIT:
            self._by_path.clear()
        self._by_path[raw_path] = endpoint
        return endpoint

    def _match(self, raw_path: str) -> Endpoint:
        if self._callable is not None:
            template = self._callable(raw_path)
            if template:
                return self.for_template(template)
        for regex, template in self._matchers:
            if regex.match(raw_path):
                return self.for_template(template)
        return self.unknown
