"""The jsonl section: defaults, every key, and errors reported with their JSON paths."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from gatescope import ConfigError, load_config
from gatescope.plugins import default_registry
from gatescope.testing import krakend_config
from gatescope_jsonl import JsonlConfig, JsonlExporter

SECTION = "extra_config.telemetry/opencensus.exporters.jsonl"


def load(section: object) -> JsonlConfig:
    _, registry = default_registry()
    config = load_config(krakend_config({"jsonl": section}), registry)
    parsed = config.exporter("jsonl")
    assert isinstance(parsed, JsonlConfig)
    return parsed


def problems(section: object) -> tuple[str, ...]:
    _, registry = default_registry()
    with pytest.raises(ConfigError) as caught:
        load_config(krakend_config({"jsonl": section}), registry)
    return caught.value.problems


def test_entry_point_resolves_to_the_exporter() -> None:
    (ep,) = [e for e in entry_points(group="gatescope") if e.name == "jsonl"]
    assert ep.value == "gatescope_jsonl"
    assert ep.dist is not None and ep.dist.metadata["Name"] == "gatescope-jsonl"
    _, registry = default_registry()
    info = registry.exporters["jsonl"]
    assert info.exporter_class is JsonlExporter
    assert info.distribution == "gatescope-jsonl"


def test_defaults() -> None:
    config = load({"path": "/tmp/x.jsonl"})
    assert config == JsonlConfig(path="/tmp/x.jsonl", spans=True, metrics=True, max_bytes=0,
                                 backups=3, internal_metrics=True, fsync=False)


def test_every_key() -> None:
    config = load({"path": "t.jsonl", "spans": False, "metrics": True, "max_bytes": 4096,
                   "backups": 7, "internal_metrics": False, "fsync": True, "@comment": "ignored"})
    assert config == JsonlConfig(path="t.jsonl", spans=False, metrics=True, max_bytes=4096,
                                 backups=7, internal_metrics=False, fsync=True)


def test_path_is_required() -> None:
    assert problems({}) == (f"{SECTION}.path: is required",)


@pytest.mark.parametrize(("section", "expected"), [
    ({"path": ""}, f"{SECTION}.path: expected a non-empty string"),
    ({"path": 3}, f"{SECTION}.path: expected a string, got 3"),
    ({"path": "x", "spans": "yes"}, f'{SECTION}.spans: expected true or false, got "yes"'),
    ({"path": "x", "max_bytes": -1},
     f"{SECTION}.max_bytes: expected an integer 0..9223372036854775807, got -1"),
    ({"path": "x", "max_bytes": 10, "backups": 101},
     f"{SECTION}.backups: expected an integer 0..100, got 101"),
    ({"path": "x", "max_bites": 10}, f'{SECTION}.max_bites: unknown key (did you mean "max_bytes"?)'),
    ({"path": "x", "spans": False, "metrics": False},
     f'{SECTION}: nothing to write: "spans" and "metrics" are both false'),
    ({"path": "x", "backups": 2}, f'{SECTION}.backups: has no effect without "max_bytes"'),
])
def test_bad_values_name_their_path(section: dict[str, object], expected: str) -> None:
    assert problems(section) == (expected,)


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"spans": 1, "fsync": "no"})
    assert sorted(found) == sorted([
        f"{SECTION}.spans: expected true or false, got 1",
        f"{SECTION}.fsync: expected true or false, got \"no\"",
        f"{SECTION}.path: is required",
    ])
