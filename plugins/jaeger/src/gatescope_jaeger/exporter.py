"""The `jaeger` exporter: the collector over HTTP when configured, else the agent over UDP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from gatescope import (
    TRACES,
    BaseExporter,
    ExporterContext,
    ExportError,
    ExporterStartError,
    RateLimitedLog,
    SpanRecord,
)
from gatescope.http import Poster

from gatescope_jaeger.agent import AgentSender, trim_span
from gatescope_jaeger.config import JaegerConfig, split_agent_address
from gatescope_jaeger.thrift import BinaryEncoder, CompactEncoder

CONTENT_TYPE = "application/x-thrift"  # what the collector's /api/traces accepts
LOG_INTERVAL = 10.0  # seconds between two warnings about the same recurring failure


class JaegerExporter(BaseExporter):
    """Encodes spans on the export worker: a bare binary `Batch` per POST, or compact UDP packets."""

    name: ClassVar[str] = "jaeger"
    config_class: ClassVar[type] = JaegerConfig
    signals: ClassVar[frozenset[str]] = frozenset({TRACES})
    config: JaegerConfig

    def __init__(self, config: JaegerConfig, context: ExporterContext) -> None:
        super().__init__(config, context)
        #: KrakenD's buffer_max_count: spans this exporter may have waiting (the core enforces it)
        self.max_pending_spans: int | None = (
            config.buffer_max_count if config.buffer_max_count > 0 else None
        )
        self._warn = RateLimitedLog(self.log, LOG_INTERVAL)
        # UDP spans take a server span's raw HTTP facts and encode their tags straight from them
        self.settles_http_facts = not config.uses_collector
        self._poster: Poster | None = None
        self._agent: AgentSender | None = None
        self._binary = BinaryEncoder()
        self._compact = CompactEncoder()
        self._seq_no = 0
        self.spans_sent = 0  # spans handed to the collector (2xx) or written to the agent socket
        self.requests_sent = 0  # successful collector POSTs
        self.packets_sent = 0  # UDP packets written
        self.spans_trimmed = 0  # spans sent without some attribute tags to fit one UDP packet
        self.spans_too_large = 0  # spans dropped: too large for a UDP packet even without tags

    @property
    def transport(self) -> str:
        return "collector" if self.config.uses_collector else "agent"

    def start(self) -> None:
        if self.config.uses_collector:
            if self.config.agent_endpoint:
                self.log.info("gatescope: jaeger has both endpoint and agent_endpoint; "
                              "spans go to the collector only (as in KrakenD)")
            self._poster = Poster(self.config.endpoint, CONTENT_TYPE, self.context.export_timeout,
                                  self._warn)
            return
        host, port = split_agent_address(self.config.agent_endpoint)
        agent = AgentSender(host, port, self.config.service_name)
        try:
            agent.open()
        except OSError as exc:
            raise ExporterStartError(
                f"jaeger: cannot use agent_endpoint {self.config.agent_endpoint!r}: {exc}"
            ) from exc
        self._agent = agent

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        if self._poster is not None:
            self._post(spans, self._poster)
        elif self._agent is not None:
            self._emit(spans, self._agent)
        else:
            raise ExportError("jaeger exporter is not started", retryable=False)

    def _post(self, spans: Sequence[SpanRecord], poster: Poster) -> None:
        encode = self._binary.span
        self._seq_no += 1
        body = BinaryEncoder.batch(self.config.service_name, [encode(s) for s in spans],
                                   self._seq_no)
        poster.post(body)
        self.requests_sent += 1
        self.spans_sent += len(spans)

    def _emit(self, spans: Sequence[SpanRecord], agent: AgentSender) -> None:
        encoded = self._compact.spans(spans)
        if encoded and max(map(len, encoded)) > agent.max_span_bytes:  # rare: a span per packet
            encoded = self._fit(spans, encoded, agent.max_span_bytes)
        problems, last = self._compact.take_fact_problems()
        if problems:
            self._warn.warning("facts", "gatescope: jaeger could not make the HTTP tags of %d "
                               "server spans (last: %r); they are sent without them",
                               problems, last)
        for packet_number, packet in enumerate(agent.packets(encoded)):
            try:
                agent.send(packet)
            except OSError as exc:
                self._warn.warning("udp", "gatescope: jaeger cannot send to agent %s:%d: %s",
                                   agent.host, agent.port, exc)
                # resending a partly delivered batch would duplicate spans at the agent
                raise ExportError(f"UDP send to the jaeger agent failed: {exc}",
                                  retryable=packet_number == 0) from None
            self.packets_sent += 1
        self.spans_sent += len(encoded)

    def _fit(self, spans: Sequence[SpanRecord], encoded: list[bytes], limit: int) -> list[bytes]:
        """The spans with each one larger than `limit` trimmed of tags, or left out."""
        fitting: list[bytes] = []
        for span, data in zip(spans, encoded, strict=True):
            if len(data) > limit:
                trimmed = trim_span(self._compact, self._compact.view(span), limit)
                if trimmed is None:
                    self.spans_too_large += 1
                    self._warn.warning("too-large", "gatescope: jaeger dropped span %r: larger "
                                       "than a UDP packet even without its tags", span.name)
                    continue
                data, cut = trimmed
                self.spans_trimmed += 1
                self._warn.warning("trimmed", "gatescope: jaeger cut %d tags from span %r to fit "
                                   "a UDP packet", cut, span.name)
            fitting.append(data)
        return fitting

    def after_fork_in_child(self) -> None:
        if self._poster is not None:
            self._poster.reset()
        if self._agent is not None:
            self._agent.reopen()

    def shutdown(self, timeout: float) -> None:
        if self._poster is not None:
            self._poster.close()
        if self._agent is not None:
            self._agent.close()
