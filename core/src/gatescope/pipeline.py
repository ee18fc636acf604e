"""Bounded span queue, one isolated worker per exporter, periodic metric push, flush, shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from gatescope.exporter import METRICS, TRACES, RateLimitedLog
from gatescope.metrics import COUNT, LAST_VALUE, MetricsSnapshot, View, ViewData
from gatescope.multiproc import PushLeadership
from gatescope.spans import SpanRecord
from gatescope.tracing import settle

log = logging.getLogger("gatescope.pipeline")

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # backoff between attempts of one batch
DISPATCH_INTERVAL = 0.1  # seconds the dispatcher sleeps when the queue is below a batch


class ExportError(Exception):
    """Raised by an exporter for a failed delivery; `retryable=False` drops the batch at once."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ExporterWorker:
    """Runs one exporter on its own thread so a slow or hung exporter delays only itself."""

    def __init__(self, exporter: Any, name: str, capacity: int, timeout: float,
                 period: float | None, snapshot: Callable[[], MetricsSnapshot],
                 warn: RateLimitedLog, leadership: PushLeadership | None = None) -> None:
        self.exporter = exporter
        self.name = name
        self.traces = TRACES in exporter.signals
        # an exporter that makes server spans' attributes from their raw facts itself (in its
        # helper process, or straight into its encoding): the dispatcher need not
        self.settles_http_facts = bool(getattr(exporter, "settles_http_facts", False))
        self.pushes = METRICS in exporter.signals and getattr(exporter, "pushes_metrics", True)
        self.capacity = capacity
        self.timeout = timeout
        self.period = period
        self._snapshot = snapshot
        self._warn = warn
        self._cond = threading.Condition()
        self._batches: deque[Sequence[SpanRecord]] = deque()
        self.pending = 0  # spans queued for this exporter
        self.busy = False
        self.exported = 0
        self.failed = 0  # spans given up on (queue full, retries exhausted, not retryable)
        self.errors = 0  # failed export calls
        self.metric_pushes = 0
        self.metric_pushes_left = 0  # another process leads the pushing (multi-process mode)
        self._leadership = leadership
        self._baselined = False
        self._push_now = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"gatescope-{self.name}", daemon=True)
        self._thread.start()

    def offer(self, batch: Sequence[SpanRecord]) -> None:
        with self._cond:
            room = self.capacity - self.pending
            if len(batch) > room:  # keep what fits, drop (and count) the rest
                lost = len(batch) - max(room, 0)
                self.failed += lost
                self._warn.warning(f"{self.name}:full", "gatescope: exporter %r is behind; "
                                   "dropped %d spans (its queue is full)", self.name, lost)
                if room <= 0:
                    return
                batch = batch[:room]
            self._batches.append(batch)
            self.pending += len(batch)
            self._cond.notify()

    def request_push(self) -> None:
        with self._cond:
            self._push_now = True
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._batches and not self.busy and not self._push_now

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def join(self, timeout: float) -> bool:
        if self._thread is None:
            return True
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def _run(self) -> None:
        next_push = time.monotonic() + self.period if self.pushes and self.period else None
        while True:
            with self._cond:
                while not self._batches and not self._push_now and not self._stopping:
                    wait = None if next_push is None else max(0.0, next_push - time.monotonic())
                    if wait == 0.0:
                        break
                    self._cond.wait(wait)
                batch = self._batches.popleft() if self._batches else None
                push = self._push_now or (next_push is not None and time.monotonic() >= next_push)
                self._push_now = False
                stopping = self._stopping and not self._batches
                self.busy = batch is not None or (push and self.pushes)
            if batch is not None:
                self._deliver(batch)
            if push and self.pushes:
                self._push_metrics()
                if self.period:
                    next_push = time.monotonic() + self.period
            with self._cond:
                if batch is not None:
                    self.pending -= len(batch)
                self.busy = False
            if stopping:
                return

    def _deliver(self, batch: Sequence[SpanRecord]) -> None:
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
            if delay:
                if self._stopping:
                    break  # no backoff during shutdown: the deadline is short
                time.sleep(delay)
            try:
                self.exporter.export_spans(batch)
            except ExportError as exc:
                self.errors += 1
                self._warn.warning(f"{self.name}:error", "gatescope: exporter %r failed to export "
                                   "%d spans (attempt %d): %s", self.name, len(batch), attempt + 1, exc)
                if not exc.retryable:
                    break
                continue
            except Exception as exc:  # a plugin bug must not kill the worker
                self.errors += 1
                self._warn.warning(f"{self.name}:crash", "gatescope: exporter %r raised %s: %s",
                                   self.name, type(exc).__name__, exc)
                break
            self.exported += len(batch)
            return
        self.failed += len(batch)

    def _push_metrics(self) -> None:
        leadership = self._leadership
        if leadership is not None and not leadership.held():
            self.metric_pushes_left += 1
            return
        adopt = getattr(self.exporter, "adopt_metrics_baseline", None)
        try:
            snapshot = self._snapshot()
            if leadership is not None and adopt is not None and not self._baselined:
                self._baselined = True  # first push as leader: start where the last one stopped
                previous = leadership.last_pushed(self.name, snapshot)
                if previous is not None:
                    adopt(previous)
            self.exporter.export_metrics(snapshot)
            self.metric_pushes += 1
            if leadership is not None and adopt is not None:
                leadership.remember(self.name, snapshot)
        except Exception as exc:
            self.errors += 1
            self._warn.warning(f"{self.name}:metrics", "gatescope: exporter %r failed to export "
                               "metrics: %s: %s", self.name, type(exc).__name__, exc)


class Pipeline:
    """Owns the span queue and the exporter workers; the hot path only calls `submit`."""

    def __init__(self, capacity: int = 20_000, batch_size: int = 1000, timeout: float = 10.0) -> None:
        self.capacity = capacity
        self.batch_size = batch_size
        self.timeout = timeout
        self.queue: deque[SpanRecord] = deque()
        self.dropped = 0
        self._drop_lock = threading.Lock()
        self.workers: list[ExporterWorker] = []
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._warn = RateLimitedLog(log)
        self.leadership: PushLeadership | None = None  # set in multi-process mode

    def add(self, exporter: Any, name: str, period: float | None,
            snapshot: Callable[[], MetricsSnapshot]) -> ExporterWorker:
        # an exporter may hold fewer spans than the queue (e.g. jaeger's buffer_max_count)
        limit = getattr(exporter, "max_pending_spans", None)
        capacity = min(self.capacity, limit) if isinstance(limit, int) and limit > 0 \
            else self.capacity
        worker = ExporterWorker(exporter, name, capacity, self.timeout, period, snapshot,
                                self._warn, self.leadership)
        self.workers.append(worker)
        return worker

    @property
    def trace_workers(self) -> list[ExporterWorker]:
        return [w for w in self.workers if w.traces]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        self._thread = threading.Thread(target=self._dispatch, name="gatescope-dispatch", daemon=True)
        self._thread.start()

    def submit(self, span: SpanRecord) -> None:
        """Hot path: never blocks; beyond capacity the span is dropped and counted."""
        queue = self.queue
        if len(queue) < self.capacity and not self._closed:
            queue.append(span)
            if len(queue) == self.batch_size:
                self._wake.set()
        else:
            with self._drop_lock:
                self.dropped += 1

    def _dispatch(self) -> None:
        while True:
            self._wake.wait(DISPATCH_INTERVAL)
            self._wake.clear()
            self._drain()
            if self._stopping and not self.queue:
                return

    def _drain(self) -> None:
        queue = self.queue
        workers = self.trace_workers
        while queue:
            # Only this thread takes from the queue, so at least `len(queue)` items are there.
            pop = queue.popleft
            batch = [pop() for _ in range(min(len(queue), self.batch_size))]
            if not workers:
                continue  # no trace exporter: spans are not kept
            if not all(w.settles_http_facts for w in workers):
                problems = settle(batch)  # else every trace exporter does it on its own side
                if problems:
                    self._warn.warning("settle", "gatescope: could not make the attributes of %d "
                                       "server spans (first: %r); they are exported without them",
                                       len(problems), problems[0])
            for worker in workers:
                worker.offer(batch)

    def flush(self, timeout: float) -> bool:
        """Deliver what is queued (and push metrics) within `timeout`; True when nothing failed."""
        deadline = time.monotonic() + timeout
        failed_before = sum(w.failed for w in self.workers) + self.dropped
        for worker in self.workers:
            if worker.pushes:
                worker.request_push()
        self._wake.set()
        while time.monotonic() < deadline:
            if not self.queue and all(w.idle() for w in self.workers):
                return sum(w.failed for w in self.workers) + self.dropped == failed_before
            self._wake.set()
            time.sleep(0.005)
        return False

    def shutdown(self, timeout: float) -> bool:
        """Flush, stop the threads and shut the exporters down, all within `timeout`."""
        deadline = time.monotonic() + timeout
        delivered = self.flush(max(0.0, timeout * 0.8))
        self._closed = True
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            if not worker.join(0):
                delivered = False
                log.warning("gatescope: exporter %r did not stop within the shutdown deadline",
                            worker.name)
                kill = getattr(worker.exporter, "kill", None)
                if callable(kill):  # work outside this process would outlive it: end it too
                    kill()
                continue
            try:
                worker.exporter.shutdown(max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                delivered = False
                log.warning("gatescope: exporter %r failed to shut down: %s: %s", worker.name,
                            type(exc).__name__, exc)
        return delivered

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks and threads, none of the parent's pending spans."""
        self.queue = deque()
        self._drop_lock = threading.Lock()
        self._wake = threading.Event()
        self._warn = RateLimitedLog(log)
        old = self.workers
        self.workers = []
        for w in old:
            self.add(w.exporter, w.name, w.period, w._snapshot)

    def self_views(self) -> list[ViewData]:
        """gatescope's own health as views, so operators can alert on telemetry loss."""
        start = 0
        by_exporter = ("exporter",)
        rows: list[tuple[View, dict[tuple[str, ...], int]]] = [
            (View("gatescope/spans_queued", "Spans waiting in gatescope's export queue", "1",
                  LAST_VALUE, internal=True), {(): len(self.queue)}),
            (View("gatescope/spans_dropped", "Spans dropped because the export queue was full",
                  "1", COUNT, internal=True), {(): self.dropped}),
            (View("gatescope/spans_exported", "Spans delivered, per exporter", "1", COUNT,
                  by_exporter, internal=True),
             {(w.name,): w.exported for w in self.workers if w.traces}),
            (View("gatescope/spans_failed", "Spans an exporter gave up on (queue full, retries "
                  "exhausted, rejected)", "1", COUNT, by_exporter, internal=True),
             {(w.name,): w.failed for w in self.workers if w.traces}),
            (View("gatescope/export_errors", "Failed export calls, per exporter", "1", COUNT,
                  by_exporter, internal=True), {(w.name,): w.errors for w in self.workers}),
        ]
        return [ViewData(view, start, values) for view, values in rows]
