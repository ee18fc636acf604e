"""gatescope-ocagent: KrakenD's `ocagent` exporter (OpenCensus agent, gRPC) for gatescope."""

from __future__ import annotations

from collections.abc import Callable

from gatescope import hookimpl

from gatescope_ocagent.config import OcagentConfig
from gatescope_ocagent.exporter import OcagentExporter

__all__ = ["OcagentConfig", "OcagentExporter", "gatescope_register_exporters"]


@hookimpl
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    register(OcagentExporter)
