"""`make demo`: the demo backend and the gateway on 127.0.0.1, telemetry on the logger (and on
Prometheus when gatescope-prometheus is installed); runs until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import uvicorn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from backend import app as backend_app  # noqa: E402
from gateway import build_gateway  # noqa: E402


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _prometheus_installed() -> bool:
    return any(e.name == "prometheus" for e in entry_points(group="gatescope"))


def effective_config(backend_url: str, metrics_port: int | None) -> dict[str, Any]:
    """krakend.json with the backend hosts pointed at the running demo backend."""
    document: dict[str, Any] = json.loads((HERE / "krakend.json").read_text(encoding="utf-8"))
    for endpoint in document["endpoints"]:
        for backend in endpoint["backend"]:
            backend["host"] = [backend_url]
    if metrics_port is not None:
        exporters = document["extra_config"]["telemetry/opencensus"]["exporters"]
        exporters["prometheus"] = {"listen_ip": "127.0.0.1", "port": metrics_port, "namespace": "krakend",
                                   "tag_statuscode": True}
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8080)),
                        help="gateway port (0: any free port)")
    parser.add_argument("--backend-port", type=int,
                        default=int(os.environ.get("DEMO_BACKEND_PORT", 0)))
    parser.add_argument("--metrics-port", type=int,
                        default=int(os.environ.get("DEMO_METRICS_PORT", 9091)))
    parser.add_argument("--no-prometheus", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    backend_sock, gateway_sock = _listen(args.backend_port), _listen(args.port)
    backend_url = f"http://127.0.0.1:{backend_sock.getsockname()[1]}"
    gateway_url = f"http://127.0.0.1:{gateway_sock.getsockname()[1]}"
    prometheus = _prometheus_installed() and not args.no_prometheus
    document = effective_config(backend_url, args.metrics_port if prometheus else None)
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "krakend.json"
        config_path.write_text(json.dumps(document, indent=2), encoding="utf-8")
        app, telemetry = build_gateway(config_path)

    backend = uvicorn.Server(uvicorn.Config(backend_app, log_level="warning", lifespan="off"))
    threading.Thread(target=backend.run, kwargs={"sockets": [backend_sock]}, daemon=True).start()

    print(f"gatescope demo gateway on {gateway_url} (backend {backend_url})", flush=True)
    print("Try:", flush=True)
    print(f"  curl {gateway_url}/users/1          # two backends merged (groups user, posts)")
    print(f"  curl {gateway_url}/status/503       # a failing backend: incomplete response")
    if prometheus:
        print(f"  curl http://127.0.0.1:{args.metrics_port}/metrics   # Prometheus exporter")
    else:
        print("  (pip install gatescope-prometheus for /metrics on 127.0.0.1:9091)")
    print("Spans and views are logged below (views every 10 s). Ctrl-C to stop.", flush=True)
    gateway = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        gateway.run(sockets=[gateway_sock])
    finally:
        backend.should_exit = True
        telemetry.shutdown(5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
