"""What a scrape shows: KrakenD's names, labels per tag_* option, OpenCensus buckets, HELP."""

from __future__ import annotations

import re
import subprocess

import pytest
from gatescope.metrics import LATENCY_BOUNDS
from gatescope.testing import exporter_of, krakend_config
from gatescope_prometheus import go_float, sanitize
from prometheus_testlib import need_binary, samples, scrape

# Go's strconv.FormatFloat(b, 'g', -1, 64), as KrakenD's client_golang renders `le`.
LATENCY_LE = ["1", "2", "3", "4", "5", "6", "8", "10", "13", "16", "20", "25", "30", "40", "50",
              "65", "80", "100", "130", "160", "200", "250", "300", "400", "500", "650", "800",
              "1000", "2000", "5000", "10000", "20000", "50000", "100000"]
SIZE_LE = ["1024", "2048", "4096", "16384", "65536", "262144", "1.048576e+06", "4.194304e+06",
           "1.6777216e+07", "6.7108864e+07", "2.68435456e+08", "1.073741824e+09",
           "4.294967296e+09"]


def start(harness, **prometheus):
    section = {"port": 0, "listen_ip": "127.0.0.1", **prometheus}
    telemetry = harness.telemetry(krakend_config({"prometheus": section}))
    return telemetry, exporter_of(telemetry, "prometheus")


def block(text: str, name: str) -> str:
    """The HELP/TYPE lines and samples of one family, as served."""
    lines = [line for line in text.splitlines()
             if re.match(rf"(# (HELP|TYPE) )?{re.escape(name)}(_bucket|_sum|_count)?[ {{]", line)]
    return "\n".join(lines) + "\n"


def test_go_float_matches_strconv_g() -> None:
    assert [go_float(b) for b in LATENCY_BOUNDS] == LATENCY_LE
    assert go_float(0.5) == "0.5" and go_float(0.0001) == "0.0001" and go_float(0.00001) == "1e-05"
    assert go_float(123456.5) == "123456.5" and go_float(1e6) == "1e+06"
    assert go_float(float("inf")) == "+Inf" and go_float(-2.5) == "-2.5"


def test_sanitize_is_opencensus_gos() -> None:
    assert sanitize("opencensus.io/http/server/latency") == "opencensus_io_http_server_latency"
    assert sanitize("http.status") == "http_status"
    assert sanitize("0abc") == "key_0abc" and sanitize("_x") == "key_x"
    assert sanitize("/x") == "key_x" and sanitize("a" * 101) == "a" * 100


def test_latency_histogram_exactly(gatescope_plugins) -> None:
    telemetry, exporter = start(gatescope_plugins, namespace="krakend", tag_method=True,
                                tag_statuscode=True)
    # Values on the bounds go to the next bucket (OpenCensus: [lower, upper)).
    for value in (0.5, 1, 1.5, 2, 1000, 200000):
        telemetry.kit.server.record("h", "/a", "GET", "200", 10, 2048, value)
    text = scrape(exporter.port)
    cumulative = {"1": 1, "2": 3, "3": 4}
    expected = [
        "# HELP krakend_opencensus_io_http_server_latency Latency distribution of HTTP requests",
        "# TYPE krakend_opencensus_io_http_server_latency histogram",
    ]
    running = 0
    for le in LATENCY_LE:
        running = cumulative.get(le, running if le not in ("2000",) else 5)
        expected.append("krakend_opencensus_io_http_server_latency_bucket"
                        f'{{http_method="GET",http_status="200",le="{le}"}} {float(running)}')
    expected += [
        'krakend_opencensus_io_http_server_latency_bucket{http_method="GET",http_status="200",'
        'le="+Inf"} 6.0',
        'krakend_opencensus_io_http_server_latency_count{http_method="GET",http_status="200"} 6.0',
        'krakend_opencensus_io_http_server_latency_sum{http_method="GET",http_status="200"} '
        "201005.0",
    ]
    assert block(text, "krakend_opencensus_io_http_server_latency") == "\n".join(expected) + "\n"


def test_counts_keep_krakends_name_without_total(gatescope_plugins) -> None:
    telemetry, exporter = start(gatescope_plugins, namespace="krakend")
    for status in ("200", "200", "404"):
        telemetry.kit.server.record("h", "/a", "GET", status, 0, 0, 3)
    telemetry.kit.client.record("up", "/b", "POST", "201", 5, 5000, 7)
    text = scrape(exporter.port)
    assert block(text, "krakend_opencensus_io_http_server_request_count") == (
        "# HELP krakend_opencensus_io_http_server_request_count Count of HTTP requests started\n"
        "# TYPE krakend_opencensus_io_http_server_request_count untyped\n"
        "krakend_opencensus_io_http_server_request_count 3.0\n")
    assert block(text, "krakend_opencensus_io_http_server_response_count_by_status_code") == (
        "# HELP krakend_opencensus_io_http_server_response_count_by_status_code Server response "
        "count by status code\n"
        "# TYPE krakend_opencensus_io_http_server_response_count_by_status_code untyped\n"
        'krakend_opencensus_io_http_server_response_count_by_status_code{http_status="200"} 2.0\n'
        'krakend_opencensus_io_http_server_response_count_by_status_code{http_status="404"} 1.0\n')
    assert block(text, "krakend_opencensus_io_http_client_completed_count") == (
        "# HELP krakend_opencensus_io_http_client_completed_count Count of completed requests, by "
        "HTTP method and response status\n"
        "# TYPE krakend_opencensus_io_http_client_completed_count untyped\n"
        'krakend_opencensus_io_http_client_completed_count{http_client_method="POST",'
        'http_client_status="201"} 1.0\n')
    received = block(text, "krakend_opencensus_io_http_client_received_bytes").splitlines()
    assert [re.search(r'le="([^"]+)"', line).group(1) for line in received if "_bucket" in line] \
        == [*SIZE_LE, "+Inf"]
    assert "krakend_opencensus_io_http_client_roundtrip_latency_count{" in text
    assert "_total" not in block(text, "krakend_opencensus_io_http_server_request_count")


def test_no_namespace_means_no_prefix(gatescope_plugins) -> None:
    telemetry, exporter = start(gatescope_plugins)
    telemetry.kit.server.record("h", "/a", "GET", "200", 0, 0, 3)
    assert "\nopencensus_io_http_server_request_count 1.0\n" in scrape(exporter.port)


@pytest.mark.parametrize(("options", "server_labels", "client_labels"), [
    ({}, (), ("http_client_method", "http_client_status")),
    ({"tag_host": True}, ("http_host",), ("http_client_host", "http_client_method",
                                          "http_client_status")),
    ({"tag_path": True}, ("http_path",), ("http_client_method", "http_client_path",
                                          "http_client_status")),
    ({"tag_method": True}, ("http_method",), ("http_client_method", "http_client_status")),
    ({"tag_statuscode": True}, ("http_status",), ("http_client_method", "http_client_status")),
    ({"tag_host": True, "tag_path": True, "tag_method": True, "tag_statuscode": True},
     ("http_host", "http_method", "http_path", "http_status"),
     ("http_client_host", "http_client_method", "http_client_path", "http_client_status")),
])
def test_label_sets_follow_tag_options(gatescope_plugins, options, server_labels,
                                       client_labels) -> None:
    telemetry, exporter = start(gatescope_plugins, namespace="krakend", **options)
    telemetry.kit.server.record("h", "/a", "GET", "200", 0, 0, 3)
    telemetry.kit.client.record("u", "/b", "GET", "200", 0, 0, 3)
    found = samples(scrape(exporter.port))
    labels = {name: tuple(k for k, _ in key) for name, key in found}
    assert labels["krakend_opencensus_io_http_server_request_count"] == server_labels
    assert labels["krakend_opencensus_io_http_server_latency_count"] == server_labels
    assert labels["krakend_opencensus_io_http_client_completed_count"] == client_labels


def test_unknown_tag_exports_as_empty_string(gatescope_plugins) -> None:
    telemetry, exporter = start(gatescope_plugins, namespace="krakend", tag_host=True)
    telemetry.kit.server.record("", "/a", "GET", "200", 0, 0, 3)
    assert 'krakend_opencensus_io_http_server_request_count{http_host=""} 1.0' in \
        scrape(exporter.port)


def test_self_metrics_and_process_metrics_share_the_endpoint(gatescope_plugins) -> None:
    _, exporter = start(gatescope_plugins, namespace="krakend")
    text = scrape(exporter.port)
    for line in ("# TYPE gatescope_spans_dropped_total counter", "gatescope_spans_dropped_total 0.0",
                 "# TYPE gatescope_spans_queued gauge",
                 "# TYPE process_cpu_seconds_total counter", "# TYPE python_info gauge",
                 "# TYPE python_gc_collections_total counter"):
        assert line in text.splitlines(), line
    assert "krakend_gatescope" not in text


def test_promtool_accepts_the_scrape(gatescope_plugins) -> None:
    promtool = need_binary("promtool", "apt-get install prometheus")
    telemetry, exporter = start(gatescope_plugins, namespace="krakend", tag_host=True,
                                tag_path=True, tag_method=True, tag_statuscode=True)
    telemetry.kit.server.record("h", '/a"b\\c', "GET", "200", 1, 2, 3)
    telemetry.kit.client.record("u", "/b", "GET", "500", 1, 2, 3)
    result = subprocess.run([promtool, "check", "metrics"], input=scrape(exporter.port),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_fast_renderer_equals_prometheus_client(gatescope_plugins) -> None:
    from gatescope_prometheus import SnapshotCollector
    from gatescope_prometheus.text import TextRenderer
    from prometheus_client import CollectorRegistry, generate_latest

    telemetry, _ = start(gatescope_plugins, namespace="krakend", tag_host=True, tag_path=True,
                         tag_statuscode=True)
    for i in range(40):
        telemetry.kit.server.record(f"h{i % 3}", f'/p/{i}"\\\n%s%%', "GET", str(200 + i % 5),
                                    i * 1000.0, i * 3e6, i * 37.5)
        telemetry.kit.client.record("u", f"/c/{i % 7}", "PUT", "503", 1, 2, 1e9)
    snapshot = telemetry.metrics()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snapshot, "krakend"))
    assert TextRenderer("krakend").render(snapshot) == generate_latest(registry).decode()


def test_cached_renderer_stays_equal_across_scrapes(gatescope_plugins) -> None:
    """The renderer reuses unchanged rows' text: repeated, changed and new rows must stay exact."""
    from gatescope_prometheus import SnapshotCollector
    from gatescope_prometheus.text import TextRenderer
    from prometheus_client import CollectorRegistry, generate_latest

    telemetry, _ = start(gatescope_plugins, namespace="krakend", tag_path=True, tag_statuscode=True)
    renderer = TextRenderer("krakend")

    def check() -> None:
        snapshot = telemetry.metrics()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(lambda: snapshot, "krakend"))
        assert renderer.render(snapshot) == generate_latest(registry).decode()

    for i in range(10):
        telemetry.kit.server.record("h", f"/p/{i}", "GET", "200", 0, 3e10 + i, 12.5)
    check()
    check()  # nothing changed: reused text
    telemetry.kit.server.record("h", "/p/3", "GET", "200", 0, 7e12, 99999.0)  # a changed row
    telemetry.kit.server.record("h", "/new", "POST", "500", 1, 2, 0.5)  # a new tag set
    check()


def test_counts_past_a_million_are_written_as_prometheus_client_writes_them(
        gatescope_plugins) -> None:
    """Counts below 1e6 take the renderer's integer template; from 1e6 on, exponent text. Rows
    switch between the two across scrapes, and a label holding the template's own "%d.0" stays
    a label."""
    import attrs
    from gatescope.metrics import DistributionValue, MetricsSnapshot
    from gatescope_prometheus import SnapshotCollector
    from gatescope_prometheus.text import SMALL_COUNT, TextRenderer
    from prometheus_client import CollectorRegistry, generate_latest

    telemetry, _ = start(gatescope_plugins, namespace="krakend", tag_path=True)
    telemetry.kit.server.record("h", "/a%d.0", "GET", "200", 10, 2e6, 12.5)
    telemetry.kit.server.record("h", "/b", "GET", "200", 10, 2e6, 12.5)
    base = telemetry.metrics()
    renderer = TextRenderer("krakend")

    def scaled(factor: int) -> MetricsSnapshot:
        views = []
        for data in base.views:
            rows = {key: DistributionValue(value.count * factor, value.sum * factor, value.min,
                                           value.max, 0.0,
                                           tuple(c * factor for c in value.bucket_counts))
                    if isinstance(value, DistributionValue) else value
                    for key, value in data.rows.items()}
            views.append(attrs.evolve(data, rows=rows))
        return MetricsSnapshot(base.time_ns, tuple(views))

    for factor in (1, SMALL_COUNT - 1, SMALL_COUNT, 3_000_001, 7):
        snapshot = scaled(factor)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(lambda snapshot=snapshot: snapshot, "krakend"))
        expected = generate_latest(registry).decode()
        assert renderer.render(snapshot) == expected, factor
    assert 'http_path="/a%d.0"' in expected and "e+06" in renderer.render(scaled(3_000_001))


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, 0.1, 1e-7, 5e-324, 123456.75, 999999.9999,
                                   1e6, 1000000.5, 12345678.0, 3e10 + 1, 1e16, 1.5e300, -5.5,
                                   -2e7, float("inf"), float("-inf"), float("nan"), 7, 10**6])
def test_number_is_prometheus_clients_text(value: float) -> None:
    from gatescope_prometheus.text import number
    from prometheus_client.utils import floatToGoString

    assert number(value) == floatToGoString(value)
