"""The `exporters.jaeger` section: every form KrakenD's schemas (v2.1..v2.13) accept."""

from __future__ import annotations

from typing import Any

import attrs
from gatescope.settings import Problems, describe, integer, port_number, setting, string, url

AGENT_PORT_DEFAULT = 6831


def optional_url(value: Any) -> str:
    """A collector URL, or "" meaning "not configured" (KrakenD treats an empty one as absent)."""
    if value == "":
        return ""
    converted: str = url()(value)
    return converted


def agent_address(value: Any) -> str:
    """`host:port` of a Jaeger agent (IPv6 in brackets, empty host = this machine), or ""."""
    if value == "":
        return ""
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        bare = host[1:-1] if bracketed else host
        if sep and port_number(port) is not None and (bracketed or ":" not in bare) \
                and "/" not in bare:
            return value
    raise ValueError(f'expected "host:port" of a Jaeger agent (e.g. "jaeger:6831"), '
                     f"got {describe(value)}")


def split_agent_address(address: str) -> tuple[str, int]:
    """("host", port) from a validated agent address; an empty host is the local machine."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "localhost", int(port)


@attrs.frozen
class JaegerConfig:
    service_name: str = setting(string(), required=True,
                                doc="the process service name every span is reported under")
    endpoint: str = setting(optional_url, default="",
                            doc="collector URL, e.g. http://jaeger:14268/api/traces "
                                "(Thrift binary Batch over HTTP POST)")
    agent_endpoint: str = setting(agent_address, default="",
                                  doc="agent host:port, e.g. jaeger:6831 (Thrift compact over UDP)")
    buffer_max_count: int = setting(integer(), default=0,
                                    doc="spans held for this exporter before new ones are "
                                        "dropped; <= 0 means the core queue_size")

    def validate(self, path: str, problems: Problems, present: frozenset[str]) -> None:
        if not self.endpoint and not self.agent_endpoint:
            problems.add(path, 'needs "endpoint" (collector URL) or "agent_endpoint" '
                               '(agent host:port)')

    @property
    def uses_collector(self) -> bool:
        """KrakenD: a collector endpoint wins over an agent endpoint."""
        return bool(self.endpoint)
