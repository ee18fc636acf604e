"""`sample_rate` to a sampler, with KrakenD's (OpenCensus Go's) decision rules."""

from __future__ import annotations

from collections.abc import Callable

from gatescope.propagation import TraceContext

Sampler = Callable[[str, TraceContext | None], bool]  # (trace_id, parent) -> sampled?


def never(trace_id: str, parent: TraceContext | None) -> bool:
    return False


def always(trace_id: str, parent: TraceContext | None) -> bool:
    return True


def rate_sampler(sample_rate: int) -> Sampler:
    """0 never (a client cannot force sampling), 100 always, else a sampled parent or trace-id odds."""
    if sample_rate <= 0:
        return never
    if sample_rate >= 100:
        return always
    # OpenCensus Go's ProbabilitySampler: the upper 63 bits of the trace id against a bound.
    bound = int(sample_rate / 100.0 * (1 << 63))

    def probability(trace_id: str, parent: TraceContext | None) -> bool:
        if parent is not None and parent.sampled:
            return True
        return (int(trace_id[:16], 16) >> 1) < bound

    return probability
