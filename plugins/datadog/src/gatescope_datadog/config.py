"""The `exporters.datadog` section: every key optional (KrakenD's schema marks them all required)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
from gatescope.settings import boolean, describe, port_number, setting, string, string_list

DEFAULT_TRACE_PORT = 8126
DEFAULT_STATS_PORT = 8125
DEFAULT_SERVICE = "opencensus-app"  # the Go exporter's name for an empty `service`
UNIX_PREFIXES = ("unix://", "unixgram://")

TagValue = str | int | float | bool | None | list[Any] | dict[str, Any]


def _host_port(value: str, default_port: int) -> tuple[str, int] | None:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, str(default_port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None  # an IPv6 address needs brackets before its port
    number = port_number(port)
    if host and number is not None and "/" not in host:
        return host, number
    return None


def trace_address(value: Any) -> tuple[str, int] | None:
    """`host[:port]` of the trace agent; empty means the default (as the Go exporter)."""
    if isinstance(value, str):
        if not value:
            return None
        parsed = _host_port(value, DEFAULT_TRACE_PORT)
        if parsed:
            return parsed
    raise ValueError(f'expected "host[:port]" of the trace agent, got {describe(value)}')


def stats_address(value: Any) -> tuple[str, int] | str | None:
    """`host[:port]` (UDP) or `unix:///path` (unix datagram socket); empty means the default."""
    if isinstance(value, str):
        if not value:
            return None
        for prefix in UNIX_PREFIXES:
            if value.startswith(prefix) and len(value) > len(prefix):
                return value[len(prefix):]
        if "://" not in value:
            parsed = _host_port(value, DEFAULT_STATS_PORT)
            if parsed:
                return parsed
    raise ValueError(f'expected "host[:port]" or "unix:///path/to/dsd.socket", got {describe(value)}')


def any_map(value: Any) -> dict[str, TagValue]:
    """An object with any JSON values (KrakenD keeps them as interface{})."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object, got {describe(value)}")
    return dict(value)


@attrs.frozen
class DatadogConfig:
    namespace: str = setting(string(), default="", doc="prefix of every metric name")
    service: str = setting(string(), default="", doc=f"span service (empty: {DEFAULT_SERVICE!r})")
    trace_address: tuple[str, int] | None = setting(
        trace_address, default=None, doc=f"trace agent host[:port] (default localhost:{DEFAULT_TRACE_PORT})")
    stats_address: tuple[str, int] | str | None = setting(
        stats_address, default=None,
        doc=f"DogStatsD host[:port] or unix:///path (default localhost:{DEFAULT_STATS_PORT})")
    tags: tuple[str, ...] = setting(string_list, default=(), doc="tags added to every metric")
    global_tags: Mapping[str, TagValue] = setting(any_map, factory=dict, doc="tags added to every span")
    disable_count_per_buckets: bool = setting(boolean, default=False,
                                              doc="do not send `.count_per_bucket` metrics")

    @property
    def service_name(self) -> str:
        return self.service or DEFAULT_SERVICE

    @property
    def agent(self) -> tuple[str, int]:
        return self.trace_address or ("localhost", DEFAULT_TRACE_PORT)

    @property
    def dogstatsd(self) -> tuple[str, int] | str:
        return self.stats_address or ("localhost", DEFAULT_STATS_PORT)


def render_tag_value(value: TagValue) -> str:
    """A non-string, non-number tag value as text (Go's `%v` equivalent for JSON values)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
