"""DogStatsD lines received on a real UDP socket and a unix datagram socket, named as KrakenD's."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gatescope import ExportError
from gatescope.metrics import LATENCY_BOUNDS
from gatescope.testing import exit_code, exporter_of, fork_child, krakend_config
from gatescope_datadog.dogstatsd import metric_name

NS = "krakend"
SERVER = "krakend.opencensus_io_http_server_"
BASE_TAGS = "env:test,team:api"


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@pytest.fixture
def unix_path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gs-dsd-") as directory:  # short: AF_UNIX path limit
        yield Path(directory) / "dsd.socket"


def bind_unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    return sock


def received(sock: socket.socket) -> list[str]:
    """Every line of every datagram waiting on the socket (the send completed before flush returned)."""
    lines: list[str] = []
    sock.settimeout(0.2)
    while True:
        try:
            datagram = sock.recv(65536)
        except TimeoutError:
            return lines
        lines.extend(datagram.decode().split("\n"))


def telemetry_for(harness: Any, stats_address: str, **extra: Any) -> Any:
    section = {"namespace": NS, "service": "gw", "trace_address": "127.0.0.1:9",
               "stats_address": stats_address, "tags": ["env:test", "team:api"], "global_tags": {},
               "disable_count_per_buckets": False, **extra}
    return harness.telemetry(krakend_config({"datadog": section}, reporting_period=3600))


def traffic(telemetry: Any, method: str, status: str, latency: float, times: int) -> None:
    for _ in range(times):
        telemetry.kit.server.record("h", "/p", method, status, 0, 10, latency)


def bucket_of(latency: float) -> int:
    return next((i for i, bound in enumerate(LATENCY_BOUNDS) if latency < bound), len(LATENCY_BOUNDS))


def test_counts_gauges_and_buckets_over_udp(gatescope_plugins, udp):
    telemetry = telemetry_for(gatescope_plugins, f"127.0.0.1:{udp.getsockname()[1]}")
    traffic(telemetry, "GET", "200", 3.5, 2)
    traffic(telemetry, "POST", "500", 120.0, 1)
    assert telemetry.flush(10)
    lines = received(udp)

    assert f"{SERVER}request_count:3|c|#{BASE_TAGS}" in lines
    assert f"{SERVER}request_count_by_method:2|c|#{BASE_TAGS},http.method:GET" in lines
    assert f"{SERVER}request_count_by_method:1|c|#{BASE_TAGS},http.method:POST" in lines
    assert f"{SERVER}response_count_by_status_code:1|c|#{BASE_TAGS},http.status:500" in lines
    latency = f"{SERVER}latency"
    values = [3.5, 3.5, 120.0]
    mean = sum(values) / 3
    assert f"{latency}.min:3.5|g|#{BASE_TAGS}" in lines
    assert f"{latency}.max:120|g|#{BASE_TAGS}" in lines
    assert f"{latency}.count:3|g|#{BASE_TAGS}" in lines
    assert f"{latency}.avg:{mean!r}|g|#{BASE_TAGS}" in lines
    [ssd] = [line for line in lines if line.startswith(f"{latency}.squared_dev_sum:")]
    assert float(ssd.split(":")[1].split("|")[0]) == pytest.approx(sum((v - mean) ** 2 for v in values))
    buckets = {line.split("bucket_idx:")[1]: line.split(":")[1].split("|")[0]
               for line in lines if line.startswith(f"{latency}.count_per_bucket:")}
    assert len(buckets) == len(LATENCY_BOUNDS) + 1
    assert buckets[str(bucket_of(3.5))] == "2" and buckets[str(bucket_of(120.0))] == "1"
    assert sum(int(v) for v in buckets.values()) == 3
    assert f"{latency}.count_per_bucket:2|g|#{BASE_TAGS},bucket_idx:{bucket_of(3.5)}" in lines
    # gatescope's own health views come along under the same namespace
    assert f"{NS}.gatescope_spans_dropped:0|c|#{BASE_TAGS}" in lines


def test_counts_are_deltas_between_pushes(gatescope_plugins, udp):
    telemetry = telemetry_for(gatescope_plugins, f"127.0.0.1:{udp.getsockname()[1]}")
    traffic(telemetry, "GET", "200", 1.0, 4)
    assert telemetry.flush(10)
    first = received(udp)
    traffic(telemetry, "GET", "200", 1.0, 2)
    traffic(telemetry, "PUT", "201", 1.0, 1)
    assert telemetry.flush(10)
    second = received(udp)
    assert f"{SERVER}request_count:4|c|#{BASE_TAGS}" in first
    assert f"{SERVER}request_count:3|c|#{BASE_TAGS}" in second
    assert f"{SERVER}request_count_by_method:2|c|#{BASE_TAGS},http.method:GET" in second
    assert f"{SERVER}request_count_by_method:1|c|#{BASE_TAGS},http.method:PUT" in second
    # distributions stay cumulative gauges, as the Go exporter sent them
    assert f"{SERVER}latency.count:7|g|#{BASE_TAGS}" in second
    assert all(len(line.encode()) > 0 for line in first + second)


def test_count_per_bucket_can_be_disabled(gatescope_plugins, udp):
    telemetry = telemetry_for(gatescope_plugins, f"127.0.0.1:{udp.getsockname()[1]}",
                              disable_count_per_buckets=True, namespace="", tags=[])
    traffic(telemetry, "GET", "200", 1.0, 1)
    assert telemetry.flush(10)
    lines = received(udp)
    assert "opencensus_io_http_server_request_count:1|c" in lines  # no namespace, no tags
    assert "opencensus_io_http_server_latency.count:1|g" in lines
    assert not [line for line in lines if "count_per_bucket" in line]


def test_datagrams_respect_the_udp_size(gatescope_plugins, udp):
    telemetry = telemetry_for(gatescope_plugins, f"127.0.0.1:{udp.getsockname()[1]}")
    traffic(telemetry, "GET", "200", 1.0, 1)
    assert telemetry.flush(10)
    udp.settimeout(0.2)
    sizes = []
    while True:
        try:
            sizes.append(len(udp.recv(65536)))
        except TimeoutError:
            break
    assert len(sizes) > 1 and max(sizes) <= 1432


def test_unix_datagram_socket(gatescope_plugins, unix_path):
    with bind_unix(unix_path) as sink:
        telemetry = telemetry_for(gatescope_plugins, f"unix://{unix_path}")
        traffic(telemetry, "GET", "200", 1.0, 2)
        assert telemetry.flush(10)
        lines = received(sink)
    assert f"{SERVER}request_count:2|c|#{BASE_TAGS}" in lines
    assert f"{SERVER}latency.count_per_bucket:2|g|#{BASE_TAGS},bucket_idx:{bucket_of(1.0)}" in lines


def test_missing_unix_socket_fails_and_carries_the_count_over(gatescope_plugins, unix_path):
    telemetry = telemetry_for(gatescope_plugins, f"unix://{unix_path}")
    exporter = exporter_of(telemetry, "datadog")
    traffic(telemetry, "GET", "200", 1.0, 3)
    with pytest.raises(ExportError, match=f"cannot send to DogStatsD at unix://{unix_path}"):
        exporter.export_metrics(telemetry.metrics())
    traffic(telemetry, "GET", "200", 1.0, 2)
    with bind_unix(unix_path) as sink:
        exporter.export_metrics(telemetry.metrics())
        lines = received(sink)
    assert f"{SERVER}request_count:5|c|#{BASE_TAGS}" in lines  # nothing lost, nothing doubled
    assert exporter.lines_failed > 0


def test_tag_values_cannot_split_a_line(gatescope_plugins, udp):
    telemetry = telemetry_for(gatescope_plugins, f"127.0.0.1:{udp.getsockname()[1]}")
    traffic(telemetry, "GE|T,x\ny", "200", 1.0, 1)
    assert telemetry.flush(10)
    lines = received(udp)
    assert f"{SERVER}request_count_by_method:1|c|#{BASE_TAGS},http.method:GE_T_x y" in lines


@pytest.mark.parametrize(("namespace", "view", "expected"), [
    ("krakend", "opencensus.io/http/server/latency", "krakend.opencensus_io_http_server_latency"),
    ("my app", "a//b..c", "myapp.a_b_c"),
    ("", "opencensus.io/http/client/sent_bytes", "opencensus_io_http_client_sent_bytes"),
    ("k-8s", "x_y", "k_8s.x_y"),
])
def test_metric_names_follow_the_go_exporter(namespace: str, view: str, expected: str) -> None:
    assert metric_name(namespace, view) == expected


def _request_count(lines: list[str]) -> int:
    return sum(int(line.split(":", 1)[1].split("|", 1)[0]) for line in lines
               if line.startswith(f"{SERVER}request_count:"))


@pytest.mark.parametrize("parent_pushes_first", [False, True])
def test_forked_workers_sharing_stats_count_every_request_once(gatescope_plugins, udp, tmp_path,
                                                                monkeypatch, parent_pushes_first):
    """GATESCOPE_MULTIPROC_DIR: every worker sees the summed totals, so only one pushes at a time
    and a new pusher starts from the counts the last one sent (else N workers send N times)."""
    monkeypatch.setenv("GATESCOPE_MULTIPROC_DIR", str(tmp_path))
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    telemetry = telemetry_for(gatescope_plugins, f"127.0.0.1:{udp.getsockname()[1]}")
    assert telemetry.stats.multiprocess
    if parent_pushes_first:  # the parent leads (gunicorn --preload): children inherit its lock fd
        traffic(telemetry, "PUT", "200", 1.0, 3)
        assert telemetry.flush(10)
    children = []
    for requests in (10, 11, 12):

        def worker(requests: int = requests) -> bool:  # serve, then exit pushing (as gunicorn's)
            traffic(telemetry, "GET", "200", 1.0, requests)
            return telemetry.shutdown(10)

        children.append(fork_child(worker))
    for pid in children:
        assert exit_code(pid) == 0
    traffic(telemetry, "POST", "200", 1.0, 4)
    assert telemetry.flush(10)
    assert _request_count(received(udp)) == 10 + 11 + 12 + 4 + (3 if parent_pushes_first else 0)
