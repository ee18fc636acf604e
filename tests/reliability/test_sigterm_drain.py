"""SIGTERM to a gunicorn worker or to uvicorn: every span queued before the signal is delivered
within the shutdown deadline, so the receiver's count equals the requests served."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gatescope.runtime import EXIT_DEADLINE
from gatescope.testing import free_port

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: reach the sibling helper module
from faulty_receiver import HANG, SLOW, Receiver

REQUESTS = 120
BIN = Path(sys.executable).parent
APP = textwrap.dedent('''
    import os
    from gatescope.runtime import Telemetry

    telemetry = Telemetry.from_dict({"version": 3, "extra_config": {"telemetry/opencensus": {
        "sample_rate": 100, "batch_size": 10,
        "export_process": os.environ.get("GS_EXPORT_PROCESS") == "1",
        "export_timeout": os.environ.get("GS_EXPORT_TIMEOUT", "10s"),
        "exporters": {"zipkin": {"collector_url": os.environ["GS_RECEIVER"],
                                 "service_name": "drain"}}}}})


    def hello(environ, start_response):
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]


    def helper_pid():
        helper = getattr(telemetry.exporters[0], "_helper", None)
        return helper.proc.pid if helper is not None else 0


    async def hello_asgi(scope, receive, send):
        body = str(helper_pid() if scope["path"] == "/helper" else os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


    wsgi_app = telemetry.wsgi(hello)
    asgi_app = telemetry.asgi(hello_asgi)
''')


def get(port: int, path: str) -> int:
    """One request on its own connection; returns the pid of the process that served it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        assert response.status == 200
        return int(response.read())
    finally:
        connection.close()


def wait_until_serving(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        try:
            get(port, "/ready")
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("the server did not start")


def load(port: int) -> set[int]:
    """REQUESTS requests from 8 client threads; the pids that served them."""
    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(lambda i: get(port, f"/load/{i}"), range(REQUESTS)))


def load_spans(receiver: Receiver) -> list[dict[str, object]]:
    """Router spans of the load requests (all served by the one process the test signals)."""
    with receiver.lock:
        return [s for s in receiver.spans if s["tags"]["http.path"].startswith("/load/")]


def is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not is_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return is_gone(pid)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "drain_app.py").write_text(APP)
    return tmp_path


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    slow = Receiver(SLOW, slow_seconds=0.1)  # ~1.2 s of backlog when the signal arrives
    yield slow
    slow.close()


def start(command: list[str], app_dir: Path, receiver: Receiver,
          **extra_env: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GS_RECEIVER": receiver.url, "PYTHONPATH": str(app_dir), **extra_env}
    return subprocess.Popen(command, cwd=app_dir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(EXIT_DEADLINE + 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


EXPORT_PROCESS = pytest.mark.parametrize("export_process", ["0", "1"],
                                        ids=["export-thread", "export-process"])


@EXPORT_PROCESS
@pytest.mark.parametrize("preload", [False, True], ids=["import-in-worker", "preload-then-fork"])
def test_sigterm_to_a_gunicorn_worker_delivers_its_queued_spans(app_dir: Path, receiver: Receiver,
                                                                 preload: bool,
                                                                 export_process: str) -> None:
    port = free_port()
    master = start([str(BIN / "gunicorn"), "--workers", "1", "--bind", f"127.0.0.1:{port}",
                    "--graceful-timeout", str(int(EXIT_DEADLINE) + 5),
                    *(["--preload"] if preload else []), "drain_app:wsgi_app"],
                   app_dir, receiver, GS_EXPORT_PROCESS=export_process)
    try:
        wait_until_serving(port, master)
        pids = load(port)
        assert len(pids) == 1
        worker = pids.pop()
        before = len(load_spans(receiver))
        os.kill(worker, signal.SIGTERM)
        assert wait_gone(worker, EXIT_DEADLINE + 5), \
            "the worker did not exit within the shutdown deadline"
        delivered = load_spans(receiver)
    finally:
        stop(master)
    assert before < REQUESTS, "spans were not queued at the signal: the test proves nothing"
    assert len(delivered) == REQUESTS, (before, len(delivered))
    assert len({s["id"] for s in delivered}) == REQUESTS


@EXPORT_PROCESS
def test_sigterm_to_uvicorn_delivers_its_queued_spans(app_dir: Path, receiver: Receiver,
                                                       export_process: str) -> None:
    port = free_port()
    server = start([sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
                    "--lifespan", "off", "--log-level", "warning", "drain_app:asgi_app"],
                   app_dir, receiver, GS_EXPORT_PROCESS=export_process)
    try:
        wait_until_serving(port, server)
        pids = load(port)
        assert pids == {server.pid}
        helper = get(port, "/helper")
        assert (helper != 0) is (export_process == "1")
        before = len(load_spans(receiver))
        server.send_signal(signal.SIGTERM)
        server.wait(EXIT_DEADLINE + 5)
        delivered = load_spans(receiver)
    finally:
        stop(server)
    assert before < REQUESTS, "spans were not queued at the signal: the test proves nothing"
    assert len(delivered) == REQUESTS, (before, len(delivered), server.returncode)
    assert len({s["id"] for s in delivered}) == REQUESTS
    assert not helper or is_gone(helper), "the export process outlived its server"


@EXPORT_PROCESS
def test_sigterm_with_a_hung_receiver_still_exits_within_the_deadline(app_dir: Path,
                                                                     export_process: str) -> None:
    """A receiver that never answers cannot keep a stopping server (or its export process)
    alive past EXIT_DEADLINE."""
    hung = Receiver(HANG)
    try:
        port = free_port()
        export_timeout = 60.0  # one export call alone would outlast the deadline many times
        server = start([sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port",
                        str(port), "--lifespan", "off", "--log-level", "warning",
                        "drain_app:asgi_app"], app_dir, hung,
                       GS_EXPORT_TIMEOUT=f"{int(export_timeout)}s", GS_EXPORT_PROCESS=export_process)
        try:
            wait_until_serving(port, server)
            helper = get(port, "/helper")
            load(port)
            time.sleep(0.3)  # the export worker is now inside a hung call
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait(export_timeout / 2)
            took = time.monotonic() - signalled
            # checked while the receiver still hangs: its export call cannot end the helper
            helper_gone = not helper or wait_gone(helper, 5.0)
        finally:
            stop(server)
    finally:
        hung.close()
    assert took < export_timeout / 4, took  # bounded by EXIT_DEADLINE, not by the hung call
    assert server.returncode == -signal.SIGTERM  # ends as SIGTERM's default action would
    assert helper_gone, "the export process outlived its server"
