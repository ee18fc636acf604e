"""The `exporters.prometheus` section: KrakenD's keys plus gatescope-only serving options."""

from __future__ import annotations

import ipaddress

import attrs
from gatescope.settings import Problems, boolean, describe, duration, integer, setting, string
from gatescope.stats import TagOptions


def ip_address(value: object) -> str:
    """An IPv4 or IPv6 literal to bind to (no host names: binding must not depend on DNS)."""
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
    raise ValueError(f'expected an IP address such as "127.0.0.1" or "::1", got {describe(value)}')


@attrs.frozen
class PrometheusConfig:
    port: int = setting(integer(0, 65535), required=True,
                        doc="port serving /metrics; 0 picks a free port (logged)")
    namespace: str = setting(string(), default="",
                             doc="metric name prefix: <namespace>_<view name>")
    tag_host: bool = setting(boolean, default=False, doc="add the http_host label")
    tag_path: bool = setting(boolean, default=False, doc="add the http_path label")
    # The schema annotates `default: true`; KrakenD's Go code and docs use the zero value false.
    tag_method: bool = setting(boolean, default=False, doc="add the http_method label")
    tag_statuscode: bool = setting(boolean, default=False, doc="add the http_status label")
    listen_ip: str = setting(ip_address, default="0.0.0.0", extension=True,
                             doc="address to bind (KrakenD binds every interface)")
    read_timeout: float = setting(duration, default=5.0, extension=True,
                                  doc="deadline for a client to send its request headers")
    max_connections: int = setting(integer(1, 1024), default=16, extension=True,
                                   doc="concurrent scrape connections; more are closed at once")

    def validate(self, path: str, problems: Problems, present: frozenset[str]) -> None:
        if self.read_timeout <= 0:
            problems.add(f"{path}.read_timeout", "expected a duration greater than 0")

    def stats_tag_options(self) -> TagOptions:
        """KrakenD applies the prometheus `tag_*` switches to the views of every stats exporter."""
        return TagOptions(host=self.tag_host, path=self.tag_path, method=self.tag_method,
                          status=self.tag_statuscode)
