"""`gatescope.router.django`: the matched URL pattern, as Django reports it, becomes the route."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from gatescope.router import ROUTE_ENVIRON_KEY
from gatescope.router.django import route_middleware, route_template


@pytest.mark.parametrize(("route", "template"), [
    ("users/<int:user_id>", "/users/{user_id}"),  # path(): no leading slash in Django
    ("api/users/<int:user_id>", "/api/users/{user_id}"),  # include()d: prefixes joined
    ("", "/"),  # the site root
    (r"^articles/(?P<year>[0-9]{4})/$", "/articles/{year}/"),  # re_path: groups as params
    (r"^blog/(?P<slug>[\w-]+)\.html$", "/blog/{slug}.html"),
    (r"^pages/([0-9]+)/$", "/pages/{param}/"),  # an unnamed group
])
def test_template_from_the_resolver_match(route, template):
    from gatescope.paths import normalize

    request = SimpleNamespace(resolver_match=SimpleNamespace(route=route))
    found = route_template(request)
    assert found is not None and normalize(found) == template.lower()


def test_no_match_leaves_the_request_unnamed():
    assert route_template(SimpleNamespace(resolver_match=None)) is None  # a 404
    assert route_template(SimpleNamespace()) is None  # middleware before resolving


def test_wsgi_requests_get_it_in_the_environ_and_asgi_requests_in_the_scope():
    match = SimpleNamespace(route="users/<int:user_id>")
    wsgi = SimpleNamespace(resolver_match=match, META={})
    asgi = SimpleNamespace(resolver_match=match, META={}, scope={"type": "http"})
    for request in (wsgi, asgi):
        assert route_middleware(lambda r: "response")(request) == "response"
    assert wsgi.META == {ROUTE_ENVIRON_KEY: "/users/<int:user_id>"}
    assert asgi.scope[ROUTE_ENVIRON_KEY] == "/users/<int:user_id>" and asgi.META == {}
