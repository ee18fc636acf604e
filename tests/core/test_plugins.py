"""Plugin discovery: entry points, isolated load failures, duplicates, GATESCOPE_PLUGINS, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from gatescope.config import NAMESPACE, load_config
from gatescope.plugins import build_registry, listing, load_plugins
from gatescope.settings import ConfigError

GOOD = """
import attrs
from gatescope import BaseExporter, TRACES, hookimpl

@attrs.frozen
class FakeConfig:
    pass

class FakeExporter(BaseExporter):
    name = "fake"
    config_class = FakeConfig
    signals = frozenset({TRACES})

@hookimpl
def gatescope_register_exporters(register):
    register(FakeExporter)
"""

BROKEN = """
import module_that_does_not_exist_anywhere
"""

DUPLICATE = """
from gatescope import hookimpl
from gatescope.exporters.logger import LoggerExporter

@hookimpl
def gatescope_register_exporters(register):
    register(LoggerExporter)
"""


def make_distribution(root: Path, dist: str, module: str, entry: str, source: str) -> None:
    """A minimal installed distribution (dist-info + module) that importlib.metadata finds."""
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[gatescope]\n{entry} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path, monkeypatch):
    make_distribution(tmp_path, "gatescope-fake", "gatescope_fake_mod", "fake", GOOD)
    make_distribution(tmp_path, "gatescope-broken", "gatescope_broken_mod", "broken", BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("GATESCOPE_PLUGINS", raising=False)
    for name in ("gatescope_fake_mod", "gatescope_broken_mod", "gatescope_dup_mod"):
        sys.modules.pop(name, None)
    return tmp_path


def registry():
    return build_registry(*load_plugins())


def test_broken_plugin_is_recorded_and_others_load(site):
    reg = registry()
    assert "fake" in reg.exporters and "logger" in reg.exporters
    assert reg.exporters["fake"].distribution == "gatescope-fake"
    assert reg.exporters["fake"].version == "1.2.3"
    broken = [p for p in reg.plugins if p.name == "broken"]
    assert broken and "ModuleNotFoundError" in broken[0].error
    rows = listing(reg)
    assert any(r["name"] == "broken" and "module_that_does_not_exist_anywhere" in r["error"] for r in rows)


def test_broken_plugin_is_fatal_only_when_configured(site):
    reg = registry()
    load_config({"extra_config": {NAMESPACE: {"exporters": {"fake": {}}}}}, reg)
    with pytest.raises(ConfigError) as info:
        load_config({"extra_config": {NAMESPACE: {"exporters": {"broken": {}}}}}, reg)
    (problem,) = info.value.problems
    assert problem.startswith(f"extra_config.{NAMESPACE}.exporters.broken: the exporter plugin is installed but failed")
    assert "gatescope-broken 1.2.3" in problem and "ModuleNotFoundError" in problem


def test_duplicate_exporter_names_name_both_distributions(site):
    make_distribution(site, "gatescope-dup", "gatescope_dup_mod", "dup", DUPLICATE)
    reg = registry()
    assert any("logger" in e and "gatescope-dup" in e and "gatescope" in e for e in reg.errors), reg.errors


def test_gatescope_plugins_env_restricts_loading(site, monkeypatch):
    monkeypatch.setenv("GATESCOPE_PLUGINS", "gatescope-fake")
    reg = registry()
    assert "fake" in reg.exporters
    assert not any(p.name == "broken" for p in reg.plugins)
    assert "logger" in reg.exporters  # the core's own built-in is always there
    monkeypatch.setenv("GATESCOPE_PLUGINS", "")
    reg = registry()
    assert set(reg.exporters) == {"logger"}


def run_cli(*args: str, env_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if env_path is not None:
        env["PYTHONPATH"] = str(env_path) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "gatescope.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_cli_plugins_json_lists_logger_and_broken(site):
    result = run_cli("plugins", "--json", env_path=site)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    names = {r["name"]: r for r in rows}
    assert names["logger"]["distribution"] == "gatescope"
    assert set(names["logger"]["signals"]) == {"traces", "metrics"}
    assert names["fake"]["signals"] == ["traces"]
    assert names["broken"]["error"].startswith("ModuleNotFoundError")


def test_cli_check_exit_codes_and_output(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"extra_config": {NAMESPACE: {
        "exporters": {"logger": {"spans": True}}, "max_tag_sets": 100}}}))
    result = run_cli("check", str(good), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["valid"] is True
    assert out["config"]["effective_reporting_period_seconds"] == 10.0
    assert out["config"]["exporters"]["logger"] == {"spans": True, "stats": None}
    assert out["config"]["extension_keys"] == ["max_tag_sets"]
    human = run_cli("check", str(good))
    assert human.returncode == 0 and "extension keys" in human.stdout

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"extra_config": {NAMESPACE: {"exporters": {"logger": {}}, "sample_rate": 200}}}))
    result = run_cli("check", str(bad), "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["problems"] == [
        f"extra_config.{NAMESPACE}.sample_rate: expected an integer 0..100, got 200"]

    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    assert run_cli("check", str(broken)).returncode == 2
    assert run_cli("check", str(tmp_path / "absent.json")).returncode == 2
