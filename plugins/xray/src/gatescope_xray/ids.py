"""OpenCensus ids -> X-Ray ids, consistent for every span of one trace."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

#: X-Ray refuses trace ids whose time part is older than 30 days; the OpenCensus Go exporter
#: (census-ecosystem/opencensus-go-exporter-aws) keeps 28 days and allows 5 minutes of skew.
MAX_AGE_SECONDS = 28 * 24 * 3600
MAX_SKEW_SECONDS = 5 * 60
DEFAULT_REMEMBERED_TRACES = 65_536


class TraceIdMapper:
    """Maps a 32-hex OpenCensus trace id to `1-<8 hex epoch>-<24 hex>`.

    The Go exporter's convention: the 24-hex identifier is the last 96 bits of the OpenCensus
    id, and the epoch is its first 32 bits when those are a plausible recent time (ids that came
    from X-Ray or a time-prefixed generator). Otherwise the Go exporter took "now", which splits
    one trace across seconds. Here the epoch is the start second of the first span of that trace
    seen (or now, when that start is itself outside X-Ray's window), remembered (bounded, least
    recently used first out) so that all spans of a trace exported by this process get the same
    X-Ray id.
    """

    def __init__(self, capacity: int = DEFAULT_REMEMBERED_TRACES) -> None:
        self._capacity = capacity
        self._epochs: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def convert(self, trace_id: str, start_seconds: int, now: float | None = None) -> str:
        identifier = trace_id[8:32]
        prefix = int(trace_id[0:8], 16)
        current = time.time() if now is None else now
        if _recent(prefix, current):
            epoch = prefix
        else:
            epoch = self._remembered(
                trace_id, start_seconds if _recent(start_seconds, current) else int(current)
            )
        return f"1-{epoch:08x}-{identifier}"

    def _remembered(self, trace_id: str, start_seconds: int) -> int:
        with self._lock:
            epoch = self._epochs.get(trace_id)
            if epoch is None:
                epoch = start_seconds & 0xFFFFFFFF
                self._epochs[trace_id] = epoch
                if len(self._epochs) > self._capacity:
                    self._epochs.popitem(last=False)
            else:
                self._epochs.move_to_end(trace_id)
            return epoch


def _recent(epoch: int, now: float) -> bool:
    """Inside the window X-Ray accepts: at most 28 days old, at most 5 minutes ahead."""
    return -MAX_SKEW_SECONDS <= now - epoch <= MAX_AGE_SECONDS
