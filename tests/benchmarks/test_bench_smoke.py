"""`benchmarks/run.py --smoke`: every variant and section produces a positive row (no timings)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = {"bare", "floor", "prometheus_client", "gatescope-0", "gatescope-100",
            "gatescope-100-process", "otel-off", "otel-on"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    try:
        import opentelemetry.instrumentation.asgi
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("OpenTelemetry is missing: pip install -r benchmarks/requirements.txt")
        pytest.skip("OpenTelemetry is missing: pip install -r benchmarks/requirements.txt")
    out = tmp_path_factory.mktemp("bench")
    sections = "inprocess,export,stats,instructions,breakdown"
    if shutil.which("wrk"):
        sections += ",http"
    elif os.environ.get("CI") == "true":
        pytest.fail("wrk is missing (.ci/apt/wrk.txt)")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke",
                    "--sections", sections, "--out", str(out / "report.md"),
                    "--json", str(out / "results.json")], check=True, timeout=180, cwd=ROOT)
    data = json.loads((out / "results.json").read_text())
    data["report"] = (out / "report.md").read_text()
    return data


def test_inprocess_has_a_positive_row_per_variant_and_scenario(results: dict) -> None:
    for scenario in ("router", "gateway"):
        rows = [r for r in results["inprocess"] if r["scenario"] == scenario]
        assert {r["variant"] for r in rows} == VARIANTS
        assert all(r["median_us"] > 0 and r["ratio"] > 0 for r in rows)
        assert next(r for r in rows if r["variant"] == "bare")["ratio"] == 1.0


def test_http_has_a_positive_row_per_variant(results: dict) -> None:
    if "http" not in results:
        pytest.skip("wrk is not installed: apt-get install wrk")
    for scenario in ("router", "gateway"):
        rows = [r for r in results["http"] if r["scenario"] == scenario]
        assert {r["variant"] for r in rows} == VARIANTS
        assert all(r["rps"] > 0 for r in rows)


def test_export_aggregation_and_memory_sections(results: dict) -> None:
    assert {r["exporter"] for r in results["export"]} == {"jaeger", "zipkin"}
    assert all(r["spans_per_s"] > 0 and r["dropped"] == 0 for r in results["export"])
    assert [r["tag_sets"] for r in results["record"]] == [1, 100, 10_000]
    assert all(r["us_per_record"] > 0 and r["us_per_record_multiprocess"] > 0
               for r in results["record"])
    assert {(r["rows"], r["files"], r["changed"]) for r in results["scrape"]} == {
        (rows, files, changed) for rows, files in (("memory", 1), ("multi-process", 1),
                                                   ("multi-process", 4))
        for changed in (True, False)}
    assert all(r["ms"] > 0 and r["gzip_ms"] > 0 and r["body_mib"] > 0 for r in results["scrape"])
    assert results["rss"] and all(r["rss_mib"] > 0 for r in results["rss"])


def test_report_is_a_markdown_table_with_versions(results: dict) -> None:
    report = results["report"]
    assert report.startswith("# gatescope benchmarks")
    assert "- versions: gatescope " in report and "opentelemetry-sdk 1." in report
    assert "| router | gatescope-0 |" in report


def test_breakdown_charges_cpu_to_threads_and_names_gatescope_functions(results: dict) -> None:
    splits = {(r["scenario"], r["variant"]): r for r in results["threads"]}
    assert set(splits) == {(scenario, variant) for scenario in ("router", "gateway")
                           for variant in ("gatescope-0", "gatescope-100", "gatescope-100-process")}
    assert all(r["wall_us"] > 0 and r["cpu_us"].get("MainThread", 0) > 0 for r in splits.values())
    for label, rows in results["functions"].items():
        assert rows, label
        assert all("gatescope" in row["function"] and row["calls_per_request"] > 0 for row in rows)
    assert "## Floors" in results["report"] and "| gateway | floor |" in results["report"]


def test_instructions_section_counts_collections_for_every_variant(results: dict) -> None:
    rows = {(r["scenario"], r["variant"]): r for r in results["instructions"]}
    assert set(rows) == {(scenario, variant) for scenario in ("router", "gateway")
                         for variant in VARIANTS - {"otel-off", "otel-on"}
                         | {"gatescope-100-unexported"}}
    assert all(r["instructions"] is None and r["d1_misses"] is None and len(r["collections"]) == 3
               for r in rows.values())
    assert "## Instructions and collections per request" in results["report"]


def test_instruction_counts_are_read_from_valgrinds_summary() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import instructions

    summary = ("==6237== \n==6237== I   refs:      877,414,035\n==6237== I1  misses:    "
               "12,345\n==6237== D1  misses:     20,781,793  ( 17,734,864 rd   + 3,046,929 wr)\n"
               "==6237== LLd misses:        588,683  (    102,242 rd   +   486,441 wr)\n")
    assert instructions._count(instructions._REFS, summary) == 877_414_035
    assert instructions._count(instructions._D1_MISSES, summary) == 20_781_793
    with pytest.raises(RuntimeError, match="valgrind's output"):
        instructions._count(instructions._D1_MISSES, "==6237== I   refs:      877,414,035\n")
    rows = [instructions.Row("router", "bare", 100_000.0, 1.0, (0.0, 0.0, 0.0), 2_000.0),
            instructions.Row("router", "prometheus_client", 140_000.0, 1.4, (1.0, 0.0, 0.0),
                             2_400.0),
            instructions.Row("router", "gatescope-0", 118_000.0, 1.18, (0.5, 0.0, 0.0), 2_210.4)]
    lines = instructions.table(rows)
    assert lines[-1] == ("| router | gatescope-0 | 118,000 | 1.180 | 0.450 | 2,210 | "
                         "0.50, 0.00, 0.00 |")


@pytest.mark.skipif(shutil.which("valgrind") is None,
                    reason="valgrind is not installed (apt-get install valgrind)")
def test_one_variant_counted_under_valgrind() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import instructions

    valgrind = shutil.which("valgrind")
    assert valgrind is not None
    counted, misses = instructions.count_instructions("router", "bare", 5, 25, valgrind)
    assert 10_000 < counted < 10_000_000  # a Starlette request's worth
    assert 10 < misses < counted / 10  # some of its loads and stores, far fewer than its steps


def test_the_unexported_variant_samples_every_request_and_exports_none() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import asyncio

    from inprocess import drive
    from variants import build

    built = build("router", "gatescope-100-unexported")
    try:
        tracer = built.app._tracer
        pipeline = tracer.sink.__self__  # the middleware's tracer queues into it
        assert pipeline.trace_workers == []  # prometheus only: nothing would encode a span
        ended: list = []
        queue = tracer.sink
        tracer.sink = lambda span: (ended.append(span.name), queue(span))
        asyncio.run(drive(built.app, 3))
        assert ended == ["/users/{id}"] * 3  # each request's span, queued to be dropped
    finally:
        built.close()
