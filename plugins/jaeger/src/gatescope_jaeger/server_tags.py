"""A server span's Jaeger tags made straight from the HTTP facts the router left on it.

The core hands an exporter that settles its own spans (`settles_http_facts`) the raw facts of
each server span (path, query, host, method, user agent, status) instead of an attributes dict
made for it. The whole encoded tag list is kept per distinct facts (one lookup for a route
polled again by the same client), and each fact's encoded tag is kept, keyed by the fact itself,
so new combinations of known values cost a few lookups: no attributes dict, no tag tuples.
"""

from __future__ import annotations

from collections.abc import Callable

from gatescope.spans import KIND_SERVER, AttributeValue, SpanRecord
from gatescope.tracing import HttpFacts, SettledViews, Span

FACT_CACHE_LIMIT = 1024  # values remembered per fact (paths, urls, hosts, agents, ...)
# Longer values (a browser's user agent, a long query) are encoded every time: clients choose
# them, and the caches must stay small whatever they send (~4 MB at most here, tag lists
# included).
CACHEABLE_FACT_LENGTH = 128
# the attributes `settled` makes of the facts, in its order: one tag per fact (two for the path)
HTTP_KEYS = ["http.path", "http.url", "http.host", "http.method", "http.user_agent",
             "http.status_code"]


def _url_key(path: str, query: bytes | str) -> str | tuple[str, bytes | str]:
    """What `http.url` is kept under: the path alone when there is no query."""
    return (path, query) if query else path


class ServerSpanTags:
    """Encoded tags of server spans from their facts, in the order `settle` makes attributes."""

    def __init__(self, tag: Callable[[str, AttributeValue], bytes],
                 span_tags: Callable[[SpanRecord], list[tuple[str, AttributeValue]]],
                 list_header: Callable[[int], bytes]) -> None:
        self._tag = tag
        self._span_tags = span_tags
        self._list_header = list_header
        self._paths: dict[str, bytes] = {}
        self._urls: dict[str | tuple[str, bytes | str], bytes] = {}  # path, or (path, query)
        self._hosts: dict[bytes | str, bytes] = {}
        self._methods: dict[str, bytes] = {}
        self._agents: dict[bytes | str, bytes] = {}
        self._statuses: dict[int, tuple[bytes, ...]] = {}  # http.status_code, span.kind, status
        self._blocks: dict[HttpFacts, bytes] = {}  # every fact at once -> the whole tag list
        self.view = SettledViews()  # the span as settled; its problems, counted

    def block(self, span: Span, facts: HttpFacts) -> bytes:
        """A server span's whole tag list (list header, then the tags) from its facts: kept per
        distinct facts (a route polled by the same client repeats all six), else made from
        each fact's kept tag."""
        if span.attributes or span.kind != KIND_SERVER:
            return self._listed(self._encode(self.view(span)))  # the app's own attributes mix in
        try:
            found = self._blocks.get(facts)
            if found is not None:
                return found
            block = self._listed(self._tags(span, facts))
            if self._each_fact_kept(facts):
                if len(self._blocks) >= FACT_CACHE_LIMIT:
                    self._blocks.clear()
                self._blocks[facts] = block
            return block
        except TypeError:  # a fact that cannot be a key (an odd type from a server): not kept
            return self._listed(self._encode(self.view(span)))

    def _listed(self, tags: list[bytes]) -> bytes:
        return b"".join((self._list_header(len(tags)), *tags))

    def _tags(self, span: Span, facts: HttpFacts) -> list[bytes]:
        path, query, host, method, agent, status = facts
        path_tag = self._paths.get(path)
        url_tag = self._urls.get(_url_key(path, query))
        host_tag = self._hosts.get(host)
        method_tag = self._methods.get(method)
        agent_tag = self._agents.get(agent)
        trailer = self._statuses.get(status)
        if path_tag is None or url_tag is None or host_tag is None or method_tag is None \
                or agent_tag is None or trailer is None:
            return self._learn(span, facts)
        return [path_tag, url_tag, host_tag, method_tag, agent_tag, *trailer]

    def _each_fact_kept(self, facts: HttpFacts) -> bool:
        """Whether every fact's tag is kept (so the facts name the tags, and are short)."""
        path, query, host, method, agent, status = facts
        return path in self._paths and _url_key(path, query) in self._urls \
            and host in self._hosts and method in self._methods and agent in self._agents \
            and status in self._statuses

    def _encode(self, view: SpanRecord) -> list[bytes]:
        tag = self._tag
        return [tag(key, value) for key, value in self._span_tags(view)]

    def _learn(self, span: Span, facts: HttpFacts) -> list[bytes]:
        """The tags of a span with no attributes of its own, each fact's tag kept."""
        view = self.view(span)
        encoded = self._encode(view)
        if view is span or list(view.attributes) != HTTP_KEYS:
            return encoded  # the facts could not be read, or settle made other attributes
        path, query, host, method, agent, status = facts
        caches = (self._paths, self._urls, self._hosts, self._methods, self._agents,
                  self._statuses)
        if any(len(cache) >= FACT_CACHE_LIMIT for cache in caches):
            for cache in caches:
                cache.clear()
        short = CACHEABLE_FACT_LENGTH
        if len(path) <= short:
            self._paths[path] = encoded[0]
            if len(path) + len(query) <= short:
                self._urls[_url_key(path, query)] = encoded[1]
        if len(host) <= short:
            self._hosts[host] = encoded[2]
        if len(method) <= short:
            self._methods[method] = encoded[3]
        if len(agent) <= short:
            self._agents[agent] = encoded[4]
        self._statuses[status] = tuple(encoded[5:])  # http.status_code, then span.kind, status
        return encoded
