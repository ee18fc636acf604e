"""CPU placement for the runs: the measured process on one CPU, everything else on the rest.

Unpinned, the scheduler sometimes runs a receiver or an export helper on the measured process's
CPU: two builds of the same variant then differ by ~2 µs per request, run after run, and a helper
that shares the CPU falls behind and drops spans. Pinned, the process under test owns one CPU
(all of its threads share the GIL anyway) and the processes it talks to run beside it, as they
would on any machine with a core to spare.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def _threads(pid: int) -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:  # gone already
        return []


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (field 3 onwards: state, ppid, ...), or None when
    the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _place(pid: int, cpus: set[int]) -> None:
    for tid in _threads(pid):
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(tid, cpus)


def _split() -> tuple[set[int], set[int]] | None:
    """(the measured process's CPU, everyone else's), or None with one CPU or no /proc."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2 or not os.path.isdir("/proc/self/task"):
        return None
    return {available[0]}, set(available[1:])


def describe() -> str | None:
    """How the benchmarks place processes here, or None where they cannot."""
    split = _split()
    if split is None:
        return None
    own, rest = (",".join(map(str, sorted(cpus))) for cpus in split)
    return (f"the measured process (in process: the benchmark; over HTTP: the server) on CPU "
            f"{own}; its receivers, export helpers and wrk on CPU {rest}")


def place_server(pid: int) -> None:
    """Over HTTP: the server's threads on the measured CPU, its child processes on the others."""
    split = _split()
    if split is not None:
        for child in children(pid):
            _place(child, split[1])
        _place(pid, split[0])


def to_the_others() -> None:
    """A `preexec_fn` for the load generator: off the measured CPU."""
    split = _split()
    if split is not None:
        os.sched_setaffinity(0, split[1])


@contextlib.contextmanager
def pinned() -> Iterator[None]:
    """Pin this process's threads to its first CPU and its child processes to the others (a
    no-op where `describe()` is None); this process's threads get every CPU back afterwards."""
    split = _split()
    if split is None:
        yield
        return
    me = os.getpid()
    for child in children(me):
        _place(child, split[1])
    _place(me, split[0])
    try:
        yield
    finally:
        _place(me, split[0] | split[1])
