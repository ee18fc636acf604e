"""RSS before/after 1,000,000 requests with random paths through the real WSGI router middleware.

`tag_path` with `path_aggregation: off` turns every request path into a label value; the core's
`max_tag_sets` cap keeps memory flat. Each configuration runs in a fresh interpreter so the
numbers do not mix:

    .venv/bin/python benchmarks/cardinality_rss.py                       # default cap (2000)
    .venv/bin/python benchmarks/cardinality_rss.py --requests 200000     # quicker
    .venv/bin/python benchmarks/cardinality_rss.py --max-tag-sets 1000000 --requests 200000
                                                   # cap effectively off: memory grows
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import subprocess
import sys
import time
from typing import Any

NAMESPACE = "telemetry/opencensus"
WARMUP = 20_000  # requests before the first RSS reading: caches and the capped rows are full


def rss_kib() -> int:
    """Resident set size now (Linux /proc), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not found in /proc/self/status")


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def measure(requests: int, max_tag_sets: int) -> dict[str, Any]:
    """Drive `WARMUP + requests` random-path requests; RSS after warm-up and at the end."""
    from gatescope.runtime import Telemetry

    telemetry = Telemetry.from_dict({"version": 3, "extra_config": {NAMESPACE: {
        "sample_rate": 0, "max_tag_sets": max_tag_sets,
        "exporters": {"prometheus": {"port": 0, "listen_ip": "127.0.0.1", "tag_path": True}}}},
        "endpoints": [{"endpoint": "/items/{id}",
                       "extra_config": {NAMESPACE: {"path_aggregation": "off"}}}]})
    app = telemetry.wsgi(hello)
    base = {"REQUEST_METHOD": "GET", "SERVER_NAME": "bench", "SERVER_PORT": "80",
            "HTTP_HOST": "bench", "QUERY_STRING": "", "wsgi.url_scheme": "http"}
    rng = random.Random(1).getrandbits

    def drive(count: int) -> None:
        for _ in range(count):
            environ = dict(base, PATH_INFO=f"/items/{rng(64):016x}", **{"wsgi.input": io.BytesIO()})
            result = app(environ, lambda status, headers, exc_info=None: None)
            for _chunk in result:
                pass
            result.close()

    drive(WARMUP)
    gc.collect()
    before = rss_kib()
    started = time.perf_counter()
    drive(requests)
    elapsed = time.perf_counter() - started
    gc.collect()
    after = rss_kib()
    data = telemetry.metrics().view("opencensus.io/http/server/request_count")
    rows = len(data.rows) if data is not None else 0
    total = sum(data.rows.values()) if data is not None else 0  # type: ignore[arg-type]
    telemetry.shutdown(2.0)
    return {"requests": requests, "max_tag_sets": max_tag_sets, "rss_before_kib": before,
            "rss_after_kib": after, "rss_growth_kib": after - before,
            "rows_per_view": rows, "counted": total, "us_per_request": elapsed / requests * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--max-tag-sets", type=int, default=2000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.requests, args.max_tag_sets)))
        return 0
    command = [sys.executable, os.path.abspath(__file__), "--child", "--requests",
               str(args.requests), "--max-tag-sets", str(args.max_tag_sets)]
    result = json.loads(subprocess.run(command, check=True, capture_output=True,
                                       text=True).stdout)
    print(f"requests={result['requests']:,} max_tag_sets={result['max_tag_sets']} "
          f"rows/view={result['rows_per_view']} counted={result['counted']:,}")
    print(f"RSS before {result['rss_before_kib']:,} KiB, after {result['rss_after_kib']:,} KiB, "
          f"growth {result['rss_growth_kib']:,} KiB; {result['us_per_request']:.1f} µs/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
