"""The `exporters.stackdriver` section: KrakenD's keys plus a test-only endpoint override."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from gatescope.settings import Problems, host_port, setting, string, string_map

DEFAULT_METRIC_PREFIX = "krakend"


@attrs.frozen
class StackdriverConfig:
    project_id: str = setting(
        string(), default="",
        doc="Google Cloud project id; empty = from Application Default Credentials")
    metric_prefix: str = setting(
        string(), default=DEFAULT_METRIC_PREFIX,
        doc="display-name prefix of the metric descriptors; empty means KrakenD's default")
    default_labels: Mapping[str, str] = setting(
        string_map, factory=dict, doc="labels added to every time series")
    endpoint: tuple[str, int] | None = setting(
        host_port, default=None, extension=True,
        doc="plaintext gRPC endpoint serving Cloud Trace v2 and Cloud Monitoring v3 instead of "
            "Google's (emulators and tests); no credentials are sent to it")

    def validate(self, path: str, problems: Problems, present: frozenset[str]) -> None:
        return None

    @property
    def labels(self) -> dict[str, str]:
        """`default_labels` without empty names (Cloud Monitoring refuses those)."""
        return {key: value for key, value in self.default_labels.items() if key}

    @property
    def effective_metric_prefix(self) -> str:
        return self.metric_prefix or DEFAULT_METRIC_PREFIX

    @property
    def target(self) -> str | None:
        if self.endpoint is None:
            return None
        host, port = self.endpoint
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
