"""gatescope-jsonl: an example third-party exporter writing spans and metrics as JSON lines."""

from __future__ import annotations

from collections.abc import Callable

from gatescope import hookimpl

from gatescope_jsonl.config import JsonlConfig
from gatescope_jsonl.exporter import JsonlExporter

__version__ = "0.1.0"
__all__ = ["JsonlConfig", "JsonlExporter", "gatescope_register_exporters"]


@hookimpl
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    register(JsonlExporter)
