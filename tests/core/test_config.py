"""Config: KrakenD semantics, and every problem reported with its JSON path."""

from __future__ import annotations

import json

import pytest
from gatescope.config import LEGACY_NAMESPACE, NAMESPACE, ConfigUnreadable, Layers, load_config
from gatescope.plugins import default_registry
from gatescope.settings import ConfigError

NS = f"extra_config.{NAMESPACE}"


@pytest.fixture(scope="module")
def registry():
    return default_registry()[1]


def doc(section, **root):
    return {"version": 3, "extra_config": {NAMESPACE: section}, **root}


def problems(registry, document):
    with pytest.raises(ConfigError) as info:
        load_config(document, registry)
    return info.value.problems


def test_defaults_are_krakends(registry):
    config = load_config(doc({"exporters": {"logger": {}}}), registry)
    assert config.sample_rate == 0
    assert config.reporting_period == 0
    assert config.period() == 10.0
    assert config.layers == Layers(True, True, True)
    assert [s.name for s in config.exporters] == ["logger"]


def test_enabled_layers_present_turns_missing_layers_off(registry):
    config = load_config(doc({"exporters": {"logger": {}}, "enabled_layers": {"pipe": True}}), registry)
    assert config.layers == Layers(router=False, pipe=True, backend=False)


def test_enabled_layers_null_means_absent(registry):
    config = load_config(doc({"exporters": {"logger": {}}, "enabled_layers": None}), registry)
    assert config.layers == Layers(True, True, True)


def test_reporting_period_non_positive_uses_default(registry):
    for period in (0, -5):
        config = load_config(doc({"exporters": {"logger": {}}, "reporting_period": period}), registry)
        assert config.period() == 10.0
        assert config.period(15.0) == 15.0
    config = load_config(doc({"exporters": {"logger": {}}, "reporting_period": 3}), registry)
    assert config.period() == 3.0


def test_legacy_namespace_is_read(registry):
    document = {"extra_config": {LEGACY_NAMESPACE: {"exporters": {"logger": {}}, "sample_rate": 50}}}
    config = load_config(document, registry)
    assert config.namespace == LEGACY_NAMESPACE
    assert config.sample_rate == 50


def test_comment_keys_ignored_at_every_level(registry):
    section = {
        "@comment": "top", "$ref-ish": 1, "_x": None, "#y": [],
        "enabled_layers": {"@c": 1, "router": True},
        "exporters": {"#disabled": {"whatever": 1}, "logger": {"_note": "x", "spans": True}},
    }
    config = load_config(doc(section), registry)
    assert [s.name for s in config.exporters] == ["logger"]
    assert config.layers.router and not config.layers.pipe


def test_integral_float_counts_as_integer(registry):
    config = load_config(doc({"exporters": {"logger": {}}, "sample_rate": 25.0}), registry)
    assert config.sample_rate == 25


def test_service_name_from_root_name(registry):
    config = load_config(doc({"exporters": {"logger": {}}}, name="my-gateway"), registry)
    assert config.service_name == "my-gateway"


def test_path_aggregation_parsed_per_endpoint_and_backend(registry):
    document = doc({"exporters": {"logger": {}}}, endpoints=[
        {"endpoint": "/a/{id}", "method": "post",
         "extra_config": {NAMESPACE: {"path_aggregation": "lastparam"}},
         "backend": [{"url_pattern": "/u/{id}", "extra_config": {NAMESPACE: {"path_aggregation": "off"}}},
                     {"url_pattern": "/v"}]},
        {"endpoint": "/b"},
    ])
    config = load_config(document, registry)
    a, b = config.endpoints
    assert (a.endpoint, a.method, a.path_aggregation) == ("/a/{id}", "POST", "lastparam")
    assert [(x.url_pattern, x.path_aggregation) for x in a.backends] == [("/u/{id}", "off"), ("/v", "pattern")]
    assert b.path_aggregation == "pattern"


def test_file_is_read(tmp_path, registry):
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(doc({"exporters": {"logger": {"stats": True}}})))
    config = load_config(str(path), registry)
    assert config.exporter("logger").stats is True


def test_unreadable_file_and_bad_json(tmp_path, registry):
    with pytest.raises(ConfigUnreadable, match="cannot read"):
        load_config(str(tmp_path / "missing.json"), registry)
    bad = tmp_path / "bad.json"
    bad.write_text('{"extra_config": ')
    with pytest.raises(ConfigUnreadable, match="not valid JSON at line 1"):
        load_config(str(bad), registry)


# Each case: (section or whole document, expected problem prefix/fragment). >= 20 distinct cases.
ERROR_CASES = [
    ({"exporters": {"logger": {}}, "sample_rate": 101}, f"{NS}.sample_rate: expected an integer 0..100, got 101"),
    ({"exporters": {"logger": {}}, "sample_rate": -1}, f"{NS}.sample_rate: expected an integer 0..100, got -1"),
    ({"exporters": {"logger": {}}, "sample_rate": "50"}, f'{NS}.sample_rate: expected an integer 0..100, got "50"'),
    ({"exporters": {"logger": {}}, "sample_rate": 2.5}, f"{NS}.sample_rate: expected an integer 0..100, got 2.5"),
    ({"exporters": {"logger": {}}, "sample_rate": True}, f"{NS}.sample_rate: expected an integer 0..100, got true"),
    ({"exporters": {"logger": {}}, "reporting_period": "10s"}, f"{NS}.reporting_period: expected an integer"),
    ({"exporters": {"logger": {}}, "reporting_period": 10**30}, f"{NS}.reporting_period: expected an integer"),
    ({"exporters": {"logger": {}}, "sampel_rate": 1}, f'{NS}.sampel_rate: unknown key (did you mean "sample_rate"?)'),
    ({"exporter": {"logger": {}}}, f'{NS}.exporter: unknown key (did you mean "exporters"?)'),
    ({"exporters": {"logger": {}}, "enabled_layers": {"routr": True}}, f'{NS}.enabled_layers.routr: unknown key (did you mean "router"?)'),
    ({"exporters": {"logger": {}}, "enabled_layers": {"router": "yes"}}, f'{NS}.enabled_layers.router: expected true or false, got "yes"'),
    ({"exporters": {"logger": {}}, "enabled_layers": 5}, f"{NS}.enabled_layers: expected an object, got 5"),
    ({"sample_rate": 1}, f"{NS}.exporters: is required"),
    ({"exporters": {}}, f"{NS}.exporters: configure at least one exporter"),
    ({"exporters": []}, f"{NS}.exporters: expected an object, got a list"),
    ({"exporters": {"nosuch": {}}}, f'{NS}.exporters.nosuch: unknown exporter "nosuch" (installed: '),
    ({"exporters": {"logger": {"spans": 1}}}, f"{NS}.exporters.logger.spans: expected true or false, got 1"),
    ({"exporters": {"logger": {"span": True}}}, f'{NS}.exporters.logger.span: unknown key (did you mean "spans"?)'),
    ({"exporters": {"logger": []}}, f"{NS}.exporters.logger: expected an object, got a list"),
    ({"exporters": {"logger": {}}, "export_timeout": "5 seconds"}, f'{NS}.export_timeout: expected a duration like "2s"'),
    ({"exporters": {"logger": {}}, "max_tag_sets": 0}, f"{NS}.max_tag_sets: expected an integer 1..1000000, got 0"),
    ({"exporters": {"logger": {}}, "untraced_paths": ["/ok", 3]}, f"{NS}.untraced_paths: expected a list of strings, item 1 is 3"),
    ([], "$: expected a JSON object, got a list"),
    ({"extra_config": []}, "extra_config: expected an object holding"),
    ({"extra_config": {}}, 'extra_config: no "telemetry/opencensus" section'),
    ({"extra_config": {NAMESPACE: {"exporters": {"logger": {}}}, LEGACY_NAMESPACE: {}}}, "extra_config: both"),
    ({"extra_config": {NAMESPACE: "on"}}, f'{NS}: expected an object, got "on"'),
    ({"extra_config": {NAMESPACE: {"exporters": {"logger": {}}}},
      "endpoints": [{"endpoint": "/x", "extra_config": {NAMESPACE: {"path_aggregation": "all"}}}]},
     f'endpoints[0].extra_config.{NAMESPACE}.path_aggregation: expected one of "pattern", "lastparam", "off", got "all"'),
    ({"extra_config": {NAMESPACE: {"exporters": {"logger": {}}}},
      "endpoints": [{"endpoint": "/x", "backend": [{"extra_config": {NAMESPACE: {"path_agregation": "off"}}}]}]},
     f'endpoints[0].backend[0].extra_config.{NAMESPACE}.path_agregation: unknown key (did you mean "path_aggregation"?)'),
]


@pytest.mark.parametrize(("document", "expected"), ERROR_CASES, ids=range(len(ERROR_CASES)))
def test_error_names_the_json_path(registry, document, expected):
    full = document if not isinstance(document, dict) or "extra_config" in document else doc(document)
    found = problems(registry, full)
    assert any(p.startswith(expected) or expected in p for p in found), found


def test_every_problem_is_reported_not_just_the_first(registry):
    found = problems(registry, doc({
        "sample_rate": 500, "reporting_period": "x", "bogus": 1,
        "enabled_layers": {"router": 1}, "exporters": {"logger": {"spans": "y"}, "nosuch": {}},
    }))
    assert len(found) == 6, found
    assert str(ConfigError(found)).startswith("invalid telemetry config (6 problems):")


def test_unknown_exporter_names_installed_and_distribution(registry):
    (problem,) = problems(registry, doc({"exporters": {"nosuch": {}}}))
    assert "logger" in problem
    assert "pip install gatescope-nosuch" in problem
