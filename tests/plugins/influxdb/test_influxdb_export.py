"""The influxdb exporter against a real InfluxDB 1.x: exact points read back with InfluxQL."""

from __future__ import annotations

import io
import itertools
import logging
import socket
import threading
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from gatescope import ExporterContext, ExportError, ExporterStartError
from gatescope.metrics import COUNT, MetricsSnapshot, View, ViewData
from gatescope.testing import exporter_of, free_port, krakend_config
from gatescope_influxdb import InfluxDBConfig, InfluxDBExporter
from gatescope_influxdb.writer import InfluxWriter

ADMIN = "gatescope"  # the admin the `influxd` fixture creates
ADMIN_PASSWORD = "s3cr3t-pw"
InfluxServer = Any  # conftest's InfluxServer: .url, .query(), .rows(), .create_database()

LATENCY = "opencensus.io/http/server/latency"
_names = itertools.count()


def unique_db() -> str:
    return f"gs_test_{next(_names)}"


def section(server: InfluxServer, db: str, **extra: Any) -> dict[str, Any]:
    return {"address": server.url, "db": db, "username": ADMIN, "password": ADMIN_PASSWORD,
            "service_name": "gw-1", **extra}


def telemetry_for(harness: Any, config: dict[str, Any]) -> Any:
    return harness.telemetry(krakend_config({"influxdb": config}, reporting_period=3600))


def record(telemetry: Any, method: str, status: str, latency_ms: float, response_bytes: float = 10,
           times: int = 1) -> None:
    for _ in range(times):
        telemetry.kit.server.record("h", "/p", method, status, 5, response_bytes, latency_ms)


def standalone(config: InfluxDBConfig, timeout: float = 5.0) -> InfluxDBExporter:
    context = ExporterContext(service_name="svc", reporting_period=0,
                              logger=logging.getLogger("gatescope.exporter.influxdb"),
                              metrics=lambda: MetricsSnapshot(0, ()), export_timeout=timeout)
    return InfluxDBExporter(config, context)


def count_snapshot(seconds: int, rows: dict[tuple[str, ...], int]) -> MetricsSnapshot:
    view = View("test/count", "a count", "1", COUNT, ("k",))
    return MetricsSnapshot(seconds * 1_000_000_000, (ViewData(view, 0, rows),))


def test_counts_and_distribution_fields_read_back_exactly(influxd: InfluxServer, gatescope_plugins):
    assert (influxd.user, influxd.password) == (ADMIN, ADMIN_PASSWORD)
    db = unique_db()
    influxd.create_database(db)
    telemetry = telemetry_for(gatescope_plugins, section(influxd, db))
    record(telemetry, "GET", "200", 3.5, times=3)
    record(telemetry, "POST", "500", 120.0, times=2)
    assert telemetry.flush(10)

    rows = influxd.rows('SELECT last("count") AS c FROM "opencensus.io/http/server/request_count" '
                        "WHERE instance = 'gw-1'", db)
    assert [r["c"] for r in rows] == [5]
    by_method = influxd.rows('SELECT last("count") AS c FROM '
                             '"opencensus.io/http/server/request_count_by_method" GROUP BY "http.method"', db)
    assert {r["http.method"]: r["c"] for r in by_method} == {"GET": 3, "POST": 2}
    by_status = influxd.rows('SELECT last("count") AS c FROM '
                             '"opencensus.io/http/server/response_count_by_status_code" GROUP BY "http.status"', db)
    assert {r["http.status"]: r["c"] for r in by_status} == {"200": 3, "500": 2}

    [latency] = influxd.rows(f'SELECT "count", "sum", "min", "max", "mean" FROM "{LATENCY}" '
                             "WHERE instance = 'gw-1'", db)
    assert (latency["count"], latency["min"], latency["max"]) == (5, 3.5, 120.0)
    assert latency["sum"] == pytest.approx(3 * 3.5 + 2 * 120.0)
    assert latency["mean"] == pytest.approx((3 * 3.5 + 2 * 120.0) / 5)

    fields = influxd.rows(f'SHOW FIELD KEYS FROM "{LATENCY}"', db)
    assert {f["fieldKey"]: f["fieldType"] for f in fields} == {
        "count": "integer", "sum": "float", "min": "float", "max": "float", "mean": "float"}


def test_bucket_points_carry_bound_instance_and_row_tags(influxd: InfluxServer, gatescope_plugins):
    db = unique_db()
    influxd.create_database(db)
    telemetry = telemetry_for(gatescope_plugins, section(influxd, db))
    record(telemetry, "GET", "200", 3.5, times=3)  # latency bucket [3, 4) -> bound 4
    record(telemetry, "GET", "200", 120.0, times=2)  # [100, 130) -> 130
    record(telemetry, "GET", "200", 1.0, response_bytes=5 * 2**30)  # above the last size bound
    assert telemetry.flush(10)

    buckets = influxd.rows(f'SELECT "count" FROM "{LATENCY}_buckets" GROUP BY *', db)
    assert {r["bucket"]: r["count"] for r in buckets} == {"2": 1, "4": 3, "130": 2}
    assert {r["instance"] for r in buckets} == {"gw-1"}
    sizes = influxd.rows('SELECT "count" FROM "opencensus.io/http/server/response_bytes_buckets" '
                         "GROUP BY *", db)
    assert {r["bucket"]: r["count"] for r in sizes} == {"1024": 5, "+Inf": 1}

    client = influxd.rows('SELECT "count" FROM "opencensus.io/http/client/roundtrip_latency_buckets" '
                          "GROUP BY *", db)
    assert client == []  # no client traffic, no points
    telemetry.kit.client.record("b", "/u", "GET", "200", 0, 1, 7.0)
    telemetry.kit.client.record("b", "/u", "PUT", "503", 0, 1, 7.0)
    assert telemetry.flush(10)
    client = influxd.rows('SELECT "count" FROM "opencensus.io/http/client/roundtrip_latency_buckets" '
                          "GROUP BY *", db)
    assert sorted((r["http_client_method"], r["http_client_status"], r["bucket"], r["count"])
                  for r in client) == [("GET", "200", "8", 1), ("PUT", "503", "8", 1)]


def test_second_push_writes_the_new_cumulative_value(influxd: InfluxServer, gatescope_plugins):
    db = unique_db()
    influxd.create_database(db)
    telemetry = telemetry_for(gatescope_plugins, section(influxd, db))
    record(telemetry, "GET", "200", 2.0, times=2)
    assert telemetry.flush(10)
    record(telemetry, "GET", "200", 2.0, times=5)
    assert telemetry.flush(10)
    rows = influxd.rows('SELECT last("count") AS c FROM "opencensus.io/http/server/request_count"', db)
    assert [r["c"] for r in rows] == [7]


def test_end_to_end_through_the_wsgi_router(influxd: InfluxServer, gatescope_plugins):
    db = unique_db()
    influxd.create_database(db)
    telemetry = telemetry_for(gatescope_plugins, section(influxd, db))

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"hello"]

    wrapped = telemetry.wsgi(app)
    for path in ("/a", "/a", "/missing"):
        environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
        setup_testing_defaults(environ)
        result = wrapped(environ, lambda status, headers, exc=None: None)
        try:
            assert b"".join(result) == b"hello"
        finally:
            getattr(result, "close", lambda: None)()
    assert telemetry.flush(10)
    by_status = influxd.rows('SELECT last("count") AS c FROM '
                             '"opencensus.io/http/server/response_count_by_status_code" GROUP BY "http.status"', db)
    assert {r["http.status"]: r["c"] for r in by_status} == {"200": 2, "404": 1}
    [sizes] = influxd.rows('SELECT "count", "sum" FROM "opencensus.io/http/server/response_bytes"', db)
    assert (sizes["count"], sizes["sum"]) == (3, 15.0)


def test_line_protocol_escaping_round_trips(influxd: InfluxServer):
    db = unique_db()
    influxd.create_database(db)
    view = View("m x,y=z", "tricky", "1", COUNT, ("k=1 ,z",))
    snapshot = MetricsSnapshot(1_700_000_000 * 10**9,
                               (ViewData(view, 0, {("v 1,=2",): 4, ('q"uote\\',): 1}),))
    exporter = standalone(InfluxDBConfig(address=influxd.url, db=db, username=ADMIN,
                                         password=ADMIN_PASSWORD, service_name="inst ance,1"))
    exporter.export_metrics(snapshot)
    assert exporter.points_written == 2
    [measurement] = influxd.rows("SHOW MEASUREMENTS", db)
    assert measurement["name"] == "m x,y=z"
    rows = influxd.rows('SELECT "count" FROM "m x,y=z" GROUP BY *', db)
    assert {(r["k=1 ,z"], r["instance"], r["count"]) for r in rows} == {
        ("v 1,=2", "inst ance,1", 4), ('q"uote', "inst ance,1", 1)}  # trailing backslash dropped


def test_missing_database_is_reported_once_and_points_arrive_once_created(
        influxd: InfluxServer, gatescope_plugins, caplog):
    db = unique_db()
    telemetry = telemetry_for(gatescope_plugins, section(influxd, db))
    caplog.set_level(logging.INFO, logger="gatescope")
    record(telemetry, "GET", "200", 2.0, times=4)
    for _ in range(3):
        assert telemetry.flush(10)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert f'database "{db}" does not exist on InfluxDB at {influxd.url}' in message
    assert f'CREATE DATABASE "{db}"' in message
    exporter = exporter_of(telemetry, "influxdb")
    assert exporter.pending > 0 and exporter.points_written == 0

    influxd.create_database(db)
    assert telemetry.flush(10)
    assert exporter.pending == 0
    rows = influxd.rows('SELECT "count" FROM "opencensus.io/http/server/request_count"', db)
    assert rows and {r["count"] for r in rows} == {4}
    assert any("succeed again" in r.getMessage() for r in caplog.records)


def test_wrong_password_is_reported_once_without_the_password(influxd, gatescope_plugins, caplog):
    db = unique_db()
    influxd.create_database(db)
    wrong = "not-the-password-123"
    telemetry = telemetry_for(gatescope_plugins, section(influxd, db, password=wrong))
    caplog.set_level(logging.INFO, logger="gatescope")
    record(telemetry, "GET", "200", 2.0)
    for _ in range(3):
        assert telemetry.flush(10)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert f'rejected the credentials of user "{ADMIN}" (HTTP 401' in message
    assert "check username and password" in message
    assert all(wrong not in r.getMessage() for r in caplog.records)
    assert influxd.rows('SHOW MEASUREMENTS', db) == []


def test_no_credentials_on_an_auth_server_is_reported_once(influxd, gatescope_plugins, caplog):
    db = unique_db()
    influxd.create_database(db)
    telemetry = telemetry_for(gatescope_plugins, {"address": influxd.url, "db": db})
    caplog.set_level(logging.INFO, logger="gatescope")
    record(telemetry, "GET", "200", 2.0)
    for _ in range(2):
        assert telemetry.flush(10)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "no credentials (username unset)" in errors[0]


def test_full_buffer_drops_the_oldest_points_first(influxd: InfluxServer):
    db = unique_db()
    exporter = standalone(InfluxDBConfig(address=influxd.url, db=db, username=ADMIN,
                                         password=ADMIN_PASSWORD, buffer_size=3))
    exporter.export_metrics(count_snapshot(1_700_000_000, {("a",): 1, ("b",): 1}))
    exporter.export_metrics(count_snapshot(1_700_000_001, {("a",): 2, ("b",): 2}))
    assert (exporter.pending, exporter.points_dropped, exporter.points_written) == (3, 1, 0)

    influxd.create_database(db)
    exporter.export_metrics(MetricsSnapshot(0, ()))  # nothing new: just retry the buffer
    assert (exporter.pending, exporter.points_written) == (0, 3)
    rows = influxd.rows('SELECT "count", "k" FROM "test/count"', db)
    # The first point written ("a" at the first second) was the one dropped.
    assert sorted((r["time"], r["k"], r["count"]) for r in rows) == [
        ("2023-11-14T22:13:20Z", "b", 1), ("2023-11-14T22:13:21Z", "a", 2),
        ("2023-11-14T22:13:21Z", "b", 2)]


def test_unreachable_server_keeps_points_and_raises_retryable(influxd: InfluxServer):
    exporter = standalone(InfluxDBConfig(address=f"http://127.0.0.1:{free_port()}", db="x"))
    with pytest.raises(ExportError) as info:
        exporter.export_metrics(count_snapshot(1_700_000_000, {("a",): 1}))
    assert info.value.retryable
    assert "cannot reach InfluxDB" in str(info.value) and exporter.pending == 1


def test_every_request_has_a_timeout():
    """A server that accepts and never answers: the write fails as timed out instead of hanging."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        accepted: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    accepted.append(listener.accept()[0])
                except OSError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            exporter = standalone(InfluxDBConfig(address=f"http://127.0.0.1:{port}", db="x",
                                                 timeout=0.3))
            assert exporter.timeout == 0.3
            with pytest.raises(ExportError, match="timed out"):
                exporter.export_metrics(count_snapshot(1_700_000_000, {("a",): 1}))
        finally:
            stop.set()
            thread.join()
            for conn in accepted:
                conn.close()


def test_ping_at_start(influxd: InfluxServer):
    standalone(InfluxDBConfig(address=influxd.url, db="d", ping=True)).start()
    dead = standalone(InfluxDBConfig(address=f"http://127.0.0.1:{free_port()}", db="d", ping=True))
    with pytest.raises(ExporterStartError, match="ping failed: cannot reach InfluxDB"):
        dead.start()


def test_empty_db_refuses_to_start(influxd: InfluxServer):
    with pytest.raises(ExporterStartError, match="db is empty"):
        standalone(InfluxDBConfig(address=influxd.url, db="")).start()


def test_rejected_points_are_dropped_and_counted(influxd: InfluxServer):
    db = unique_db()
    influxd.create_database(db)
    writer = InfluxWriter(influxd.url, db, ADMIN, ADMIN_PASSWORD)
    writer.write(['test/count,k=a count=1.5 1700000000'], 5)  # makes `count` a float field
    exporter = standalone(InfluxDBConfig(address=influxd.url, db=db, username=ADMIN,
                                         password=ADMIN_PASSWORD))
    with pytest.raises(ExportError) as info:
        exporter.export_metrics(count_snapshot(1_700_000_001, {("a",): 1}))
    assert not info.value.retryable and "field type conflict" in str(info.value)
    assert (exporter.pending, exporter.points_dropped) == (0, 1)
