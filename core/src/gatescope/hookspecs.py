"""The hooks a gatescope plugin may implement; all are called at start-up, never per request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("gatescope")
hookimpl = pluggy.HookimplMarker("gatescope")


@hookspec
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    """Call `register(ExporterClass)` for each exporter this plugin provides."""


@hookspec(firstresult=True)
def gatescope_make_sampler(config: Any) -> Any:
    """Return a sampler `(trace_id, parent) -> bool` for this config, or None to pass."""


@hookspec
def gatescope_layer_filters(config: Any) -> Any:
    """Return a list of `LayerFilter`s deciding, per layer and request path, what to instrument."""
