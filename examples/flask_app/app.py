"""Flask quick start: the route template comes from Flask's url_rule."""

import argparse
import logging
from pathlib import Path

import gatescope
from flask import Flask
from werkzeug.serving import run_simple

telemetry = gatescope.Telemetry.from_file(Path(__file__).with_name("krakend.json"))
flask_app = Flask(__name__)


@flask_app.get("/users/<int:user_id>")
def read_user(user_id: int) -> dict[str, int]:
    with telemetry.pipe("/users/{user_id}"):
        return {"user_id": user_id}


app = telemetry.wsgi(flask_app)  # metrics and spans named "/users/{user_id}"

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    logging.basicConfig(level=logging.INFO)
    run_simple("127.0.0.1", parser.parse_args().port, app, threaded=True)
    telemetry.shutdown(5)
