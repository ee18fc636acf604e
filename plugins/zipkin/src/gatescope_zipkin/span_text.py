"""Zipkin v2 JSON written as text from pieces that repeat: byte for byte what `encoding` makes
through dicts and `json`, at a fraction of the cost on the export thread.

A server span may still carry its router's raw HTTP facts (`settles_http_facts`): its whole
`tags` object is kept per distinct facts, so a route called again by the same client costs one
lookup. Other spans' tags are kept one (key, value) at a time. Anything unusual (an id that is
not plain hex, an attribute named like a status tag, facts that cannot be a key) takes the
dict path, so the output never depends on which path made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gatescope.spans import KIND_SERVER, OK, STATUS_NAMES, AttributeValue, SpanRecord
from gatescope.tracing import HttpFacts, SettledViews, Span

from gatescope_zipkin.encoding import (
    DESCRIPTION_TAG,
    ERROR_TAG,
    KINDS,
    dumps,
    duration_us,
    span_object,
    tag_text,
    trace_id_text,
)

CACHE_LIMIT = 1024  # tag objects kept per distinct facts; (key, value) tags; names
CACHEABLE_LENGTH = 128  # longer facts and tag values are written every time
_KIND_FIELDS = {kind: f',"kind":"{text}"' for kind, text in KINDS.items()}
_STATUS_KEYS = frozenset({ERROR_TAG, DESCRIPTION_TAG})


def _plain(text: str) -> bool:
    """Text JSON carries as it is (ASCII letters and digits: hex ids)."""
    return text.isascii() and text.isalnum()


class SpanTextEncoder:
    """`ListOfSpans` bodies as `encoding.list_of_spans` makes them, from cached pieces."""

    def __init__(self, local_endpoint: dict[str, Any]) -> None:
        self.local_endpoint = local_endpoint
        self._endpoint = ',"localEndpoint":' + dumps(local_endpoint)
        self._names: dict[str, str] = {}
        self._tags: dict[tuple[str, type, AttributeValue], str] = {}
        self._facts: dict[HttpFacts, str] = {}
        self._settled = SettledViews()  # server spans' facts that could not be read, counted
        self.take_problems = self._settled.take_problems

    def body(self, spans: Sequence[SpanRecord]) -> bytes:
        """The POST body: a JSON array of v2 spans."""
        return ("[" + ",".join(map(self.span, spans)) + "]").encode("ascii")

    def span(self, span: SpanRecord) -> str:
        """One v2 span as JSON text."""
        trace, span_id, parent = trace_id_text(span.trace_id), span.span_id, span.parent_span_id
        if not (_plain(trace) and _plain(span_id) and (not parent or _plain(parent))):
            return self._by_dict(span)
        facts = span.http_facts if type(span) is Span else None
        tags = self._fact_tags(span, facts) if facts is not None else self._attribute_tags(span)
        if tags is None:
            return self._by_dict(span)
        name = self._names.get(span.name) or self._name(span.name)
        start = span.start_ns // 1000
        took = duration_us(span)
        parent_field = ',"parentId":"' + parent + '"' if parent else ""
        return (f'{{"traceId":"{trace}","id":"{span_id}","name":{name},"timestamp":{start},'
                f'"duration":{took}{self._endpoint}{parent_field}'
                f'{_KIND_FIELDS.get(span.kind, "")}{tags}}}')

    def _by_dict(self, span: SpanRecord) -> str:
        return dumps(span_object(self._settled(span), self.local_endpoint))

    def _name(self, name: str) -> str:
        text = dumps(name)
        if len(self._names) >= CACHE_LIMIT:
            self._names.clear()
        self._names[name] = text
        return text

    def _fact_tags(self, span: SpanRecord, facts: HttpFacts) -> str | None:
        """`,"tags":{...}` of a server span from its facts; None: take the dict path."""
        if span.attributes or span.kind != KIND_SERVER:
            return None  # the app's own attributes mix in
        try:
            found = self._facts.get(facts)
            if found is not None:
                return found
            short = all(len(fact) <= CACHEABLE_LENGTH for fact in facts[:5])
        except TypeError:  # a fact that cannot be a key (an odd type from a server)
            return None
        view = self._settled(span)
        if view is span:  # the facts could not be read (counted): the span as it is
            return self._attribute_tags(span)
        made = span_object(view, self.local_endpoint).get("tags")
        text = ',"tags":' + dumps(made) if made else ""
        if short:
            if len(self._facts) >= CACHE_LIMIT:
                self._facts.clear()
            self._facts[facts] = text
        return text

    def _attribute_tags(self, span: SpanRecord) -> str | None:
        """`,"tags":{...}` from the attributes and the status, `span_object`'s order."""
        attributes = span.attributes
        parts = []
        if attributes:
            if span.status_code != OK and not _STATUS_KEYS.isdisjoint(attributes):
                return None  # a status tag would replace an attribute in place
            cached = self._tags.get
            try:
                for key, value in attributes.items():
                    parts.append(cached((key, type(value), value)) or self._tag(key, value))
            except TypeError:  # a value that cannot be a key (not an attribute type)
                return None
        if span.status_code != OK:
            code = span.status_code
            parts.append(self._tag(ERROR_TAG, STATUS_NAMES.get(code) or str(code)))
            if span.status_message:
                parts.append(self._tag(DESCRIPTION_TAG, span.status_message))
        return ',"tags":{' + ",".join(parts) + "}" if parts else ""

    def _tag(self, key: str, value: AttributeValue) -> str:
        """A `"key":"value"` member, kept unless the value is a float or long text."""
        found = self._tags.get((key, type(value), value))
        if found is not None:
            return found
        text = dumps(key) + ":" + dumps(tag_text(value))
        if not isinstance(value, float) and not (isinstance(value, str)
                                                 and len(value) > CACHEABLE_LENGTH):
            if len(self._tags) >= CACHE_LIMIT:
                self._tags.clear()
            self._tags[(key, type(value), value)] = text
        return text
