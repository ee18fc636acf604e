"""KrakenD's path_aggregation cases and route-template normalising."""

from __future__ import annotations

import pytest
from gatescope.paths import Endpoint, EndpointResolver, normalize


@pytest.mark.parametrize("endpoint", ["/api/:foo/:bar", "/api/{foo}/{bar}"])
@pytest.mark.parametrize(("mode", "expected"), [
    ("pattern", "/api/{foo}/{bar}"),
    ("lastparam", "/api/foo/{bar}"),
    ("off", "/api/foo/bar"),
])
def test_krakend_cases(endpoint: str, mode: str, expected: str) -> None:
    assert Endpoint(endpoint, mode).path_tag("/api/foo/bar") == expected


def test_default_is_pattern_and_lower_cased() -> None:
    assert Endpoint("/API/{Foo}").path_tag("/API/x") == "/api/{foo}"


def test_lastparam_without_trailing_param_falls_back_to_pattern() -> None:
    assert Endpoint("/api/{foo}/list", "lastparam").path_tag("/api/1/list") == "/api/{foo}/list"


def test_backend_lura_syntax() -> None:
    assert Endpoint("/users/{{.Id}}", "lastparam").path_tag("/users/42") == "/users/{id}"


@pytest.mark.parametrize(("template", "expected"), [
    ("/users/<int:id>", "/users/{id}"), ("/users/{id:int}", "/users/{id}"),
    ("/a/:b/c", "/a/{b}/c"), ("/files/{p:path}", "/files/{p}"),
])
def test_normalize(template: str, expected: str) -> None:
    assert normalize(template) == expected


def test_resolver_prefers_static_routes_and_caps_nothing_raw() -> None:
    resolver = EndpointResolver({}, ["/users/{id}", "/users/me"])
    assert resolver.for_path("/users/me").name == "/users/me"
    assert resolver.for_path("/users/7").name == "/users/{id}"
    assert resolver.for_path("/elsewhere").name == "unknown route"
    assert EndpointResolver({}, lambda p: "/x/{y}" if p.startswith("/x/") else None) \
        .for_path("/x/1").name == "/x/{y}"
    with pytest.raises(ValueError, match="path_aggregation"):
        EndpointResolver({}, {"/a": "bogus"})
