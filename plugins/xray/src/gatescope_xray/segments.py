"""Finished spans -> X-Ray segment documents (JSON text), within X-Ray's documented rules."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from gatescope.spans import KIND_CLIENT, KIND_SERVER, STATUS_NAMES, SpanRecord

from gatescope_xray.ids import TraceIdMapper

MAX_NAME_LENGTH = 200
DEFAULT_NAME = "span"
MAX_DOCUMENT_BYTES = 64_000  # X-Ray: "a segment document can be up to 64 kB"
MAX_ANNOTATIONS = 50  # X-Ray: up to 50 annotations per trace; never more per document
MAX_ANNOTATION_KEY = 500
MAX_ANNOTATION_VALUE = 1000
MAX_TEXT = 250  # X-Ray: "values must be strings (up to 250 characters) unless noted otherwise"
NAME_SYMBOLS = frozenset("_.:/%&#=+\\-@")
INVALID_ANNOTATION_KEY = re.compile(r"[^A-Za-z0-9_]")
SDK_NAME = "gatescope-xray"

# OpenCensus attributes that become X-Ray's `http` block (or the segment name).
HOST = "http.host"
METHOD = "http.method"
URL = "http.url"
PATH = "http.path"
USER_AGENT = "http.user_agent"
STATUS = "http.status_code"
CLIENT_IP = "http.client_ip"
RESPONSE_SIZE_KEYS = ("http.response_content_length", "http.response_size")
HTTP_KEYS = frozenset({HOST, METHOD, URL, USER_AGENT, STATUS, CLIENT_IP, *RESPONSE_SIZE_KEYS})

# Canonical codes that mean "the caller's fault" (X-Ray `error`); 8 is throttling.
CLIENT_STATUS_CODES = frozenset({1, 3, 5, 6, 7, 9, 10, 11, 16})
RESOURCE_EXHAUSTED = 8


def sanitize_name(name: str) -> str:
    """Keep Unicode letters, numbers, whitespace and `_ . : / % & # = + \\ - @`; 200 chars."""
    kept = "".join(c for c in name if c.isalnum() or c.isspace() or c in NAME_SYMBOLS)
    kept = kept.strip()[:MAX_NAME_LENGTH]
    return kept or DEFAULT_NAME


def annotation_key(key: str) -> str:
    """Annotation keys: ASCII letters, digits and underscores only, up to 500 characters."""
    return INVALID_ANNOTATION_KEY.sub("_", key)[:MAX_ANNOTATION_KEY] or "_"


def annotation_value(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)[:MAX_ANNOTATION_VALUE]


def seconds(ns: int) -> float:
    """Epoch seconds with microsecond resolution, as the Go exporter writes them."""
    return (ns // 1000) / 1e6


def outcome(span: SpanRecord) -> dict[str, Any]:
    """`error`/`throttle`/`fault` from the HTTP status, else from the OpenCensus status."""
    status = span.attributes.get(STATUS)
    flags: dict[str, Any] = {}
    if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
        if status == 429:
            flags.update(error=True, throttle=True)
        elif status < 500:
            flags["error"] = True
        else:
            flags["fault"] = True
    elif span.status_code == RESOURCE_EXHAUSTED:
        flags.update(error=True, throttle=True)
    elif span.status_code in CLIENT_STATUS_CODES:
        flags["error"] = True
    elif span.status_code != 0:
        flags["fault"] = True
    if span.status_code != 0 and span.status_message:
        flags["cause"] = {"exceptions": [{
            "id": exception_id(span.span_id),
            "message": span.status_message[:MAX_TEXT],
            "type": STATUS_NAMES.get(span.status_code, str(span.status_code))[:MAX_TEXT],
        }]}
    return flags


def exception_id(span_id: str) -> str:
    """A 16-hex exception id derived from the span id (distinct from the segment's own id)."""
    return hashlib.blake2b(span_id.encode(), digest_size=8).hexdigest()


def http_block(attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    request: dict[str, Any] = {}
    response: dict[str, Any] = {}
    method = attributes.get(METHOD)
    if isinstance(method, str) and method:
        request["method"] = method[:MAX_TEXT]
    target = attributes.get(URL) or attributes.get(PATH)
    if isinstance(target, str) and target:
        request["url"] = target[:MAX_TEXT]
    agent = attributes.get(USER_AGENT)
    if isinstance(agent, str) and agent:
        request["user_agent"] = agent[:MAX_TEXT]
    client_ip = attributes.get(CLIENT_IP)
    if isinstance(client_ip, str) and client_ip:
        request["client_ip"] = client_ip[:MAX_TEXT]
    status = attributes.get(STATUS)
    if isinstance(status, int) and not isinstance(status, bool):
        response["status"] = status
    for key in RESPONSE_SIZE_KEYS:
        size = attributes.get(key)
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            response["content_length"] = size
            break
    block = {k: v for k, v in (("request", request), ("response", response)) if v}
    return block or None


def annotations_and_metadata(attributes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Indexed annotations for the first 50 attributes; the rest, and collisions, as metadata."""
    annotations: dict[str, Any] = {}
    overflow: dict[str, Any] = {}
    for key, value in attributes.items():
        if key in HTTP_KEYS:
            continue
        fixed = annotation_key(key)
        if len(annotations) < MAX_ANNOTATIONS and fixed not in annotations:
            annotations[fixed] = annotation_value(value)
        else:
            overflow[key] = annotation_value(value)
    return annotations, overflow


class SegmentEncoder:
    """Root and server spans become segments; the others become subsegments sent on their own.

    As the OpenCensus Go exporter does, every span is its own document: a subsegment carries
    `type: "subsegment"`, its trace id and its parent's id, so X-Ray nests it under the
    segment (or subsegment) it belongs to wherever that was sent.
    """

    def __init__(self, version: str, mapper: TraceIdMapper | None = None,
                 sdk_version: str = "") -> None:
        self.version = version
        self.mapper = mapper or TraceIdMapper()
        self.sdk_version = sdk_version

    def encode_batch(self, spans: Sequence[SpanRecord]) -> list[str]:
        """JSON documents for a batch; a trace's X-Ray id uses its earliest start in the batch."""
        earliest: dict[str, int] = {}
        for span in spans:
            start = span.start_ns // 1_000_000_000
            if start < earliest.get(span.trace_id, start + 1):
                earliest[span.trace_id] = start
        return [self.encode(span, earliest[span.trace_id]) for span in spans]

    def encode(self, span: SpanRecord, trace_start_seconds: int | None = None) -> str:
        document = self.document(span, trace_start_seconds)
        return fit(document)

    def document(self, span: SpanRecord, trace_start_seconds: int | None = None) -> dict[str, Any]:
        start_second = span.start_ns // 1_000_000_000
        trace_id = self.mapper.convert(
            span.trace_id, start_second if trace_start_seconds is None else trace_start_seconds
        )
        attributes = span.attributes
        host = attributes.get(HOST)
        name = sanitize_name(host if isinstance(host, str) and host else span.name)
        document: dict[str, Any] = {
            "name": name,
            "id": span.span_id,
            "trace_id": trace_id,
            "start_time": seconds(span.start_ns),
            "end_time": seconds(max(span.end_ns, span.start_ns)),
        }
        is_segment = span.parent_span_id is None or span.kind == KIND_SERVER
        if span.parent_span_id is not None:
            document["parent_id"] = span.parent_span_id
        if is_segment:
            if self.version:
                document["service"] = {"version": self.version[:MAX_TEXT]}
            document["aws"] = {"xray": {"sdk": SDK_NAME, "sdk_version": self.sdk_version[:MAX_TEXT]}}
        else:
            document["type"] = "subsegment"
            if span.kind == KIND_CLIENT:
                document["namespace"] = "remote"
        http = http_block(attributes)
        if http:
            document["http"] = http
        document.update(outcome(span))
        annotations, overflow = annotations_and_metadata(attributes)
        if annotations:
            document["annotations"] = annotations
        opencensus: dict[str, Any] = {}
        if name != span.name:
            opencensus["span_name"] = span.name
        if overflow:
            opencensus["attributes"] = overflow
        if opencensus:
            document["metadata"] = {"opencensus": opencensus}
        return document


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fit(document: dict[str, Any]) -> str:
    """The document as JSON within 64 kB: drop metadata, then annotations, then trim text."""
    text = dumps(document)
    for drop in ("metadata", "annotations", "cause"):
        if len(text.encode()) <= MAX_DOCUMENT_BYTES:
            return text
        document.pop(drop, None)
        text = dumps(document)
    return text  # what is left is bounded: a 200-char name, ids, times, 250-char texts
