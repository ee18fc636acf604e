"""Every hook spec is documented in docs/writing-an-exporter.md and exercised (datasette's pattern)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar
from wsgiref.util import setup_testing_defaults

import attrs
import pytest
from gatescope import BaseExporter, hookimpl, hookspecs
from gatescope.filters import LayerFilter
from gatescope.spans import KIND_SERVER
from gatescope.testing import PluginHarness, exporter_of, krakend_config
from gatescope.tracing import Span

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "writing-an-exporter.md"
HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
               if name.startswith("gatescope_"))


def test_there_are_hook_specs() -> None:
    assert HOOKS == ["gatescope_layer_filters", "gatescope_make_sampler",
                     "gatescope_register_exporters"]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    text = DOC.read_text()
    # A heading of its own, and its signature as the spec declares it.
    assert re.search(rf"^#+ .*`{hook}", text, re.MULTILINE), f"{hook} has no section in {DOC}"
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"{hook}({params})" in text


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_implemented_in_a_test_and_its_effect_asserted(hook: str) -> None:
    implementations = [p for p in (REPO / "tests").rglob("*.py") if f"def {hook}(" in p.read_text()]
    assert implementations, f"no test implements {hook}"
    assert hook in EFFECT_TESTS, f"add a test here registering {hook} and asserting its effect"


# --- temporary plugins, one per hook, and the effect each must have ------------------------------

@attrs.frozen
class NoSettings:
    """A config section with no keys."""


class HookTestExporter(BaseExporter):
    name: ClassVar[str] = "hooktest"
    config_class: ClassVar[type] = NoSettings


class RegistersAnExporter:
    @hookimpl
    def gatescope_register_exporters(self, register: Callable[[type], None]) -> None:
        register(HookTestExporter)


class SamplesEverything:
    @hookimpl
    def gatescope_make_sampler(self, config: Any) -> Callable[[str, Any], bool]:
        return lambda trace_id, parent: True


class HidesInternalPaths:
    @hookimpl
    def gatescope_layer_filters(self, config: Any) -> list[LayerFilter]:
        return [LayerFilter("router", lambda path: not path.startswith("/internal/"))]


def effect_register_exporters(harness: PluginHarness) -> None:
    assert "hooktest" not in harness.registry().exporters
    harness.register(RegistersAnExporter(), "hooktest-plugin")
    info = harness.registry().exporters["hooktest"]
    assert info.exporter_class is HookTestExporter
    telemetry = harness.telemetry(krakend_config({"hooktest": {}}))
    assert isinstance(exporter_of(telemetry, "hooktest"), HookTestExporter)


def effect_make_sampler(harness: PluginHarness) -> None:
    document = krakend_config(sample_rate=0)  # the built-in (trylast) sampler: never
    before = harness.telemetry(document)
    assert before.kit.tracer.start_root("/x", KIND_SERVER, None) is None
    harness.register(SamplesEverything(), "sample-everything")
    after = harness.telemetry(document)  # firstresult: ours answers before the built-in one
    assert isinstance(after.kit.tracer.start_root("/x", KIND_SERVER, None), Span)


def effect_layer_filters(harness: PluginHarness) -> None:
    document = krakend_config(sample_rate=100)
    before = harness.telemetry(document)
    assert before.kit.router is not None and before.kit.router("/internal/metrics")
    harness.register(HidesInternalPaths(), "hide-internal")
    telemetry = harness.telemetry(document)
    router = telemetry.kit.router
    assert router is not None
    assert not router("/internal/metrics")
    assert router("/users/1")
    assert not router("/__health")  # the built-in filters still apply alongside

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = telemetry.wsgi(app)
    for path in ("/internal/metrics", "/users/1"):
        environ: dict[str, Any] = {"PATH_INFO": path}
        setup_testing_defaults(environ)
        body = wrapped(environ, lambda status, headers, exc_info=None: None)
        b"".join(body)
        getattr(body, "close", lambda: None)()
    assert telemetry.flush(5.0)
    capture = exporter_of(telemetry, "capture")
    assert len(capture.spans) == 1  # only /users/1 was traced
    requests = telemetry.metrics().view("opencensus.io/http/server/request_count")
    assert requests is not None and sum(requests.rows.values()) == 1  # ...and measured


EFFECT_TESTS: dict[str, Callable[[PluginHarness], None]] = {
    "gatescope_register_exporters": effect_register_exporters,
    "gatescope_make_sampler": effect_make_sampler,
    "gatescope_layer_filters": effect_layer_filters,
}


@pytest.mark.parametrize("hook", sorted(EFFECT_TESTS))
def test_hook_has_its_effect(hook: str, gatescope_plugins: PluginHarness) -> None:
    EFFECT_TESTS[hook](gatescope_plugins)
