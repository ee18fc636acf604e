"""The `exporters.influxdb` section: KrakenD's schema keys plus the keys its Go code reads."""

from __future__ import annotations

import attrs
from gatescope.settings import boolean, duration, integer, setting, string, url

#: points kept for retry when `buffer_size` is 0 or absent
DEFAULT_BUFFER_POINTS = 100_000


@attrs.frozen
class InfluxDBConfig:
    address: str = setting(url(), required=True,
                           doc="InfluxDB base URL, e.g. http://127.0.0.1:8086 (a path prefix is kept)")
    db: str = setting(string(), required=True, doc="database the points are written to")
    username: str = setting(string(), default="", doc="user for HTTP basic auth (empty: no auth)")
    password: str = setting(string(), default="", secret=True, doc="password for HTTP basic auth")
    timeout: float | None = setting(
        duration, default=None,
        doc="time one write may take; absent or 0: the service's export_timeout",
    )
    service_name: str = setting(string(), default="",
                                doc="written as tag `instance` on every point (omitted when empty)")
    ping: bool = setting(boolean, default=False,
                         doc="ping InfluxDB at start and refuse to start when it does not answer")
    buffer_size: int = setting(
        integer(0, 100_000_000), default=0,
        doc=f"points kept for retry while InfluxDB is failing (0: {DEFAULT_BUFFER_POINTS})",
    )

    @property
    def buffer_points(self) -> int:
        return self.buffer_size or DEFAULT_BUFFER_POINTS

    def request_timeout(self, fallback: float) -> float:
        """Seconds every request may take: `timeout` when positive, else the service's."""
        return self.timeout if self.timeout else fallback
