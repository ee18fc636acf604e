"""`make bench`: every gatescope overhead benchmark, written as one markdown report."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import breakdown  # noqa: E402
import exportbench  # noqa: E402
import inprocess  # noqa: E402
import instructions  # noqa: E402
import overhttp  # noqa: E402
import pinning  # noqa: E402
import statsbench  # noqa: E402
from variants import VARIANTS  # noqa: E402

PACKAGES = ("gatescope", "gatescope-prometheus", "gatescope-jaeger", "gatescope-zipkin",
            "starlette", "httpx", "uvicorn", "uvloop", "httptools", "prometheus-client",
            "opentelemetry-sdk", "opentelemetry-instrumentation-asgi",
            "opentelemetry-instrumentation-httpx")

# Sizes: (full run, --smoke run for `make test`).
SIZES = {
    "router_iterations": (20_000, 20), "gateway_iterations": (3_000, 5), "rounds": (7, 2),
    "http_seconds": (3, 1), "http_rounds": (7, 1), "export_spans": (100_000, 200),
    "record_calls": (300_000, 200), "render_repeats": (10, 1), "rss_requests": (1_000_000, 400),
    "breakdown_requests": (20_000, 50),
}
# Worker files summed in the many-workers `/metrics` case (this one, and copies of it).
SCRAPE_FILES = 4
# (scenario, variant) pairs whose time is broken down by thread and by function.
BREAKDOWNS = (("router", "gatescope-0"), ("router", "gatescope-100"),
              ("router", "gatescope-100-process"), ("gateway", "gatescope-0"),
              ("gateway", "gatescope-100"), ("gateway", "gatescope-100-process"))
# The sample_rate 100 variants: spans encoded on an export thread, or in a helper process.
HUNDREDS = (("gatescope-100", ""), ("gatescope-100-process", " (export_process)"))


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def measure(smoke: bool, sections: set[str]) -> dict[str, Any]:
    size = {key: value[1 if smoke else 0] for key, value in SIZES.items()}
    results: dict[str, Any] = {"sizes": size}
    if "inprocess" in sections:
        rows = inprocess.run("router", VARIANTS, size["router_iterations"], size["rounds"])
        rows += inprocess.run("gateway", VARIANTS, size["gateway_iterations"], size["rounds"])
        results["inprocess"] = [asdict(row) for row in rows]
    if "http" in sections:
        if overhttp.wrk_path() is None:
            results["http_skipped"] = "wrk is not installed (apt-get install wrk)"
        else:
            rows_http = []
            for scenario in ("router", "gateway"):
                rows_http += overhttp.run(scenario, VARIANTS, size["http_seconds"],
                                          size["http_rounds"], connections=8)
            results["http"] = [asdict(row) for row in rows_http]
    if "export" in sections:
        results["export"] = [asdict(exportbench.run(name, size["export_spans"],
                                                    chunk=min(5000, size["export_spans"])))
                             for name in ("jaeger", "zipkin")]
    if "stats" in sections:
        with pinning.pinned():
            results["record"] = [asdict(statsbench.record_cost(n, size["record_calls"]))
                                 for n in (1, 100, 10_000)]
            results["rss"] = [asdict(row) for row in statsbench.rss_under_random_paths(
                size["rss_requests"])]
            results["scrape"] = [asdict(statsbench.scrape_ms_fresh(
                1000, size["render_repeats"], multiprocess, changed, files))
                for multiprocess, files in ((False, 1), (True, 1), (True, SCRAPE_FILES))
                for changed in (True, False)]
    if "instructions" in sections:
        if not smoke and instructions.valgrind_path() is None:
            results["instructions_skipped"] = "valgrind is not installed (apt-get install valgrind)"
        results["instructions"] = [asdict(row) for row in instructions.run(smoke=smoke)]
    if "breakdown" in sections:
        requests = size["breakdown_requests"]
        results["threads"] = [asdict(breakdown.thread_split(scenario, variant, requests))
                              for scenario, variant in BREAKDOWNS]
        results["functions"] = {
            f"{scenario} {variant}": [asdict(row) for row in breakdown.top_functions(
                scenario, variant, requests // 4 if scenario == "router" else requests // 20)]
            for scenario, variant in BREAKDOWNS}
    return results


def _inprocess_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| scenario | variant | median µs/request | overhead µs | ratio to bare (min-max) |",
           "|---|---|---:|---:|---|"]
    for row in rows:
        out.append(f"| {row['scenario']} | {row['variant']} | {row['median_us']:.2f} | "
                   f"{row['overhead_us']:+.2f} | {row['ratio']:.3f} "
                   f"({row['ratio_min']:.3f}-{row['ratio_max']:.3f}) |")
    return out


def _targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets, as ratios within this run."""
    out = ["| target | measured | met |", "|---|---:|---|"]

    def line(label: str, value: float, ok: bool) -> None:
        out.append(f"| {label} | {value:.3f} | {'yes' if ok else 'no'} |")

    rows = {(r["scenario"], r["variant"]): r for r in results.get("inprocess", [])}
    if rows:
        prom = rows[("router", "prometheus_client")]["overhead_us"]
        g0 = rows[("router", "gatescope-0")]
        line("router overhead at 0 / prometheus_client's (<= 0.7)", g0["overhead_us"] / prom,
             g0["overhead_us"] <= 0.7 * prom)
        for variant, label in HUNDREDS:
            g100 = rows[("router", variant)]
            line(f"router overhead at 100{label} / prometheus_client's (<= 1.5)",
                 g100["overhead_us"] / prom, g100["overhead_us"] <= 1.5 * prom)
        for variant, label, otel in (("gatescope-0", "0", "otel-off"),
                                     *((v, f"100{x}", "otel-on") for v, x in HUNDREDS)):
            mine = rows[("router", variant)]["overhead_us"]
            theirs = rows[("router", otel)]["overhead_us"]
            line(f"router overhead at {label} / OpenTelemetry's (<= 0.05)", mine / theirs,
                 mine <= theirs / 20)
        line("gateway at 0 / bare gateway (<= 1.08)", rows[("gateway", "gatescope-0")]["ratio"],
             rows[("gateway", "gatescope-0")]["ratio"] <= 1.08)
        for variant, label in HUNDREDS:
            ratio = rows[("gateway", variant)]["ratio"]
            line(f"gateway at 100{label} / bare gateway (<= 1.15)", ratio, ratio <= 1.15)
    http = {(r["scenario"], r["variant"]): r for r in results.get("http", [])}
    for scenario, rate, floor in (("router", "0", 0.90), ("router", "100", 0.80),
                                  ("router", "100-process", 0.80), ("gateway", "0", 0.97),
                                  ("gateway", "100", 0.93), ("gateway", "100-process", 0.93)):
        row = http.get((scenario, f"gatescope-{rate}"))
        if row:
            label = rate.replace("-process", " (export_process)")
            line(f"HTTP {scenario} throughput at {label} / bare (>= {floor})", row["ratio"],
                 row["ratio"] >= floor)
    for row in results.get("export", []):
        line(f"{row['exporter']} export spans/s (>= 50,000)", row["spans_per_s"],
             row["spans_per_s"] >= 50_000)
    for row in results.get("scrape", []):
        if row["rows"] == "memory" and row["changed"]:
            line("/metrics ms, 1,000 tag sets, every row changed (< 50)", row["ms"],
                 row["ms"] < 50)
    return out


def _floors(results: dict[str, Any]) -> list[str]:
    """What no instrumentation of these apps can go under, next to the targets that need it."""
    rows = {(r["scenario"], r["variant"]): r for r in results.get("inprocess", [])}
    if ("router", "floor") not in rows:
        return []
    out = ["## Floors", "",
           "`floor` = the least a layer can do: time the request, learn its status, count body "
           "bytes (router); plus fresh ids in the four propagation headers gatescope sends "
           "(gateway). Nothing is aggregated or traced.", "",
           "| scenario | variant | overhead µs | ratio to bare |", "|---|---|---:|---:|"]
    for scenario in ("router", "gateway"):
        for variant in ("floor", "gatescope-0", "gatescope-100", "gatescope-100-process"):
            row = rows[(scenario, variant)]
            out.append(f"| {scenario} | {variant} | {row['overhead_us']:+.2f} | {row['ratio']:.3f} |")
    encode = {row["exporter"]: row["us_per_span"] for row in results.get("export", [])}
    if "jaeger" in encode:
        prom = rows[("router", "prometheus_client")]["overhead_us"]
        zero = rows[("router", "gatescope-0")]["overhead_us"]
        bare = rows[("gateway", "bare")]["median_us"]
        gateway_zero = rows[("gateway", "gatescope-0")]["overhead_us"]
        process = rows[("router", "gatescope-100-process")]["overhead_us"]
        gateway_process = rows[("gateway", "gatescope-100-process")]["overhead_us"]
        out += ["", "At sample_rate 100 without `export_process` every span is also encoded and "
                f"sent ({encode['jaeger']:.1f} µs/span for jaeger, export section) on a thread "
                "that shares the GIL:", "",
                f"- router (1 span): gatescope-0's overhead + 1 encode = "
                f"{zero + encode['jaeger']:.1f} µs before any span object exists; the target "
                f"(1.5x prometheus_client) allows {1.5 * prom:.1f} µs.",
                f"- gateway (4 spans: router, pipe, backend, client): gatescope-0's overhead + 4 "
                f"encodes = {(gateway_zero + 4 * encode['jaeger']) / bare + 1:.3f}x bare; the "
                "target allows 1.15x.", "",
                "With `export_process` the encoding happens in a helper process, so these are not "
                "floors for `gatescope-100-process`: what remains in the server is the span "
                f"itself and its handover, {process - zero:.1f} µs per router request over rate "
                f"0 ({process:.1f} µs in all, against {1.5 * prom:.1f} µs allowed) and "
                f"{gateway_process - gateway_zero:.1f} µs per gateway request of 4 spans. The "
                f"gateway target at 100 leaves {0.15 * bare:.1f} µs for everything; "
                f"gatescope-0 alone takes {gateway_zero:.1f} µs of it (the floor, "
                f"{rows[('gateway', 'floor')]['overhead_us']:.1f} µs, included)."]
    out.append("")
    return out


def _commit() -> str:
    found = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, check=False)
    return found.stdout.strip() or "unknown"


def report(results: dict[str, Any], command: str) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = ["# gatescope benchmarks", "",
           f"- date: {now}", f"- machine: {_machine()}", f"- command: `{command}`", f"- commit: {_commit()}",
           f"- duration: {results['seconds']:.0f} s", f"- sizes: {results['sizes']}",
           f"- CPU placement: {pinning.describe() or 'not pinned (one CPU or no /proc)'}",
           "- versions: " + ", ".join(f"{k} {v}" for k, v in _versions().items()), ""]
    out += ["## Targets (ratios within this run)", "", *_targets(results), ""]
    if "inprocess" in results:
        out += ["## In process (synthetic ASGI scope/receive/send, variants interleaved)", "",
                "router = a Starlette route; gateway = router + pipe + backend: httpx through "
                "httpx.ASGITransport to an in-process Starlette upstream.", ""]
        out += [*_inprocess_table(results["inprocess"]), ""]
    if "http" in results:
        out += ["## Over HTTP (uvicorn, 1 worker, uvloop + httptools; wrk -t1 -c8)", "",
                "Each round starts a fresh server per variant (1 s warm-up, then the measured "
                "load), so the process-to-process spread of a few percent is sampled, not fixed "
                "into every round.", "",
                "| scenario | variant | median requests/s | ratio to bare (min-max) |",
                "|---|---|---:|---|"]
        for row in results["http"]:
            out.append(f"| {row['scenario']} | {row['variant']} | {row['rps']:.0f} | "
                       f"{row['ratio']:.3f} ({row['ratio_min']:.3f}-{row['ratio_max']:.3f}) |")
        out.append("")
    elif "http_skipped" in results:
        out += [f"Over HTTP: skipped: {results['http_skipped']}", ""]
    if "export" in results:
        out += ["## Export worker (sample_rate 100, receivers in their own process)", "",
                "This process, its export worker included, runs on one CPU; the receiver beside "
                "it.", "",
                "| exporter | spans | spans/s | µs/span | lost | RSS growth KiB |",
                "|---|---:|---:|---:|---:|---:|"]
        for row in results["export"]:
            out.append(f"| {row['exporter']} | {row['spans']} | {row['spans_per_s']:.0f} | "
                       f"{row['us_per_span']:.1f} | {row['dropped']} | {row['rss_growth_kib']} |")
        out.append("")
    out += _floors(results)
    if "instructions" in results:
        out += ["## Instructions and collections per request", "",
                "Counted, not timed (`benchmarks/instructions.py`): each variant in a fresh "
                "interpreter under valgrind's cachegrind, run for two numbers of requests after "
                "the same warm-up; the difference per request. The host's load does not move "
                "these counts, so they show a code change's effect where timings cannot. "
                "Instructions are not time: D1 misses are the level-1 data-cache misses "
                "cachegrind simulates for a fixed 32 KiB, 8-way cache; each one costs a request "
                "several ns that its instructions do not show. Collections: the "
                "garbage collector's runs per 1,000 requests, by generation (a generation-2 run "
                "walks every object of the process). `gatescope-100-unexported` has no trace "
                "exporter: its spans are made, ended and queued, then dropped, so it splits "
                "`gatescope-100` into the sampled request path and the export threads' work.",
                ""]
        if "instructions_skipped" in results:
            out += [f"Instructions: skipped: {results['instructions_skipped']}", ""]
        out += [*instructions.table([instructions.Row(**row)
                                     for row in results["instructions"]]), ""]
    if "threads" in results:
        out += ["## Where the time goes", "",
                "CPU per request on each thread (per-thread CPU clocks; export workers run on their own "
                "thread but share the GIL, so their CPU is paid in the request's wall time), and in "
                f"the `export_process` helpers ({breakdown.HELPERS}: beside the server, on its "
                "own CPU here):", "",
                "| scenario | variant | wall µs/request | CPU µs/request by thread |", "|---|---|---:|---|"]
        for row in results["threads"]:
            cpu = ", ".join(f"{name} {us:.1f}" for name, us in sorted(row["cpu_us"].items()))
            out.append(f"| {row['scenario']} | {row['variant']} | {row['wall_us']:.1f} | {cpu} |")
        out += ["", "gatescope functions by self time per request under cProfile (the profiler "
                "inflates every call alike: read the shares, not the µs):", ""]
        for label, rows in results["functions"].items():
            out += [f"`{label}`:", "", "| function | calls/request | self µs/request |",
                    "|---|---:|---:|"]
            out += [f"| {row['function']} | {row['calls_per_request']:.1f} | {row['self_us']:.2f} |"
                    for row in rows]
            out.append("")
    if "record" in results:
        out += ["## Aggregation", "",
                "Per `record` in a tight loop; multi-process: rows in this process's shared file "
                "(`GATESCOPE_MULTIPROC_DIR`): each record a ring entry at once, folded 256 at a time; "
                "after a batch of more than 32 tag sets, written through to its rows.", "",
                "| tag sets | µs per server record | multi-process |", "|---:|---:|---:|"]
        out += [f"| {row['tag_sets']} | {row['us_per_record']:.2f} | "
                f"{row['us_per_record_multiprocess']:.2f} |" for row in results["record"]]
        out += ["", "`/metrics` with 1,000 server and 1,000 client tag sets (prometheus plugin: "
                "the snapshot and the text body, as the server builds it; then gzip level 1, "
                "which Prometheus asks for and zlib runs without the GIL). Changed: one more "
                "record per tag set before each scrape, so every row's text is made anew; "
                "unchanged: rows reuse the text of the last scrape. Multi-process: rows in "
                "worker files, which the snapshot reads back and sums (one file, or this one "
                f"and {SCRAPE_FILES - 1} copies standing for other workers that saw the same "
                "paths).", "",
                "| rows | worker files | every row changed | ms | gzip ms | body MiB |",
                "|---|---:|---|---:|---:|---:|"]
        out += [f"| {row['rows']} | {row['files'] if row['rows'] != 'memory' else ''} | "
                f"{'yes' if row['changed'] else 'no'} | {row['ms']:.1f} | "
                f"{row['gzip_ms']:.1f} | {row['body_mib']:.1f} |"
                for row in results["scrape"]]
        out += ["", "RSS with random paths (tag_path on, path_aggregation off, max_tag_sets 2000):",
                "", "| requests | RSS MiB | rows kept | records folded |", "|---:|---:|---:|---:|"]
        out += [f"| {row['requests']} | {row['rss_mib']:.1f} | {row['rows']} | {row['folded']} |"
                for row in results["rss"]]
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few iterations of everything")
    parser.add_argument("--sections",
                        default="inprocess,http,export,stats,instructions,breakdown")
    parser.add_argument("--out", default=str(HERE / "results" / "latest.md"))
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    started = time.monotonic()
    results = measure(args.smoke, set(args.sections.split(",")))
    results["seconds"] = time.monotonic() - started
    command = "make bench" if not args.smoke else "python benchmarks/run.py --smoke"
    text = report(results, command)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(text)


if __name__ == "__main__":
    main()
