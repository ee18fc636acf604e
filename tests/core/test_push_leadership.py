"""Multi-process mode: one process pushes the summed metrics, and a successor starts where it stopped."""

from __future__ import annotations

import logging
import os
from typing import Any

from gatescope.exporter import METRICS, RateLimitedLog
from gatescope.metrics import MetricsSnapshot
from gatescope.multiproc import PushLeadership
from gatescope.pipeline import ExporterWorker
from gatescope.stats import Stats
from gatescope.testing import exit_code, fork_child


def test_one_process_leads_until_it_exits(tmp_path) -> None:
    ready, release = os.pipe(), os.pipe()

    def leader() -> bool:
        os.write(ready[1], b"1" if PushLeadership(str(tmp_path)).held() else b"0")
        return os.read(release[0], 1) == b"x"  # lead until the parent has looked

    pid = fork_child(leader)
    assert os.read(ready[0], 1) == b"1"
    mine = PushLeadership(str(tmp_path))
    assert not mine.held()  # the child leads
    os.write(release[1], b"x")
    assert exit_code(pid) == 0
    assert mine.held()  # the OS released the lock with the process: this one takes over
    assert mine.held()  # and keeps it


class Recorder:
    """A push exporter that keeps what it was given."""

    name = "recorder"
    signals = frozenset({METRICS})

    def __init__(self, adopts: bool) -> None:
        self.pushed: list[MetricsSnapshot] = []
        self.adopted: list[MetricsSnapshot] = []
        if adopts:
            self.adopt_metrics_baseline = self.adopted.append

    def export_metrics(self, snapshot: MetricsSnapshot) -> None:
        self.pushed.append(snapshot)


def worker_for(exporter: Any, stats: Stats) -> ExporterWorker:
    return ExporterWorker(exporter, "recorder", 10, 1.0, None, stats.snapshot,
                          RateLimitedLog(logging.getLogger("test")), stats.push_leadership)


def count(snapshot: MetricsSnapshot) -> int:
    data = snapshot.view("opencensus.io/http/server/request_count")
    assert data is not None
    return sum(int(v) for v in data.rows.values())  # type: ignore[call-overload]


def test_a_worker_pushes_only_while_its_process_leads(tmp_path) -> None:
    stats = Stats(multiprocess_dir=str(tmp_path))
    exporter = Recorder(adopts=False)
    worker = worker_for(exporter, stats)
    other = PushLeadership(str(tmp_path))
    assert other.held()  # another process (same semantics: a separate open file) leads
    stats.server.record("h", "", "GET", "200", 0, 1, 1.0)
    worker._push_metrics()
    assert exporter.pushed == [] and worker.metric_pushes_left == 1
    other.reset_after_fork()  # closes its descriptor: the lock is free
    worker._push_metrics()
    assert [count(s) for s in exporter.pushed] == [1]


def test_a_new_leader_adopts_the_counts_the_last_one_pushed(tmp_path) -> None:
    stats = Stats(multiprocess_dir=str(tmp_path))
    for _ in range(5):
        stats.server.record("h", "", "GET", "200", 0, 1, 1.0)
    old = PushLeadership(str(tmp_path))
    assert old.held()
    old.remember("recorder", stats.snapshot())  # the old leader pushed 5
    old.reset_after_fork()  # and went away
    for _ in range(2):
        stats.server.record("h", "", "GET", "200", 0, 1, 1.0)
    exporter = Recorder(adopts=True)
    worker = worker_for(exporter, stats)
    worker._push_metrics()
    assert [count(s) for s in exporter.adopted] == [5]  # deltas start from what was sent
    assert [count(s) for s in exporter.pushed] == [7]
    worker._push_metrics()
    assert len(exporter.adopted) == 1  # only when it becomes the leader
    assert PushLeadership(str(tmp_path)).last_pushed("recorder", stats.snapshot()) is not None


def test_single_process_mode_has_no_leadership() -> None:
    stats = Stats()
    exporter = Recorder(adopts=True)
    worker = worker_for(exporter, stats)
    worker._push_metrics()
    assert len(exporter.pushed) == 1 and exporter.adopted == []
