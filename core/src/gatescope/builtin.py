"""gatescope's built-in hook implementations: KrakenD's sampler and `enabled_layers`."""

from __future__ import annotations

from typing import Any

from gatescope.config import TelemetryConfig
from gatescope.filters import LAYERS, LayerFilter, allow_all
from gatescope.hookspecs import hookimpl
from gatescope.sampling import Sampler, rate_sampler


@hookimpl(trylast=True)
def gatescope_make_sampler(config: TelemetryConfig) -> Sampler:
    """KrakenD's sampler, unless another plugin returns one first."""
    return rate_sampler(config.sample_rate)


@hookimpl
def gatescope_layer_filters(config: TelemetryConfig) -> list[LayerFilter]:
    """`enabled_layers` switches, and the health-check paths the router leaves alone."""
    filters = [
        LayerFilter(layer, allow_all, layer_enabled=getattr(config.layers, layer)) for layer in LAYERS
    ]
    untraced = frozenset(config.settings.untraced_paths)
    if untraced:
        filters.append(LayerFilter("router", lambda path: path not in untraced))
    return filters


__all__: list[Any] = []
