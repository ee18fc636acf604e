"""gatescope-stackdriver: KrakenD's `stackdriver` exporter (Cloud Trace, Cloud Monitoring)."""

from __future__ import annotations

from collections.abc import Callable

from gatescope import hookimpl

from gatescope_stackdriver.config import StackdriverConfig
from gatescope_stackdriver.exporter import StackdriverExporter

__all__ = ["StackdriverConfig", "StackdriverExporter", "gatescope_register_exporters"]


@hookimpl
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    register(StackdriverExporter)
