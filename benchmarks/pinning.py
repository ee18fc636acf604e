"""CPU placement for in-process runs: the measured process on one CPU, its children on the rest.

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


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _place(pid: int, cpus: set[int]) -> None:
    for tid in _threads(pid):
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(tid, cpus)


def describe() -> str | None:
    """How `pinned` places processes here, or None where it cannot (one CPU, no /proc)."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2 or not os.path.isdir("/proc/self/task"):
        return None
    rest = ",".join(map(str, available[1:]))
    return (f"in process, the measured process on CPU {available[0]} and its receivers and "
            f"export helpers on CPU {rest}")


@contextlib.contextmanager
def pinned() -> Iterator[None]:
    """Pin this process's threads to its first CPU and its child processes to the others (a
    no-op where `describe()` is None); this process's threads get every CPU back afterwards."""
    if describe() is None:
        yield
        return
    me = os.getpid()
    available = sorted(os.sched_getaffinity(0))
    for child in children(me):
        _place(child, set(available[1:]))
    _place(me, {available[0]})
    try:
        yield
    finally:
        _place(me, set(available))
