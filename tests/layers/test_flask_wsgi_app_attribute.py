"""Wrapping `flask_app.wsgi_app` (Flask's documented middleware pattern) still names by url_rule."""

from __future__ import annotations

from flask import Flask
from gatescope.testing import exporter_of, krakend_config


def test_wrapping_wsgi_app_attribute_keeps_route_templates(gatescope_plugins):
    telemetry = gatescope_plugins.telemetry(krakend_config({"capture": {}}, sample_rate=100))
    app = Flask(__name__)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return str(item_id)

    app.wsgi_app = telemetry.wsgi(app.wsgi_app)  # type: ignore[method-assign]
    assert app.test_client().get("/items/7").data == b"7"
    assert telemetry.flush(5)
    (span,) = exporter_of(telemetry, "capture").spans  # recorded although the client never close()s
    assert span.name == "/items/{item_id}"
    assert telemetry.metrics().view("opencensus.io/http/server/request_count").rows == {(): 1}
