"""Config fuzzing: mutated valid configs give a config or our ConfigError with paths, nothing else."""

from __future__ import annotations

import copy
import re
from typing import Any

from gatescope.config import NAMESPACE, load_config
from gatescope.plugins import default_registry
from gatescope.settings import ConfigError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REGISTRY = default_registry()[1]
PATH = re.compile(r"^(\$|extra_config|endpoints\[\d+\])")

SEEDS: list[dict[str, Any]] = [
    {"sample_rate": 50, "reporting_period": 5, "enabled_layers": {"router": True, "pipe": False},
     "exporters": {"logger": {"spans": True, "stats": False}}},
    {"exporters": {"logger": {}}, "max_tag_sets": 10, "untraced_paths": ["/a"], "export_timeout": "3s"},
]
OPTIONAL = {
    "prometheus": {"port": 9091, "namespace": "krakend", "tag_host": True},
    "jaeger": {"endpoint": "http://127.0.0.1:14268/api/traces", "service_name": "s"},
    "zipkin": {"collector_url": "http://127.0.0.1:9411/api/v2/spans", "service_name": "s"},
    "influxdb": {"address": "http://127.0.0.1:8086", "db": "k", "password": "pw", "timeout": "2s"},
    "datadog": {"namespace": "k", "service": "g", "trace_address": "localhost:8126",
                "stats_address": "localhost:8125", "tags": ["a:b"], "global_tags": {"e": "p"},
                "disable_count_per_buckets": False},
    "xray": {"region": "eu-west-1", "version": "v", "use_env": True},
    "ocagent": {"address": "localhost:55678", "service_name": "s", "headers": {"h": "v"},
                "reconnection": "2s"},
    "stackdriver": {"project_id": "p", "default_labels": {"env": "prod"}},
}
for name, section in OPTIONAL.items():
    if name in REGISTRY.exporters:
        SEEDS.append({"exporters": {name: section}, "sample_rate": 10})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
    | st.sampled_from(["", "µs", "2s", "9" * 40 + "h", "http://", "host:99999", "\x00", "日本語"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def deeply_nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value} if depth % 2 else [value]
    return value


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if len(prefix) > 12:  # do not walk into the deliberately deep values
        return found
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    section = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        targets = paths(section)
        target = draw(st.sampled_from(targets))
        action = draw(st.sampled_from(["replace", "delete", "add", "nest"]))
        parent: Any = section
        for part in target[:-1]:
            parent = parent[part]
        if not target:
            continue
        key = target[-1]
        if action == "replace":
            parent[key] = draw(json_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(json_values)
        elif action == "nest":
            parent[key] = deeply_nested(draw(st.integers(50, 3000)))
    return {"extra_config": {NAMESPACE: section}}


@given(mutated())
@settings(max_examples=300, deadline=5000, database=None, suppress_health_check=list(HealthCheck))
def test_mutated_configs_never_raise_anything_else(document: dict[str, Any]) -> None:
    try:
        config = load_config(document, REGISTRY)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must carry at least one problem"
        for problem in exc.problems:
            assert PATH.match(problem), f"problem without a JSON path: {problem!r}"
            assert len(problem) < 2000
    else:
        assert config.exporters


def test_huge_and_deep_documents_are_refused_cleanly() -> None:
    document = {"extra_config": {NAMESPACE: {"exporters": {"logger": deeply_nested(100_000)}}}}
    try:
        load_config(document, REGISTRY)
    except ConfigError as exc:
        assert exc.problems[0].startswith(f"extra_config.{NAMESPACE}.exporters.logger")
    else:  # pragma: no cover - a list/dict for the logger section can never be valid
        raise AssertionError("accepted a nested list as the logger section")
