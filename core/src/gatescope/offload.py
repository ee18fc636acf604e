"""Trace exporters in a helper process, so span encoding and sending leave the server's GIL.

With `export_process` on, each trace exporter runs in a helper process of its own, started with
`python -c <ENTRY>`. The serving process keeps its queue, export worker, retries and
self-telemetry exactly as before; the worker's exporter is an `OffloadedExporter` that hands each
batch over a pipe (spans as marshalled tuples: C-speed on both sides) and waits for the answer.
A helper that dies or stops answering is killed and started again for the next attempt; a helper
whose serving process is gone sees end-of-file, shuts its exporter down and exits.
"""

from __future__ import annotations

import contextlib
import io
import logging
import marshal
import operator
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from gatescope.exporter import METRICS, TRACES, ExporterStartError
from gatescope.metrics import MetricsSnapshot
from gatescope.pipeline import ExportError
from gatescope.spans import AttributeValue, SpanRecord
from gatescope.tracing import Span, apply_http_facts

log = logging.getLogger("gatescope.offload")

FRAME = struct.Struct("!cI")  # kind, payload length
START, SPANS, METRICS_PUSH, BASELINE, SHUTDOWN = b"S", b"T", b"M", b"B", b"Q"
OK, ERROR = b"K", b"E"
ENTRY = "import sys; from gatescope.offload import main; sys.exit(main(sys.argv[1:]))"
START_TIMEOUT = 30.0  # seconds a helper may take to import its exporter and start it
REPLY_GRACE = 5.0  # seconds a helper may take beyond two export timeouts before it is replaced
# While a helper works on a batch it gives its CPU away this often: a task sharing the CPU (a
# server worker, a load generator) then waits for it at most this long, not a scheduler slice.
YIELD_EVERY = 0.0005
# SpanRecord's constructor order: the helper rebuilds each span with SpanRecord(*fields).
_FIELDS = operator.attrgetter("name", "trace_id", "span_id", "parent_span_id", "kind", "start_ns",
                              "end_ns", "attributes", "status_code", "status_message")


def offloadable(exporter: Any) -> bool:
    """Trace exporters that push (or have no) metrics; pull exporters read live stats here."""
    signals = exporter.signals
    return (TRACES in signals and getattr(type(exporter), "offloadable", True)
            and (METRICS not in signals or getattr(exporter, "pushes_metrics", True)))


def pack_spans(spans: Sequence[SpanRecord]) -> bytes:
    rows = list(map(_FIELDS, spans))
    # server spans may still carry raw HTTP facts: the helper makes their attributes
    facts = [span.http_facts if type(span) is Span else None for span in spans]
    try:
        return marshal.dumps((rows, facts))
    except ValueError:  # an attribute subclass (an enum, a str subclass) marshal cannot carry
        return marshal.dumps(([(*row[:7], {k: _plain(v) for k, v in row[7].items()}, *row[8:])
                               for row in rows], facts))


def _plain(value: Any) -> AttributeValue:
    """The plain type an exporter encodes anyway (bool before int: bools are ints)."""
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


def unpack_spans(payload: bytes) -> list[SpanRecord]:
    rows, facts = marshal.loads(payload)
    spans = [SpanRecord(*row) for row in rows]
    for span, known in zip(spans, facts, strict=True):
        if known is not None:
            try:
                apply_http_facts(span, known)
            except Exception as exc:  # the span is still exported, as the dispatcher does
                log.warning("gatescope: could not make the attributes of server span %r: %r",
                            span.name, exc)
    return spans


class HelperFailed(Exception):
    """The helper process died, closed its pipe or did not answer in time."""


class Helper:
    """One running helper process and the two pipes to it; every wait has a deadline."""

    def __init__(self, name: str) -> None:
        to_child, child_in = os.pipe()
        child_out, from_child = os.pipe()
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", ENTRY, str(to_child), str(from_child), name],
                stdin=subprocess.DEVNULL, pass_fds=(to_child, from_child), env=env,
            )
        except BaseException:
            os.close(child_in)
            os.close(child_out)
            raise
        finally:
            os.close(to_child)
            os.close(from_child)
        self.write_fd, self.read_fd = child_in, child_out
        os.set_blocking(self.write_fd, False)

    def request(self, kind: bytes, payload: bytes, timeout: float) -> tuple[bytes, bytes]:
        deadline = time.monotonic() + timeout
        self._write(FRAME.pack(kind, len(payload)), deadline)
        self._write(payload, deadline)
        reply, size = FRAME.unpack(self._read(FRAME.size, deadline))
        return reply, self._read(size, deadline)

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self.write_fd], [], remaining)[1]:
                raise HelperFailed("did not take the batch in time")
            try:
                view = view[os.write(self.write_fd, view):]
            except BlockingIOError:
                continue
            except OSError as exc:  # EPIPE: the helper is gone
                raise HelperFailed(f"closed its pipe ({exc.strerror})") from exc

    def _read(self, size: int, deadline: float) -> bytes:
        chunks = []
        while size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.read_fd], [], [], remaining)[0]:
                raise HelperFailed("did not answer in time")
            chunk = os.read(self.read_fd, size)
            if not chunk:
                code = self.proc.poll()
                raise HelperFailed("exited" if code is None else f"exited with status {code}")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, wait: float) -> None:
        """Close the pipes (the helper then exits) and reap it, killing it after `wait`."""
        self.abandon()
        try:
            self.proc.wait(max(0.0, wait))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def abandon(self) -> None:
        """Drop this process's ends of the pipes without touching the helper (after a fork)."""
        for fd in (self.write_fd, self.read_fd):
            with contextlib.suppress(OSError):  # already closed
                os.close(fd)


class RemoteExporterError(Exception):
    """An exception the exporter raised inside its helper process (type and message kept)."""


class OffloadedExporter:
    """Stands in for an exporter that runs in a helper process; workers call it as usual."""

    settles_http_facts = True  # unpack_spans makes server spans' attributes in the helper

    def __init__(self, local: Any, config: Any, context: Any) -> None:
        # `local` is built here only for its attributes; it is never started in this process.
        self.name: str = local.name
        self.signals: frozenset[str] = local.signals
        self.pushes_metrics: bool = getattr(local, "pushes_metrics", True)
        self.default_period: float = getattr(local, "default_period", 10.0)
        limit = getattr(local, "max_pending_spans", None)
        if limit is not None:
            self.max_pending_spans = limit
        if callable(getattr(local, "adopt_metrics_baseline", None)):
            self.adopt_metrics_baseline = self._adopt_metrics_baseline
        self._spec = pickle.dumps({
            "class": type(local), "config": config, "service_name": context.service_name,
            "reporting_period": context.reporting_period, "export_timeout": context.export_timeout,
            "stats_tag_options": context.stats_tag_options,
        }, pickle.HIGHEST_PROTOCOL)
        self._export_timeout: float = context.export_timeout
        self.restarts = 0
        self._helper: Helper | None = None
        self._lock = threading.Lock()

    @property
    def reply_timeout(self) -> float:
        return 2 * self._export_timeout + REPLY_GRACE

    def start(self) -> None:
        with self._lock:
            try:
                self._helper = self._spawn()
            except (HelperFailed, OSError, RemoteExporterError) as exc:
                raise ExporterStartError(f"exporter {self.name!r} failed to start in its export "
                                         f"process: {exc}") from exc

    def _spawn(self) -> Helper:
        helper = Helper(self.name)
        try:
            body = pickle.dumps(list(sys.path)) + self._spec
            self._check(*helper.request(START, body, max(START_TIMEOUT, self.reply_timeout)))
        except BaseException:
            helper.close(0.0)
            raise
        return helper

    @staticmethod
    def _check(kind: bytes, body: bytes) -> None:
        if kind == OK:
            return
        type_name, message, retryable = pickle.loads(body)
        if retryable is None:
            raise RemoteExporterError(f"{type_name}: {message}")
        raise ExportError(message, retryable)

    def _call(self, kind: bytes, payload: bytes) -> None:
        with self._lock:
            helper = self._helper
            if helper is None or not helper.alive():
                if helper is not None:
                    helper.close(0.0)
                self._helper = None
                try:
                    helper = self._helper = self._spawn()
                except (HelperFailed, OSError, RemoteExporterError) as exc:
                    raise ExportError(f"its export process could not be started: {exc}") from exc
                self.restarts += 1
            try:
                reply = helper.request(kind, payload, self.reply_timeout)
            except HelperFailed as exc:
                self._helper = None
                helper.close(0.0)  # a hung helper is killed; the next call starts a new one
                raise ExportError(f"its export process {exc}; a new one is started for the next "
                                  "attempt") from exc
        self._check(*reply)

    def export_spans(self, spans: Sequence[SpanRecord]) -> None:
        self._call(SPANS, pack_spans(spans))

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        self._call(METRICS_PUSH, pickle.dumps(snapshot, pickle.HIGHEST_PROTOCOL))

    def _adopt_metrics_baseline(self, previous: Any) -> None:
        self._call(BASELINE, pickle.dumps(previous, pickle.HIGHEST_PROTOCOL))

    def shutdown(self, timeout: float) -> None:
        with self._lock:
            helper, self._helper = self._helper, None
        if helper is None:
            return
        try:
            self._check(*helper.request(SHUTDOWN, pickle.dumps(timeout * 0.8), timeout))
        except HelperFailed as exc:
            raise RuntimeError(f"its export process {exc} during shutdown") from exc
        finally:
            helper.close(1.0)

    def kill(self) -> None:
        """The shutdown deadline passed with an export still running: end the helper now, as
        the serving process's exit ends an in-process export thread."""
        helper = self._helper  # not under the lock: the stuck export call holds it
        if helper is not None and helper.alive():
            helper.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                helper.proc.wait(1.0)  # reaped here, not left to whoever adopts it

    def after_fork_in_child(self) -> None:
        """A forked worker starts its own helper; the parent's stays the parent's."""
        self._lock = threading.Lock()
        if self._helper is not None:
            self._helper.abandon()
            self._helper = None


# --- the helper process ------------------------------------------------------------------------


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unavailable() -> MetricsSnapshot:
    raise RuntimeError("live metrics are not available in an export process")


def _build(body: bytes) -> Any:
    from gatescope.exporter import ExporterContext

    stream = io.BytesIO(body)
    sys.path[:] = pickle.load(stream)  # the serving process's path: its plugins import here too
    spec = pickle.load(stream)
    context = ExporterContext(
        service_name=spec["service_name"], reporting_period=spec["reporting_period"],
        logger=logging.getLogger(f"gatescope.exporter.{spec['class'].name}"),
        metrics=_unavailable, stats_tag_options=spec["stats_tag_options"],
        export_timeout=spec["export_timeout"],
    )
    return spec["class"](spec["config"], context)


def _read_frame(fd: int) -> tuple[bytes, bytes] | None:
    header = _read_exact(fd, FRAME.size)
    if header is None:
        return None
    kind, size = FRAME.unpack(header)
    body = _read_exact(fd, size)
    return None if body is None else (kind, body)


def _yield_cpu(signum: int, frame: Any) -> None:
    os.sched_yield()


@contextlib.contextmanager
def sharing_cpu(every: float = YIELD_EVERY) -> Iterator[None]:
    """Yields the CPU every `every` seconds while the block runs (main thread only): a batch
    of spans takes the helper ~15 ms, which the scheduler would otherwise run in one go."""
    previous = signal.signal(signal.SIGALRM, _yield_cpu)
    signal.setitimer(signal.ITIMER_REAL, every, every)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Served:
    """The exporter this helper runs, driven one request at a time."""

    def __init__(self) -> None:
        self.exporter: Any = None

    def handle(self, kind: bytes, body: bytes) -> None:
        if kind == START:
            self.exporter = _build(body)
            self.exporter.start()
        elif kind == SPANS:
            with sharing_cpu():
                self.exporter.export_spans(unpack_spans(body))
        elif kind == METRICS_PUSH:
            self.exporter.export_metrics(pickle.loads(body))
        elif kind == BASELINE:
            self.exporter.adopt_metrics_baseline(pickle.loads(body))
        elif kind == SHUTDOWN:
            self.stop(float(pickle.loads(body)))

    def answer(self, kind: bytes, body: bytes) -> bytes:
        try:
            self.handle(kind, body)
        except ExportError as exc:
            payload = pickle.dumps(("ExportError", str(exc), exc.retryable))
        except Exception as exc:  # reported to the serving process, which logs and counts it
            payload = pickle.dumps((type(exc).__name__, str(exc), None))
        else:
            return FRAME.pack(OK, 0)
        return FRAME.pack(ERROR, len(payload)) + payload

    def stop(self, timeout: float) -> None:
        exporter, self.exporter = self.exporter, None
        if exporter is not None:
            exporter.shutdown(timeout)


def serve(read_fd: int, write_fd: int) -> int:
    """Answer the serving process's requests until it says stop or its pipe closes."""
    served = Served()
    while True:
        frame = _read_frame(read_fd)
        if frame is None:  # the serving process is gone: deliver what the exporter holds
            served.stop(5.0)
            return 0
        try:
            _write_all(write_fd, served.answer(*frame))
        except BrokenPipeError:
            served.stop(5.0)
            return 0
        if frame[0] == SHUTDOWN:
            return 0


def main(argv: Sequence[str]) -> int:
    # The serving process decides when this one stops (its pipe closes on exit or crash), so
    # Ctrl-C and a SIGTERM sent to the whole group do not cut off its final drain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(asctime)s gatescope export process {argv[2]} [%(process)d] "
               "%(levelname)s %(name)s: %(message)s",
    )
    return serve(int(argv[0]), int(argv[1]))
