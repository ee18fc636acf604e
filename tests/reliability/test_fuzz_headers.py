"""Header fuzzing: malformed trace context is ignored, never crashes, never propagates an invalid id."""

from __future__ import annotations

import re

from gatescope import propagation
from gatescope.propagation import TraceContext
from gatescope.sampling import rate_sampler
from gatescope.tracing import Span, Tracer
from hypothesis import given, settings
from hypothesis import strategies as st

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
NAMES = ["x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags", "b3", "traceparent"]

hexish = st.text(alphabet="0123456789abcdefABCDEFxz-", max_size=70)
header_value = st.one_of(
    hexish,
    st.text(max_size=40),
    st.sampled_from(["0" * 32, "0" * 16, "1", "0", "d", "true", "", " ", "-", "00-" + "0" * 32 + "-" + "1" * 16 + "-01"]),
    st.builds(lambda n: "a" * n, st.integers(0, 20_000)),
    st.builds(lambda t, s, f: f"{t}-{s}-{f}", hexish, hexish, st.sampled_from(["0", "1", "d", "x", ""])),
    st.builds(lambda v, t, s, f: f"{v}-{t}-{s}-{f}", st.sampled_from(["00", "01", "ff", "zz"]), hexish, hexish,
              st.sampled_from(["00", "01", "ff", "1"])),
)


def valid(ctx: TraceContext) -> bool:
    return bool(HEX32.match(ctx.trace_id)) and ctx.trace_id != "0" * 32 and bool(HEX16.match(ctx.span_id)) \
        and ctx.span_id != "0" * 16


@given(st.dictionaries(st.sampled_from(NAMES), header_value, max_size=6))
@settings(max_examples=1500, deadline=None, database=None)
def test_extraction_never_crashes_and_only_yields_valid_ids(headers: dict[str, str]) -> None:
    ctx = propagation.extract(headers.get)
    if ctx is not None:
        assert valid(ctx), ctx
    tracer = Tracer(rate_sampler(100), lambda span: None)
    root = tracer.start_root("/x", 1, ctx)
    assert isinstance(root, Span)
    if ctx is None:
        assert root.parent_span_id is None  # a new root trace starts
    for name, value in propagation.inject(root.trace_id, root.span_id, True):
        if name == "X-B3-TraceId":
            assert HEX32.match(value) and value != "0" * 32
        if name == "X-B3-SpanId":
            assert HEX16.match(value) and value != "0" * 16
        if name == "traceparent":
            assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$", value)


@given(st.dictionaries(st.sampled_from(NAMES), header_value, max_size=6))
@settings(max_examples=300, deadline=None, database=None)
def test_client_cannot_force_sampling_at_rate_zero(headers: dict[str, str]) -> None:
    tracer = Tracer(rate_sampler(0), lambda span: None)
    forced = {**headers, "x-b3-sampled": "1", "x-b3-flags": "1"}
    root = tracer.start_root("/x", 1, propagation.extract(forced.get))
    assert not isinstance(root, Span)
