"""Stats rows shared by N worker processes: per-process mmap files, summed at snapshot time.

With `GATESCOPE_MULTIPROC_DIR` set, every process writes its view rows in place into its own
memory-mapped file (`<pid>-<token>.gsdb`), so nothing is lost when a worker is killed: the kernel
keeps the written pages. A snapshot sums the files of every process, live or dead. Files of dead
processes are compacted into `archive.json` under a directory lock; the archive lists the files
it absorbed, so a file is never counted twice even if its removal is interrupted.
"""

from __future__ import annotations

import fcntl
import json
import logging
import mmap
import os
import secrets
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from gatescope.metrics import COUNT, DISTRIBUTION, DistributionValue, MetricsSnapshot, View, ViewData

ENV_DIR = "GATESCOPE_MULTIPROC_DIR"
SUFFIX = ".gsdb"
ARCHIVE = "archive.json"
LOCK = ".lock"
PUSH_LOCK = "push.lock"  # flock held by the one process whose exporters push the summed totals
MAGIC = b"GSDB0001"
HEADER = 16  # u64 bytes used (written last: the commit), 8-byte magic
INITIAL_SIZE = 1 << 16
_USED = struct.Struct("=Q")
_ENTRY = struct.Struct("=II")  # metadata length, number of doubles

log = logging.getLogger("gatescope.multiproc")

Rows = dict[str, dict[tuple[str, ...], list[float]]]


def configured_directory() -> str | None:
    """The multi-process directory from the environment, or None for single-process mode."""
    return os.environ.get(ENV_DIR) or None


class ProcessFile:
    """This process's append-only row file; each row is a view of doubles written in place."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.name = f"{os.getpid()}-{secrets.token_hex(6)}{SUFFIX}"
        self.path = os.path.join(directory, self.name)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "r+b", buffering=0)
        self._maps: list[mmap.mmap] = []  # every mapping stays alive: rows are views into them
        self._map: mmap.mmap | None = None
        self._capacity = 0
        self._used = HEADER
        self._lock = threading.Lock()
        self._views: set[str] = set()
        self._grow(INITIAL_SIZE)
        assert self._map is not None
        self._map[8:16] = MAGIC
        self._map[0:8] = _USED.pack(self._used)

    def _grow(self, needed: int) -> None:
        capacity = max(INITIAL_SIZE, self._capacity * 2)
        while capacity < needed:
            capacity *= 2
        os.ftruncate(self._file.fileno(), capacity)
        self._map = mmap.mmap(self._file.fileno(), capacity)
        self._maps.append(self._map)
        self._capacity = capacity

    def _append(self, meta: Any, values: Sequence[float]) -> memoryview[float]:
        encoded = json.dumps(meta, separators=(",", ":")).encode()
        pad = -(_ENTRY.size + len(encoded)) % 8
        body = _ENTRY.size + len(encoded) + pad
        size = body + 8 * len(values)
        with self._lock:
            if self._used + size > self._capacity:
                self._grow(self._used + size)
            mapping = self._map
            assert mapping is not None
            pos = self._used
            mapping[pos:pos + body] = _ENTRY.pack(len(encoded), len(values)) + encoded + b" " * pad
            start = pos + body
            end = start + 8 * len(values)
            mapping[start:end] = struct.pack(f"={len(values)}d", *values)
            self._used += size
            mapping[0:8] = _USED.pack(self._used)  # commit: readers see the entry from now on
        doubles: memoryview[float] = memoryview(mapping)[start:end].cast("d")
        return doubles

    def define(self, view: View, start_ns: int) -> None:
        """Record a view's description once, so any process can render rows it never saw."""
        if view.name in self._views:
            return
        self._views.add(view.name)
        self._append(["view", _view_to_json(view), start_ns], ())

    def row(self, view: View, key: tuple[str, ...], initial: Sequence[float]) -> memoryview[float]:
        """A new row of `view`; the returned doubles live in the shared file."""
        return self._append(["row", view.name, list(key)], initial)


def _view_to_json(view: View) -> dict[str, Any]:
    return {"name": view.name, "description": view.description, "unit": view.unit,
            "aggregation": view.aggregation, "tag_keys": list(view.tag_keys),
            "bounds": list(view.bounds), "measure": view.measure}


def _view_from_json(data: dict[str, Any]) -> View:
    return View(data["name"], data["description"], data["unit"], data["aggregation"],
                tuple(data["tag_keys"]), tuple(data["bounds"]), data.get("measure", ""))


class Totals:
    """Views and rows summed over any number of process files and the archive."""

    def __init__(self) -> None:
        self.views: dict[str, View] = {}
        self.start_ns: dict[str, int] = {}
        self.rows: Rows = {}

    def add_view(self, view: View, start_ns: int) -> None:
        self.views.setdefault(view.name, view)
        known = self.start_ns.get(view.name)
        self.start_ns[view.name] = start_ns if known is None else min(known, start_ns)

    def add_row(self, name: str, key: tuple[str, ...], values: Sequence[float]) -> None:
        rows = self.rows.setdefault(name, {})
        current = rows.get(key)
        if current is None:
            rows[key] = list(values)
        elif len(current) == 1:
            current[0] += values[0]
        else:
            current[0] += values[0]
            current[1] += values[1]
            current[2] += values[2]
            current[3] = min(current[3], values[3])
            current[4] = max(current[4], values[4])
            for index in range(5, len(current)):
                current[index] += values[index]

    def merge(self, other: Totals) -> None:
        for name, view in other.views.items():
            self.add_view(view, other.start_ns[name])
        for name, rows in other.rows.items():
            for key, values in rows.items():
                self.add_row(name, key, values)

    def view_data(self, order: Sequence[View]) -> list[ViewData]:
        """ViewData for `order` first (this process's views), then views only other files had."""
        names = [v.name for v in order] + [n for n in self.views if n not in {v.name for v in order}]
        known = {v.name: v for v in order}
        out = []
        for name in names:
            view = known.get(name) or self.views[name]
            rows = self.rows.get(name, {})
            start = self.start_ns.get(name, 0)
            width = len(view.tag_keys)
            kept = {key: _value(view, values) for key, values in rows.items() if len(key) == width}
            if len(kept) != len(rows):
                log.warning("gatescope: %d rows of %s have other tag keys than this process "
                            "(workers sharing %s run different configs); not exported",
                            len(rows) - len(kept), name, ENV_DIR)
            out.append(ViewData(view, start, kept))
        return out


def _value(view: View, values: Sequence[float]) -> int | float | DistributionValue:
    if view.aggregation == COUNT:
        return int(values[0])
    if view.aggregation != DISTRIBUTION:
        return values[0]
    buckets = tuple(int(v) for v in values[5:])
    count = sum(buckets)  # the buckets are the truth; a torn read never breaks count == +Inf
    total, squares = values[1], values[2]
    ssd = max(0.0, squares - total * total / count) if count else 0.0
    return DistributionValue(count, total, values[3] if count else 0.0,
                             values[4] if count else 0.0, ssd, buckets)


def read_process_file(path: str) -> Totals:
    """Parse one process file; entries past the committed length are ignored."""
    with open(path, "rb") as handle:
        data = handle.read()
    totals = Totals()
    if len(data) < HEADER or data[8:16] != MAGIC:
        raise ValueError(f"{path} is not a gatescope multi-process file")
    used = min(_USED.unpack_from(data, 0)[0], len(data))
    pos = HEADER
    while pos + _ENTRY.size <= used:
        meta_len, count = _ENTRY.unpack_from(data, pos)
        meta = json.loads(data[pos + _ENTRY.size:pos + _ENTRY.size + meta_len])
        start = pos + _ENTRY.size + meta_len + (-(_ENTRY.size + meta_len) % 8)
        values = struct.unpack_from(f"={count}d", data, start)
        pos = start + 8 * count
        if meta[0] == "view":
            totals.add_view(_view_from_json(meta[1]), int(meta[2]))
        else:
            totals.add_row(meta[1], tuple(meta[2]), values)
    return totals


def pid_alive(pid: int) -> bool:
    """False only when no process has this pid (a reused pid reads as alive: never a loss)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def directory_lock(directory: str) -> Iterator[None]:
    """Serialise compaction and serving decisions across every process of the directory."""
    fd = os.open(os.path.join(directory, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class Archive:
    """Totals of dead processes plus the names of the files already absorbed."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, ARCHIVE)
        self._stamp: tuple[int, int, int] | None = None
        self.totals = Totals()
        self.absorbed: frozenset[str] = frozenset()

    def load(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self.totals, self.absorbed = None, Totals(), frozenset()
            return
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        with open(self.path, encoding="utf-8") as handle:
            doc = json.load(handle)
        totals = Totals()
        for view, start in doc["views"]:
            totals.add_view(_view_from_json(view), int(start))
        for name, key, values in doc["rows"]:
            totals.add_row(name, tuple(key), values)
        self.totals, self.absorbed, self._stamp = totals, frozenset(doc["absorbed"]), stamp

    def absorb(self, names: list[str], dead: Totals) -> None:
        """Write archive + dead atomically (rename is the commit), then remove their files."""
        totals = Totals()
        totals.merge(self.totals)
        totals.merge(dead)
        doc = {
            "version": 1,
            "absorbed": sorted(self.absorbed | set(names)),
            "views": [[_view_to_json(v), totals.start_ns[n]] for n, v in totals.views.items()],
            "rows": [[name, list(key), values] for name, rows in totals.rows.items()
                     for key, values in rows.items()],
        }
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, separators=(",", ":"))
        os.replace(temporary, self.path)
        self._stamp = None
        self.load()
        directory = os.path.dirname(self.path)
        for name in names:
            _remove(os.path.join(directory, name))


def _remove(path: str) -> None:
    with suppress(FileNotFoundError):
        os.remove(path)


class Directory:
    """Reads every process file of a directory into one set of totals."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.archive = Archive(path)

    def collect(self) -> Totals:
        """Sum live and dead processes; compact the dead ones into the archive."""
        with directory_lock(self.path):
            self.archive.load()
            totals = Totals()
            totals.merge(self.archive.totals)
            dead_names: list[str] = []
            dead = Totals()
            for entry in os.scandir(self.path):
                if not entry.name.endswith(SUFFIX):
                    continue
                if entry.name in self.archive.absorbed:
                    _remove(entry.path)  # absorbed earlier; its removal was interrupted
                    continue
                try:
                    found = read_process_file(entry.path)
                except (OSError, ValueError) as exc:
                    log.warning("gatescope: skipping unreadable stats file %s: %s", entry.name, exc)
                    continue
                totals.merge(found)
                pid = entry.name.split("-", 1)[0]
                if pid.isdigit() and not pid_alive(int(pid)):
                    dead_names.append(entry.name)
                    dead.merge(found)
            if dead_names:
                self.archive.absorb(dead_names, dead)
        return totals


class PushLeadership:
    """One process per directory pushes metrics, since every process would push the same sums.

    The leader holds an exclusive `flock` for its lifetime; the OS releases it when the process
    dies, and the next process to try takes over. Each push's count totals are kept in the
    directory, so a new leader's delta exporters (DogStatsD) start where the last one stopped.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._fd: int | None = None

    def held(self) -> bool:
        """Whether this process leads, trying (without waiting) to become the leader if not."""
        if self._fd is not None:
            return True
        fd = os.open(os.path.join(self.directory, PUSH_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _pushed_path(self, exporter: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in exporter)
        return os.path.join(self.directory, f"pushed-{safe}.json")

    def remember(self, exporter: str, snapshot: MetricsSnapshot) -> None:
        """After a push: the count totals it carried (written whole, then renamed into place)."""
        counts = {data.view.name: [[list(key), value] for key, value in data.rows.items()
                                   if isinstance(value, int | float)]
                  for data in snapshot.views if data.view.aggregation == COUNT}
        path = self._pushed_path(exporter)
        with open(path + ".tmp", "w") as out:
            json.dump({"time_ns": snapshot.time_ns, "counts": counts}, out)
        os.replace(path + ".tmp", path)

    def last_pushed(self, exporter: str, current: MetricsSnapshot) -> MetricsSnapshot | None:
        """The count views as the last leader pushed them (shaped like `current`), if any."""
        try:
            with open(self._pushed_path(exporter)) as found:
                data = json.load(found)
        except (OSError, ValueError):
            return None
        counts = data.get("counts", {})
        views = tuple(ViewData(view.view, view.start_ns,
                               {tuple(key): value for key, value in counts[view.view.name]})
                      for view in current.views if view.view.name in counts)
        return MetricsSnapshot(int(data.get("time_ns", 0)), views)

    def reset_after_fork(self) -> None:
        """In a forked child: the inherited descriptor shares the parent's lock; drop it (the
        parent keeps leading) and compete afresh."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
