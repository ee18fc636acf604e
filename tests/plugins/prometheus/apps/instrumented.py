"""A WSGI app and an ASGI app instrumented with gatescope; each answers with its worker's pid.

The prometheus port and tag options come from the environment so the multi-worker tests can run
the same module under gunicorn and uvicorn.
"""

from __future__ import annotations

import json
import os

from gatescope import Telemetry

SECTION = json.loads(os.environ.get("GATESCOPE_TEST_PROMETHEUS", '{"port": 0}'))
DOCUMENT = {"version": 3, "extra_config": {"telemetry/opencensus": {
    "exporters": {"prometheus": SECTION}}}}

telemetry = Telemetry.from_dict(DOCUMENT)


def _wsgi(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def _asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


wsgi_app = telemetry.wsgi(_wsgi)
asgi_app = telemetry.asgi(_asgi)
