"""The `exporters.zipkin` section: KrakenD's schema keys plus the `ip`/`port` its code reads."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import attrs
from gatescope.settings import Problems, describe, integer, setting, string, url

HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def address(value: Any) -> str:
    """An IPv4/IPv6 literal or a host name resolved at start, as KrakenD's NewEndpoint does."""
    if isinstance(value, str):
        if value == "" or HOSTNAME.match(value):
            return value
        try:
            ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            pass
        else:
            return value.strip("[]")
    raise ValueError(f"expected an IP address or host name, got {describe(value)}")


@attrs.frozen
class ZipkinConfig:
    collector_url: str = setting(url(), required=True,
                                 doc="where Zipkin accepts JSON v2 spans, e.g. "
                                     "http://zipkin:9411/api/v2/spans")
    service_name: str = setting(string(), required=True,
                                doc="localEndpoint.serviceName of every span")
    ip: str = setting(address, default="",
                      doc="localEndpoint ipv4/ipv6 (a host name is resolved at start); "
                          "omitted when empty")
    port: int = setting(integer(0, 65535), default=0,
                        doc="localEndpoint.port (this service's listen port); omitted when 0")

    def validate(self, path: str, problems: Problems, present: frozenset[str]) -> None:
        return None
