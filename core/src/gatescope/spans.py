"""What trace exporters receive: finished spans with integer-nanosecond times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# OpenCensus canonical status codes (google.rpc.Code).
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

STATUS_NAMES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
    13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}

KIND_UNSPECIFIED = 0
KIND_SERVER = 1
KIND_CLIENT = 2

AttributeValue = str | int | float | bool


def status_from_http(code: int) -> int:
    """OpenCensus' HTTP-to-canonical mapping (ochttp.TraceStatus)."""
    if code < 200 or code >= 400:
        return {
            499: CANCELLED, 400: INVALID_ARGUMENT, 422: INVALID_ARGUMENT, 504: DEADLINE_EXCEEDED,
            404: NOT_FOUND,
            403: PERMISSION_DENIED, 401: UNAUTHENTICATED, 429: RESOURCE_EXHAUSTED,
            501: UNIMPLEMENTED, 503: UNAVAILABLE,
        }.get(code, UNKNOWN)
    return OK


class SpanRecord:
    """One finished span; ids are lower-case hex (32 and 16 chars) as OpenCensus writes them."""

    __slots__ = (
        "attributes", "end_ns", "kind", "name", "parent_span_id", "span_id", "start_ns",
        "status_code", "status_message", "trace_id",
    )

    def __init__(
        self,
        name: str,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        kind: int,
        start_ns: int,
        end_ns: int,
        attributes: dict[str, AttributeValue],
        status_code: int = OK,
        status_message: str = "",
    ) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.kind = kind
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.attributes = attributes
        self.status_code = status_code
        self.status_message = status_message

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def is_error(self) -> bool:
        return self.status_code != OK

    def __repr__(self) -> str:
        return (
            f"SpanRecord(name={self.name!r}, trace_id={self.trace_id}, span_id={self.span_id}, "
            f"parent={self.parent_span_id}, kind={self.kind}, status={self.status_code})"
        )

    def to_span_data(self, same_process_as_parent: bool = True) -> Any:
        """The same span as an opencensus `SpanData`, for wrapping upstream encoders."""
        from opencensus.trace.span_context import SpanContext
        from opencensus.trace.span_data import SpanData
        from opencensus.trace.status import Status
        from opencensus.trace.trace_options import TraceOptions

        context = SpanContext(
            trace_id=self.trace_id, span_id=self.span_id, trace_options=TraceOptions("1"),
            from_header=False,
        )
        return SpanData(
            name=self.name,
            context=context,
            span_id=self.span_id,
            parent_span_id=self.parent_span_id,
            attributes=dict(self.attributes),
            start_time=iso_timestamp(self.start_ns),
            end_time=iso_timestamp(self.end_ns),
            child_span_count=0,
            stack_trace=None,
            annotations=[],
            message_events=[],
            links=[],
            status=Status(self.status_code, self.status_message or None),
            same_process_as_parent_span=same_process_as_parent,
            span_kind=self.kind,
        )


def iso_timestamp(ns: int) -> str:
    """RFC 3339 with microseconds, as opencensus-python's SpanData carries times."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
