"""gatescope.multiproc: per-process mmap rows summed across processes, dead ones compacted once."""

from __future__ import annotations

import json
import os
import shutil
import signal

from gatescope import multiproc
from gatescope.stats import Stats, TagOptions

SERVER_COUNT = "opencensus.io/http/server/request_count"
LATENCY = "opencensus.io/http/server/latency"


def _count(stats: Stats) -> dict:
    return dict(stats.snapshot().view(SERVER_COUNT).rows)


def test_a_killed_child_loses_nothing_and_is_counted_once(tmp_path) -> None:
    directory = str(tmp_path)
    stats = Stats(TagOptions(status=True), multiprocess_dir=directory)
    stats.server.record("h", "/", "GET", "200", 1, 2, 3.0)
    pid = os.fork()
    if pid == 0:  # the child: a worker that records, then dies by SIGKILL without any cleanup
        stats.reset_after_fork()
        for _ in range(5):
            stats.server.record("h", "/", "GET", "500", 1, 2, 1.0)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert _count(stats) == {("200",): 1, ("500",): 5}
    archive = json.loads((tmp_path / multiproc.ARCHIVE).read_text())
    assert len(archive["absorbed"]) == 1 and not (tmp_path / archive["absorbed"][0]).exists()
    assert _count(stats) == {("200",): 1, ("500",): 5}  # compaction is not counted again
    latency = stats.snapshot().view(LATENCY).rows[("500",)]
    assert latency.count == 5 and latency.bucket_counts[1] == 5  # 1.0 is in [1, 2)


def test_a_file_absorbed_but_not_removed_is_not_counted_twice(tmp_path) -> None:
    directory = str(tmp_path)
    stats = Stats(multiprocess_dir=directory)
    pid = os.fork()
    if pid == 0:
        stats.reset_after_fork()
        stats.server.record("h", "/", "GET", "200", 1, 2, 3.0)
        os._exit(0)
    os.waitpid(pid, 0)
    (dead,) = [p for p in tmp_path.glob(f"{pid}-*{multiproc.SUFFIX}")]
    kept = tmp_path / "copy"
    shutil.copy(dead, kept)
    assert _count(stats) == {(): 1}
    shutil.copy(kept, dead)  # as if the removal after the archive rename had been interrupted
    assert _count(stats) == {(): 1}
    assert not dead.exists()


def test_single_process_mode_writes_no_files(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(multiproc.ENV_DIR, raising=False)
    stats = Stats()
    stats.server.record("h", "/", "GET", "200", 1, 2, 3.0)
    assert not stats.multiprocess and _count(stats) == {(): 1}
