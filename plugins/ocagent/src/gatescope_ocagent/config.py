"""The `exporters.ocagent` section: KrakenD's keys, defaults and what gRPC accepts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
from gatescope.settings import Problems, boolean, describe, duration, host_port, setting, string

DEFAULT_SERVICE_NAME = "KrakenD-Opencensus"
DEFAULT_RECONNECTION = 2.0
# gRPC metadata: lower-case token keys (Go lower-cases them); printable ASCII values.
HEADER_NAME = re.compile(r"^[0-9a-z_.-]+$")
HEADER_VALUE = re.compile(r"^[\x20-\x7e]*$")


def metadata_map(value: Any) -> dict[str, str]:
    """An object of strings whose values are secrets: errors name the key, never the value."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object of strings, got {describe(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise ValueError(f'expected an object of strings, "{key}" is not a string')
    return dict(value)


@attrs.frozen
class OcagentConfig:
    address: tuple[str, int] = setting(
        host_port, required=True, doc="host:port of the OpenCensus agent's gRPC receiver")
    service_name: str = setting(
        string(), default=DEFAULT_SERVICE_NAME,
        doc="the Node's service name; empty means KrakenD's default")
    headers: Mapping[str, str] = setting(
        metadata_map, factory=dict, secret=True, doc="gRPC metadata sent with every export stream")
    insecure: bool = setting(boolean, default=False, doc="plaintext gRPC instead of TLS")
    enable_compression: bool = setting(boolean, default=False, doc="gzip every message")
    reconnection: float = setting(
        duration, default=DEFAULT_RECONNECTION,
        doc="wait before reconnecting after the agent became unreachable")

    def validate(self, path: str, problems: Problems, present: frozenset[str]) -> None:
        return None  # the schema accepts any header; `header_problems` is checked at start()

    def header_problems(self) -> list[str]:
        """Headers gRPC would refuse on every call, named by key (values are secrets)."""
        found = []
        for name, value in self.headers.items():
            key = name.lower()
            if not HEADER_NAME.match(key):
                found.append(f"headers.{name}: not a valid gRPC metadata name "
                             "(letters, digits, '-', '_', '.')")
            elif key.startswith("grpc-"):
                found.append(f"headers.{name}: names starting with grpc- are reserved")
            elif not key.endswith("-bin") and not HEADER_VALUE.match(value):
                found.append(f"headers.{name}: value must be printable ASCII (use a name ending "
                             "in -bin for other text)")
        return found

    @property
    def target(self) -> str:
        """The gRPC target for `address` (IPv6 hosts in brackets)."""
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def effective_service_name(self) -> str:
        return self.service_name or DEFAULT_SERVICE_NAME

    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """Headers as gRPC metadata (binary headers carry their UTF-8 bytes)."""
        out: list[tuple[str, str | bytes]] = []
        for name, value in sorted(self.headers.items(), key=lambda item: item[0].lower()):
            key = name.lower()
            out.append((key, value.encode("utf-8") if key.endswith("-bin") else value))
        return tuple(out)
