"""gatescope-xray: KrakenD's `exporters.xray` (AWS X-Ray traces) as a gatescope plugin."""

from __future__ import annotations

from collections.abc import Callable

from gatescope import hookimpl

from gatescope_xray.config import XRayConfig
from gatescope_xray.exporter import XRayExporter
from gatescope_xray.ids import TraceIdMapper
from gatescope_xray.segments import SegmentEncoder

__all__ = ["SegmentEncoder", "TraceIdMapper", "XRayConfig", "XRayExporter"]


@hookimpl
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    register(XRayExporter)
