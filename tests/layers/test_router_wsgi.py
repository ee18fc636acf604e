"""Router layer on a real Flask app served by a real wsgiref server thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from flask import Flask, Response, stream_with_context
from gatescope.spans import KIND_SERVER, UNKNOWN
from layer_helpers import rows, spans_of


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None


def flask_app() -> Flask:
    app = Flask("layers")

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return "u" * user_id

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            yield "abc"
            yield "defg"
        return Response(stream_with_context(chunks()))

    return app


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[WSGIServer] = []

    def start(app: Any) -> str:
        server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_flask_views_spans_and_route_template(make_telemetry: Any, serve: Any) -> None:
    telemetry = make_telemetry(sample_rate=100, tag_path=True, tag_statuscode=True)
    base = serve(telemetry.wsgi(flask_app()))
    parent = {"X-B3-TraceId": "463ac35c9f6413ad48485a3953bb6124",
              "X-B3-SpanId": "a2fb4a1d1a96d312", "X-B3-Sampled": "1"}
    assert httpx.get(base + "/users/5", headers=parent).text == "uuuuu"
    assert httpx.get(base + "/stream").text == "abcdefg"
    assert httpx.get(base + "/boom").status_code == 500
    assert httpx.get(base + "/nowhere").status_code == 404
    # The server records after the last byte went out: the client may read it first.
    deadline = time.monotonic() + 5
    while sum(rows(telemetry.metrics(), "server/request_count").values()) < 4 \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    snap = telemetry.metrics()
    assert rows(snap, "server/request_count") == {
        ("/users/{user_id}", "200"): 1, ("/stream", "200"): 1, ("/boom", "500"): 1,
        ("unknown route", "404"): 1}
    assert rows(snap, "server/response_bytes")[("/users/{user_id}", "200")].sum == 5
    assert rows(snap, "server/response_bytes")[("/stream", "200")].sum == 7
    spans = {s.name: s for s in spans_of(telemetry)}
    assert set(spans) == {"/users/{user_id}", "/stream", "/boom", "unknown route"}
    user = spans["/users/{user_id}"]
    assert user.kind == KIND_SERVER and user.trace_id == "463ac35c9f6413ad48485a3953bb6124"
    assert user.parent_span_id == "a2fb4a1d1a96d312"
    assert user.attributes["http.path"] == "/users/5"
    assert user.attributes["http.host"].startswith("127.0.0.1:")
    assert spans["/boom"].status_code == UNKNOWN
    assert spans["/boom"].attributes["http.status_code"] == 500


def test_exception_escaping_the_wsgi_app_is_500_once_and_reraised(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=100, tag_statuscode=True)

    def broken(environ: Any, start_response: Any) -> Any:
        raise KeyError("gone")

    app = telemetry.wsgi(broken)
    with pytest.raises(KeyError, match="gone"):
        app({"PATH_INFO": "/x", "REQUEST_METHOD": "GET"}, lambda *a: None)
    assert rows(telemetry.metrics(), "server/request_count") == {("500",): 1}
    [span] = spans_of(telemetry)
    assert span.attributes["http.status_code"] == 500


def test_chunked_upload_counted_and_close_records_once(make_telemetry: Any) -> None:
    telemetry = make_telemetry(sample_rate=0)

    def upload(environ: Any, start_response: Any) -> Any:
        data = environ["wsgi.input"].read()
        start_response("201 Created", [("Content-Length", "2")])
        return [b"ok"] if data else [b"no"]

    import io
    app = telemetry.wsgi(upload)
    environ = {"PATH_INFO": "/up", "REQUEST_METHOD": "POST", "HTTP_TRANSFER_ENCODING": "chunked",
               "wsgi.input": io.BytesIO(b"123456789")}
    body = app(environ, lambda *a: None)
    assert b"".join(body) == b"ok"
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]
    snap = telemetry.metrics()
    assert rows(snap, "server/request_count") == {(): 1}
    assert rows(snap, "server/request_bytes")[()].sum == 9
    assert rows(snap, "server/response_count_by_status_code") == {("201",): 1}
