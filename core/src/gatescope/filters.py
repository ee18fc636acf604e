"""Layer filters: start-up decisions of which layer instruments which request path."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

LAYERS = ("router", "pipe", "backend")


@attrs.frozen
class LayerFilter:
    """`allow(path)` False means: this layer neither traces nor measures that request."""

    layer: str  # one of LAYERS, or "*" for all
    allow: Callable[[str], bool]
    layer_enabled: bool = True  # False switches the whole layer off (enabled_layers)


Predicate = Callable[[str], bool] | None  # None: the layer is off


def compile_filters(filters: Iterable[LayerFilter]) -> dict[str, Predicate]:
    """One predicate per layer; `None` when any filter switched the layer off."""
    compiled: dict[str, Predicate] = {}
    for layer in LAYERS:
        mine = [f for f in filters if f.layer in (layer, "*")]
        if any(not f.layer_enabled for f in mine):
            compiled[layer] = None
            continue
        checks = [f.allow for f in mine if f.allow is not allow_all]  # no per-request no-ops
        if not checks:
            compiled[layer] = allow_all
        elif len(checks) == 1:
            compiled[layer] = checks[0]
        else:
            compiled[layer] = _all_of(tuple(checks))
    return compiled


def _all_of(checks: tuple[Callable[[str], bool], ...]) -> Callable[[str], bool]:
    def allow(path: str) -> bool:
        return all(check(path) for check in checks)

    return allow


def allow_all(path: str) -> bool:
    """The filter of a layer that is on for every path (skipped when filters are compiled)."""
    return True
