"""Plain WSGI quick start: no framework, so the endpoint templates are passed explicitly."""

import argparse
import contextlib
import logging
from pathlib import Path
from wsgiref.simple_server import make_server

import gatescope

telemetry = gatescope.Telemetry.from_file(Path(__file__).with_name("krakend.json"))


def hello(environ, start_response):
    name = environ["PATH_INFO"].rsplit("/", 1)[-1]
    body = f"hello {name}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


# Requests matching the template are named by it; anything else is "unknown route".
app = telemetry.wsgi(hello, endpoints=["/hello/{name}"])

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    logging.basicConfig(level=logging.INFO)
    with make_server("127.0.0.1", parser.parse_args().port, app) as server, \
            contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    telemetry.shutdown(5)
