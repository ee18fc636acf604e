"""Plugin loading: entry points in group `gatescope`, isolated failures, the exporter registry."""

from __future__ import annotations

import os
import traceback
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import pluggy

from gatescope import builtin, hookspecs

GROUP = "gatescope"


@attrs.define
class PluginInfo:
    name: str  # entry-point name
    distribution: str
    version: str
    error: str | None = None


@attrs.define
class ExporterInfo:
    name: str
    exporter_class: type
    distribution: str
    version: str
    signals: tuple[str, ...]


class ExporterRegistry:
    """Exporters by name, with the plugins that failed to load; also the config catalog."""

    def __init__(self) -> None:
        self.exporters: dict[str, ExporterInfo] = {}
        self.plugins: list[PluginInfo] = []
        self.errors: list[str] = []  # duplicate names and similar registry-wide problems

    def config_class(self, name: str) -> type | None:
        info = self.exporters.get(name)
        return getattr(info.exporter_class, "config_class", None) if info else None

    def load_error(self, name: str) -> str | None:
        for plugin in self.plugins:
            if plugin.error and plugin.name == name:
                return f"distribution {plugin.distribution} {plugin.version}: {plugin.error}"
        return None

    def names(self) -> list[str]:
        return sorted(self.exporters)


def _allowed() -> set[str] | None:
    raw = os.environ.get("GATESCOPE_PLUGINS")
    if raw is None:
        return None
    return {name.strip().lower().replace("_", "-") for name in raw.split(",") if name.strip()}


def _dist(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    return (dist.metadata["Name"], dist.version) if dist is not None else ("unknown", "?")


def load_plugins(
    manager: pluggy.PluginManager | None = None,
) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Load every allowed entry point; a plugin that fails to import is recorded, not fatal."""
    pm = manager or pluggy.PluginManager("gatescope")
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, "gatescope.builtin")
    allowed = _allowed()
    infos = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        distribution, version = _dist(ep)
        if allowed is not None and distribution.lower() not in allowed and distribution != "gatescope":
            continue
        info = PluginInfo(ep.name, distribution, version)
        infos.append(info)
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # any import-time failure is the plugin's, not ours
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
            info.error = f"{type(exc).__name__}: {exc}{where}"
    pm.check_pending()
    return pm, infos


def build_registry(pm: pluggy.PluginManager, infos: list[PluginInfo]) -> ExporterRegistry:
    registry = ExporterRegistry()
    registry.plugins = infos
    owners = {pm.get_plugin(i.name): i for i in infos if i.error is None}
    for impl in pm.hook.gatescope_register_exporters.get_hookimpls():
        info = owners.get(impl.plugin) or PluginInfo(impl.plugin_name, "(registered in code)", "")

        def register(cls: type, info: PluginInfo = info) -> None:
            name = getattr(cls, "name", "")
            existing = registry.exporters.get(name)
            if existing is not None:
                registry.errors.append(
                    f'exporter "{name}" is provided by both {existing.distribution} and '
                    f"{info.distribution}; uninstall one of them"
                )
                return
            registry.exporters[name] = ExporterInfo(
                name, cls, info.distribution, info.version, tuple(sorted(getattr(cls, "signals", ())))
            )

        impl.function(register=register)
    return registry


def default_registry() -> tuple[pluggy.PluginManager, ExporterRegistry]:
    pm, infos = load_plugins()
    return pm, build_registry(pm, infos)


def listing(registry: ExporterRegistry) -> list[dict[str, Any]]:
    """What `gatescope plugins` prints: exporters and plugins that failed to load."""
    rows: list[dict[str, Any]] = [
        {"name": e.name, "distribution": e.distribution, "version": e.version,
         "signals": list(e.signals), "error": None}
        for e in sorted(registry.exporters.values(), key=lambda e: e.name)
    ]
    rows += [
        {"name": p.name, "distribution": p.distribution, "version": p.version, "signals": [],
         "error": p.error}
        for p in registry.plugins if p.error
    ]
    rows += [{"name": None, "distribution": None, "version": None, "signals": [], "error": e}
             for e in registry.errors]
    return rows
