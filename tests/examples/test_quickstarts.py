"""Each quick-start example really starts, serves, and names its telemetry by the route template."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from gatescope.testing import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@contextmanager
def interruptible_children() -> Iterator[None]:
    """Children started inside get SIGINT's default action, whatever this process has.

    A shell without job control starts a background job with SIGINT ignored, and a child
    inherits that: Python then installs no KeyboardInterrupt handler, and an example stopped
    with SIGINT serves on (seen as a 30 s timeout). A handled signal is reset to the default
    across exec, so the child starts with it as from a terminal."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(("example", "path", "span_name"), [
    ("fastapi_app", "/users/42", "/users/{user_id}"),
    ("flask_app", "/users/42", "/users/{user_id}"),
    ("wsgi_app", "/hello/ada", "/hello/{name}"),
    ("django_app", "/api/users/42", "/api/users/{user_id}"),
    ("django_app --asgi", "/api/users/42", "/api/users/{user_id}"),
])
def test_example_serves_and_logs_a_span_named_by_the_template(example, path, span_name):
    port = free_port()
    example, *flags = example.split()
    with interruptible_children():
        process = subprocess.Popen([sys.executable, str(EXAMPLES / example / "app.py"), "--port",
                                    str(port), *flags], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert response.status_code == 200
        assert "42" in response.text or "ada" in response.text
        time.sleep(0.5)  # the logger exporter writes on its worker, within the dispatch interval
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    spans = [line for line in output.splitlines() if "[SPAN]" in line]
    assert any(f"[SPAN] {span_name} " in line and "kind=server" in line for line in spans), output[-3000:]
    assert any("[SPAN] pipe-" in line for line in spans) or example == "wsgi_app", output[-3000:]
    assert not any(f"[SPAN] {path} " in line for line in spans), "raw path used as the span name"


def test_children_can_be_interrupted_when_this_process_ignores_sigint() -> None:
    probe = [sys.executable, "-c",
             "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ignored = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
        with interruptible_children():
            restored = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # this process's is put back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ignored.strip() == "False"  # what the examples got: no KeyboardInterrupt on SIGINT
    assert restored.strip() == "True"
