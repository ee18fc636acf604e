"""Every code block of docs/writing-an-exporter.md is real: copied from this example package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1]
DOC = PACKAGE.parents[1] / "docs" / "writing-an-exporter.md"
BLOCK = re.compile(r"^```(python|toml)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks() -> list[str]:
    return [match.group(2) for match in BLOCK.finditer(DOC.read_text())]


def test_the_page_has_code() -> None:
    assert len(blocks()) >= 8


@pytest.mark.parametrize("block", blocks(), ids=lambda b: b.splitlines()[0][:40])
def test_block_is_taken_from_the_package(block: str) -> None:
    sources = [p.read_text() for p in PACKAGE.rglob("*") if p.suffix in (".py", ".toml")]
    assert any(block in text for text in sources), f"not found in {PACKAGE}:\n{block}"
