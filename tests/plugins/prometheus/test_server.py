"""The endpoint: only /metrics, header deadline, port-in-use error, consistent scrapes under load."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from gatescope import ExporterStartError
from gatescope.testing import exporter_of, krakend_config
from prometheus_client.parser import text_string_to_metric_families
from prometheus_testlib import scrape


def start(harness, **prometheus):
    section = {"port": 0, "listen_ip": "127.0.0.1", "namespace": "krakend", **prometheus}
    telemetry = harness.telemetry(krakend_config({"prometheus": section}))
    return telemetry, exporter_of(telemetry, "prometheus")


@pytest.mark.parametrize("path", ["/", "/metric", "/metrics/", "/favicon.ico", "/debug/vars"])
def test_other_paths_are_404(gatescope_plugins, path: str) -> None:
    _, exporter = start(gatescope_plugins)
    with pytest.raises(urllib.error.HTTPError) as caught:
        scrape(exporter.port, path)
    assert caught.value.code == 404


def test_metrics_with_query_head_and_gzip(gatescope_plugins) -> None:
    _, exporter = start(gatescope_plugins)
    assert "# TYPE krakend_opencensus_io_http_server_request_count untyped" in \
        scrape(exporter.port, "/metrics?x=1")
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    head = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(head, timeout=5) as response:
        assert response.status == 200 and response.read() == b""
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    zipped = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(zipped, timeout=5) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert b"krakend_opencensus_io_http_server_latency" in gzip.decompress(response.read())


def test_port_in_use_names_the_port(gatescope_plugins) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ExporterStartError) as caught:
            start(gatescope_plugins, port=port)
    assert str(caught.value) == (f"prometheus exporter cannot listen on 127.0.0.1:{port}: the "
                                 f"port is already in use (port {port})")


def test_shutdown_releases_the_port(gatescope_plugins) -> None:
    telemetry, exporter = start(gatescope_plugins)
    port = exporter.port
    telemetry.shutdown(2.0)
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_slowloris_does_not_block_a_scrape_and_is_cut_at_the_deadline(gatescope_plugins) -> None:
    _, exporter = start(gatescope_plugins, read_timeout="1s", max_connections=2)
    slow = socket.create_connection(("127.0.0.1", exporter.port))
    slow.sendall(b"GET /metrics HTTP/1.1\r\n")
    started = time.monotonic()
    assert "krakend_opencensus_io_http_server_latency" in scrape(exporter.port, timeout=5)
    # Drip-feeding a header byte at a time does not extend the 1 s deadline.
    closed_after = None
    slow.settimeout(0.2)
    for _ in range(50):
        try:
            slow.sendall(b"X")
            if slow.recv(1024) == b"":
                closed_after = time.monotonic() - started
                break
        except TimeoutError:
            continue
        except OSError:
            closed_after = time.monotonic() - started
            break
    slow.close()
    assert closed_after is not None, "the slow client was never disconnected"
    # Both connection slots are free again: two scrapes at once succeed.
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(scrape(exporter.port)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 2


def test_connections_beyond_the_cap_are_closed(gatescope_plugins) -> None:
    _, exporter = start(gatescope_plugins, read_timeout="5s", max_connections=1)
    holder = socket.create_connection(("127.0.0.1", exporter.port))
    holder.sendall(b"GET /metrics HTTP/1.1\r\n")
    time.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", exporter.port))
    extra.settimeout(3)
    extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    with contextlib.suppress(ConnectionResetError):
        assert extra.recv(1024) == b""
    holder.sendall(b"\r\n")
    holder.settimeout(3)
    assert holder.recv(64).startswith(b"HTTP/1.0 200")
    holder.close()
    extra.close()


def test_scrapes_are_consistent_while_hammered(gatescope_plugins) -> None:
    telemetry, exporter = start(gatescope_plugins, tag_path=True, tag_statuscode=True)
    stop = threading.Event()
    record = telemetry.kit.server.record

    def hammer(seed: int) -> None:
        i = 0
        while not stop.is_set():
            record("h", f"/p/{(seed * 7 + i) % 40}", "GET", ("200", "500")[i % 2], 10, 100,
                   (i % 120) * 1.0)
            i += 1

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    try:
        checked = 0
        for _ in range(4):
            text = scrape(exporter.port, timeout=10)
            for family in text_string_to_metric_families(text):
                if family.type != "histogram":
                    continue
                by_series: dict = {}
                for s in family.samples:
                    labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                    series = by_series.setdefault(labels, {"buckets": []})
                    if s.name.endswith("_bucket"):
                        series["buckets"].append(s.value)
                        if s.labels["le"] == "+Inf":
                            series["inf"] = s.value
                    elif s.name.endswith("_count"):
                        series["count"] = s.value
                for series in by_series.values():
                    assert series["count"] == series["inf"]
                    assert series["buckets"] == sorted(series["buckets"])
                    checked += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert checked > 100


def test_a_scrape_of_many_pieces_is_whole_plain_and_gzipped(gatescope_plugins) -> None:
    """A scrape far larger than one piece (`text.PIECE`) is sent, and gzipped, piece by piece:
    both bodies equal prometheus-client's rendering, and Content-Length counts every byte."""
    from gatescope_prometheus import SnapshotCollector
    from gatescope_prometheus.text import PIECE
    from prometheus_client import CollectorRegistry, generate_latest

    telemetry, exporter = start(gatescope_plugins, tag_path=True)
    for i in range(300):
        telemetry.kit.server.record("h", f"/items/{i}", "GET", "200", 10, 120, 1.5 + i % 50)
    snapshot = telemetry.metrics()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snapshot, "krakend"))
    expected = generate_latest(registry)
    assert len(expected) > 5 * PIECE
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    for headers in ({}, {"Accept-Encoding": "gzip"}):
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=10) as response:
            body = response.read()
            assert int(response.headers["Content-Length"]) == len(body)
            if headers:
                assert response.headers["Content-Encoding"] == "gzip"
                body = gzip.decompress(body)
        # gatescope's views come first, then the process and Python collectors'.
        assert body.startswith(expected), headers
        assert b"python_info" in body[len(expected):]
