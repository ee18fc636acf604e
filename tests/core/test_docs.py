"""The README documents every key of every installed exporter and of the section itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from gatescope.config import ServiceSettings
from gatescope.plugins import default_registry
from gatescope.settings import specs

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
REGISTRY = default_registry()[1]
DOCUMENTED_ELSEWHERE = {"jsonl", "capture"}  # the example package documents itself


@pytest.mark.parametrize("name", [n for n in REGISTRY.names() if n not in DOCUMENTED_ELSEWHERE])
def test_every_exporter_key_is_in_the_readme(name: str) -> None:
    config_class = REGISTRY.exporters[name].exporter_class.config_class
    assert f"**{name}**" in README, f"README has no section for exporter {name}"
    section = README.split(f"**{name}**", 1)[1].split("\n\n", 1)[0]
    missing = [key for key in specs(config_class) if f"`{key}`" not in section]
    assert not missing, f"README section for {name} does not document {missing}"


def test_every_section_key_is_in_the_readme() -> None:
    missing = [key for key in specs(ServiceSettings) if f"`{key}`" not in README]
    assert not missing


def test_every_plugin_has_a_readme() -> None:
    for plugin in (ROOT / "plugins").iterdir():
        readme = plugin / "README.md"
        assert readme.exists() and len(readme.read_text()) > 500, plugin.name
