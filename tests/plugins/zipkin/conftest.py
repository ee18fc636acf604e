"""A Zipkin-like collector on 127.0.0.1 that validates every body against the official
`ListOfSpans` schema (../shared/reference/zipkin-api/zipkin2-api.yaml), never our own encoder."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from gatescope import testing
from gatescope.testing import LocalHTTPServer, QuietHandler
from gatescope.testing import Upstream as Backend

SPEC = (Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "zipkin-api"
        / "zipkin2-api.yaml")
ENDPOINT = "/users/{id}"
URL_PATTERN = "/u/{id}"


def _list_of_spans_validator() -> jsonschema.protocols.Validator:
    spec = yaml.safe_load(SPEC.read_text())
    # Swagger 2.0 definitions are JSON Schema draft 4; `$ref`s point at #/definitions/...
    schema = {"$ref": "#/definitions/ListOfSpans", "definitions": spec["definitions"]}
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


VALIDATOR = _list_of_spans_validator()


def validate(body: Any) -> None:
    """Raise when `body` is not a ListOfSpans (with ipv4/ipv6 formats and full-match ids)."""
    VALIDATOR.validate(body)
    for span in body:  # the spec's patterns are unanchored; hold ids to their documented form
        assert len(span["traceId"]) in (16, 32) and span["traceId"] == span["traceId"].lower()
        int(span["traceId"], 16)
        int(span["id"], 16)


class FakeZipkin(LocalHTTPServer):
    """Accepts `POST /api/v2/spans` with JSON that validates, answers 202; else 400."""

    def __init__(self) -> None:
        self.bodies: list[list[dict[str, Any]]] = []
        self.requests: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self.fail_with: list[int] = []
        self.delay = 0.0
        self.lock = threading.Lock()
        zipkin = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if zipkin.delay:
                    time.sleep(zipkin.delay)
                with zipkin.lock:
                    zipkin.requests.append({"path": self.path, "headers": dict(self.headers)})
                    forced = zipkin.fail_with.pop(0) if zipkin.fail_with else None
                if forced is not None:
                    return self.answer(forced)
                try:
                    assert self.path == "/api/v2/spans"
                    assert self.headers.get("Content-Type", "").startswith("application/json")
                    spans = json.loads(body)
                    validate(spans)
                except Exception as exc:
                    with zipkin.lock:
                        zipkin.rejected.append(f"{type(exc).__name__}: {exc}"[:500])
                    return self.answer(400)
                with zipkin.lock:
                    zipkin.bodies.append(spans)
                self.answer(202)

            def answer(self, status: int) -> None:
                with contextlib.suppress(OSError):  # the client gave up (timeout tests)
                    super().answer(status)

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}/api/v2/spans"

    def spans(self) -> list[dict[str, Any]]:
        with self.lock:
            return [span for body in self.bodies for span in body]


@pytest.fixture
def zipkin() -> Iterator[FakeZipkin]:
    server = FakeZipkin()
    yield server
    server.close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    yield server
    server.close()


def three_layer_request(telemetry: Any, backend: Backend, path: str = "/users/42") -> int:
    """One request through the three layers to a real upstream (gatescope.testing's helper)."""
    return testing.three_layer_request(telemetry, backend, path, endpoint=ENDPOINT,
                                       url_pattern=URL_PATTERN)


def layered_document(exporter: dict[str, Any]) -> dict[str, Any]:
    """A krakend.json with one endpoint and backend, every request sampled."""
    from gatescope.testing import krakend_config

    return krakend_config(
        {"zipkin": exporter}, sample_rate=100,
        endpoints=[{"endpoint": ENDPOINT, "backend": [{"url_pattern": URL_PATTERN}]}],
    )


@pytest.fixture
def wire() -> ModuleType:
    """This module: the validator and helpers above, for tests (they cannot import a conftest)."""
    return sys.modules[__name__]
