"""The `xray` exporter: spans -> segment documents -> PutTraceSegments, off the request path."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version
from typing import Any, ClassVar

from gatescope import TRACES, BaseExporter, ExporterContext, RateLimitedLog, SpanRecord
from gatescope.pipeline import ExportError

from gatescope_xray.client import Redactor, chunks, export_error, make_client
from gatescope_xray.config import XRayConfig
from gatescope_xray.segments import SDK_NAME, SegmentEncoder

#: Seconds: the OpenCensus Go exporter's default publishing interval. KrakenD passed its
#: `reporting_period` (seconds) as a Go Duration, i.e. nanoseconds; gatescope reads seconds.
DEFAULT_PERIOD = 1.0


def _own_version() -> str:
    try:
        return distribution_version("gatescope-xray")
    except PackageNotFoundError:  # pragma: no cover - only when run from a bare checkout
        return "0"


class XRayExporter(BaseExporter):
    """Sends each batch the core hands over as X-Ray segment documents, 50 per call."""

    name: ClassVar[str] = "xray"
    config_class: ClassVar[type] = XRayConfig
    signals: ClassVar[frozenset[str]] = frozenset({TRACES})
    default_period: ClassVar[float] = DEFAULT_PERIOD
    config: XRayConfig

    def __init__(self, config: XRayConfig, context: ExporterContext) -> None:
        super().__init__(config, context)
        self.sdk_version = _own_version()
        self.encoder = SegmentEncoder(config.version, sdk_version=self.sdk_version)
        self.redact = Redactor(config.secret_access_key, config.access_key_id)
        self.period = context.period(self.default_period)
        self._warn = RateLimitedLog(self.log, self.period)
        self._client: Any = None
        self._partial: tuple[Sequence[SpanRecord], int] | None = None  # batch, documents sent
        self._lock = threading.Lock()
        self.sent_documents = 0
        self.unprocessed_documents = 0
        self.calls = 0

    def start(self) -> None:
        self._client = self._new_client()

    def _new_client(self) -> Any:
        return make_client(self.config, self.context.export_timeout,
                           f"{SDK_NAME}/{self.sdk_version}")

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        if not spans:
            return
        client = self._client
        if client is None:
            raise ExportError("xray exporter is not started", retryable=False)
        documents = self.encoder.encode_batch(spans)
        # The core retries a failed batch with the same object: skip the calls that succeeded.
        done = self._partial[1] if self._partial is not None and self._partial[0] is spans else 0
        self._partial = None
        accepted = 0
        rejected: list[dict[str, Any]] = []
        for chunk in chunks(documents[done:]):
            try:
                response = client.put_trace_segments(TraceSegmentDocuments=list(chunk))
            except Exception as exc:
                if done:
                    self._partial = (spans, done)
                raise export_error(exc, self.redact) from None
            done += len(chunk)
            unprocessed = response.get("UnprocessedTraceSegments") or []
            rejected.extend(unprocessed)
            accepted += len(chunk) - len(unprocessed)
            with self._lock:
                self.calls += 1
                self.sent_documents += len(chunk) - len(unprocessed)
                self.unprocessed_documents += len(unprocessed)
        if rejected:
            self._report(rejected, len(documents))
            if accepted == 0:
                raise ExportError(f"X-Ray rejected all {len(documents)} segment documents",
                                  retryable=False)

    def _report(self, rejected: list[dict[str, Any]], total: int) -> None:
        first = rejected[0]
        self._warn.warning(
            "unprocessed", "xray: X-Ray did not process %d of %d segment documents "
            "(%d so far; first: %s %s)", len(rejected), total, self.unprocessed_documents,
            self.redact(str(first.get("ErrorCode", ""))),
            self.redact(str(first.get("Message", ""))),
        )

    def shutdown(self, timeout: float) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def after_fork_in_child(self) -> None:
        """A forked child must not share the parent's connection pool."""
        if self._client is not None:
            self._client = self._new_client()
