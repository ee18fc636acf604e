"""gatescope: KrakenD's telemetry/opencensus for Python services."""

from gatescope.config import ConfigUnreadable, TelemetryConfig, load_config
from gatescope.exporter import (
    METRICS,
    TRACES,
    BaseExporter,
    Exporter,
    ExporterContext,
    ExporterStartError,
    RateLimitedLog,
)
from gatescope.hookspecs import hookimpl
from gatescope.metrics import DistributionValue, MetricsSnapshot, View, ViewData
from gatescope.pipeline import ExportError
from gatescope.runtime import Telemetry
from gatescope.settings import ConfigError
from gatescope.spans import SpanRecord

__version__ = "0.1.0"

__all__ = [
    "METRICS",
    "TRACES",
    "BaseExporter",
    "ConfigError",
    "ConfigUnreadable",
    "DistributionValue",
    "ExportError",
    "Exporter",
    "ExporterContext",
    "ExporterStartError",
    "MetricsSnapshot",
    "RateLimitedLog",
    "SpanRecord",
    "Telemetry",
    "TelemetryConfig",
    "View",
    "ViewData",
    "hookimpl",
    "load_config",
]
