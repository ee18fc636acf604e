"""Sampler, propagation, status mapping and stats aggregation: the request-path building blocks."""

from __future__ import annotations

import pytest
from gatescope import propagation
from gatescope.metrics import LATENCY_BOUNDS, OVERFLOW_TAG_VALUE, SIZE_BOUNDS
from gatescope.propagation import TraceContext
from gatescope.sampling import rate_sampler
from gatescope.spans import (
    DEADLINE_EXCEEDED,
    INVALID_ARGUMENT,
    NOT_FOUND,
    OK,
    RESOURCE_EXHAUSTED,
    UNAUTHENTICATED,
    UNAVAILABLE,
    UNKNOWN,
    status_from_http,
)
from gatescope.stats import Stats, TagOptions
from gatescope.tracing import Span, Tracer, new_trace_id


def headers(**values):
    table = {k.replace("_", "-").lower(): v for k, v in values.items()}
    return table.get


# --- sampling ---------------------------------------------------------------------------------

def test_rate_zero_never_samples_even_with_a_sampled_parent():
    sampler = rate_sampler(0)
    parent = TraceContext("a" * 32, "b" * 16, True, remote=True)
    assert not any(sampler(new_trace_id(), parent) for _ in range(200))


def test_rate_hundred_always_samples():
    sampler = rate_sampler(100)
    assert all(sampler(new_trace_id(), None) for _ in range(200))


def test_probability_from_trace_id_and_sampled_parent_respected():
    sampler = rate_sampler(50)
    assert sampler("0" * 32, None) is True  # lowest ids are below the bound
    assert sampler("f" * 32, None) is False
    assert sampler("f" * 32, TraceContext("f" * 32, "1" * 16, True, remote=True)) is True
    hits = sum(sampler(new_trace_id(), None) for _ in range(4000))
    assert 1700 < hits < 2300


# --- propagation ------------------------------------------------------------------------------

def test_b3_multi_header_with_64_bit_trace_id():
    ctx = propagation.extract(headers(x_b3_traceid="463AC35C9F6413AD", x_b3_spanid="a2fb4a1d1a96d312",
                                      x_b3_sampled="1"))
    assert ctx == TraceContext("0000000000000000463ac35c9f6413ad", "a2fb4a1d1a96d312", True, True)


def test_b3_single_and_traceparent():
    tid, sid = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
    assert propagation.extract(headers(b3=f"{tid}-{sid}-0")) == TraceContext(tid, sid, False, True)
    assert propagation.extract(headers(b3=f"{tid}-{sid}-d-05e3ac9a4f6e3b90")).sampled is True
    assert propagation.extract(headers(traceparent=f"00-{tid}-{sid}-01")) == TraceContext(tid, sid, True, True)


@pytest.mark.parametrize("bad", [
    {"x_b3_traceid": "0" * 32, "x_b3_spanid": "1" * 16},
    {"x_b3_traceid": "zz" * 16, "x_b3_spanid": "1" * 16},
    {"x_b3_traceid": "1" * 31, "x_b3_spanid": "1" * 16},
    {"x_b3_traceid": "1" * 32, "x_b3_spanid": "0" * 16},
    {"b3": "1"},
    {"b3": "a-b-c-d-e"},
    {"b3": f"{'1' * 32}-{'2' * 16}-maybe"},
    {"traceparent": f"00-{'0' * 32}-{'1' * 16}-01"},
    {"traceparent": f"ff-{'1' * 32}-{'1' * 16}-01"},
    {"traceparent": f"00-{'1' * 32}-{'1' * 16}-01-extra"},
    {"traceparent": "x" * 10_000},
])
def test_invalid_context_is_ignored(bad):
    assert propagation.extract(headers(**bad)) is None


def test_inject_writes_b3_and_traceparent():
    out = dict(propagation.inject("a" * 32, "b" * 16, True))
    assert out == {"X-B3-TraceId": "a" * 32, "X-B3-SpanId": "b" * 16, "X-B3-Sampled": "1",
                   "traceparent": f"00-{'a' * 32}-{'b' * 16}-01"}


# --- tracing ----------------------------------------------------------------------------------

def test_unsampled_request_makes_no_span_but_keeps_remote_context():
    sunk = []
    tracer = Tracer(rate_sampler(0), sunk.append)
    assert tracer.start_root("/x", 1, None) is None
    parent = TraceContext("a" * 32, "b" * 16, True, remote=True)
    kept = tracer.start_root("/x", 1, parent)
    assert isinstance(kept, TraceContext) and kept.trace_id == "a" * 32 and not kept.sampled


def test_sampled_span_continues_remote_parent_and_ends_once():
    sunk = []
    tracer = Tracer(rate_sampler(100), sunk.append)
    parent = TraceContext("a" * 32, "b" * 16, True, remote=True)
    span = tracer.start_root("/x", 1, parent)
    assert isinstance(span, Span)
    assert (span.trace_id, span.parent_span_id) == ("a" * 32, "b" * 16)
    span.set_http_status(503)
    span.end()
    span.end()
    assert sunk == [span] and span.status_code == UNAVAILABLE and span.status_message == "UNAVAILABLE"
    assert span.attributes["http.status_code"] == 503 and span.end_ns >= span.start_ns


@pytest.mark.parametrize(("code", "status"), [
    (200, OK), (302, OK), (400, INVALID_ARGUMENT), (401, UNAUTHENTICATED), (404, NOT_FOUND),
    (429, RESOURCE_EXHAUSTED), (500, UNKNOWN), (503, UNAVAILABLE), (504, DEADLINE_EXCEEDED),
    (418, UNKNOWN), (100, UNKNOWN),
])
def test_http_status_mapping_as_opencensus(code, status):
    assert status_from_http(code) == status


# --- stats ------------------------------------------------------------------------------------

def test_bucket_rule_first_bound_greater_than_value():
    stats = Stats()
    for latency in (0.5, 1.0, 1.999, 2.0, 100000.0, 250000.0):
        stats.server.record("h", "/p", "GET", "200", 1024, 0, latency)
    latency = stats.snapshot().view("opencensus.io/http/server/latency").rows[()]
    counts = latency.bucket_counts
    assert len(counts) == len(LATENCY_BOUNDS) + 1
    assert counts[0] == 1  # 0.5 < 1
    assert counts[1] == 2  # 1.0 and 1.999 in [1, 2)
    assert counts[2] == 1  # 2.0 in [2, 3)
    assert counts[-1] == 2  # 100000 and above overflow
    assert (latency.count, latency.min, latency.max) == (6, 0.5, 250000.0)
    size = stats.snapshot().view("opencensus.io/http/server/request_bytes").rows[()]
    assert size.bucket_counts[1] == 6 and len(size.bucket_counts) == len(SIZE_BOUNDS) + 1  # 1024 -> [1024, 2048)


def test_tag_options_add_krakend_tag_keys():
    stats = Stats(TagOptions(host=True, path=True, method=True, status=True))
    stats.server.record("api.example", "/users/{id}", "GET", "200", 0, 10, 1.0)
    stats.client.record("backend:8000", "/u/{id}", "GET", "200", 0, 10, 1.0)
    snap = stats.snapshot()
    count = snap.view("opencensus.io/http/server/request_count")
    assert count.view.tag_keys == ("http.host", "http.path", "http.method", "http.status")
    assert count.rows == {("api.example", "/users/{id}", "GET", "200"): 1}
    by_method = snap.view("opencensus.io/http/server/request_count_by_method")
    assert by_method.view.tag_keys == ("http.method", "http.host", "http.path", "http.status")
    completed = snap.view("opencensus.io/http/client/completed_count")
    assert completed.view.tag_keys == ("http_client_method", "http_client_status",
                                       "http_client_host", "http_client_path")


def test_default_views_without_tag_options():
    stats = Stats()
    names = [v.name for v in stats.views()]
    assert len(names) == 10
    assert stats.snapshot().view("opencensus.io/http/server/request_count").view.tag_keys == ()
    assert stats.snapshot().view("opencensus.io/http/client/sent_bytes").view.tag_keys == (
        "http_client_method", "http_client_status")


def test_tag_set_cap_folds_into_overflow_row():
    stats = Stats(TagOptions(path=True), max_tag_sets=3)
    for i in range(10):
        stats.server.record("h", f"/p/{i}", "GET", "200", 0, 0, 1.0)
    rows = stats.snapshot().view("opencensus.io/http/server/request_count").rows
    assert len(rows) == 4
    assert rows[(OVERFLOW_TAG_VALUE,)] == 7
    assert sum(rows.values()) == 10
    assert stats.folded()["opencensus.io/http/server/request_count"] == 7


def _count(stats: Stats) -> int:
    return sum(stats.snapshot().view("opencensus.io/http/server/request_count").rows.values())


def test_queued_records_are_folded_by_every_snapshot():
    stats = Stats()
    assert stats.server.batch > 1  # single-process mode queues records
    stats.server.record("h", "", "GET", "200", 0, 10, 1.0)
    assert len(stats.server._pending) == 1  # queued, not folded yet
    assert _count(stats) == 1
    assert not stats.server._pending


def test_the_queue_is_folded_when_it_reaches_a_batch():
    stats = Stats()
    batch = stats.server.batch
    for _ in range(batch * 3 + 5):
        stats.server.record("h", "", "GET", "200", 0, 10, 1.0)
        assert len(stats.server._pending) < batch  # bounded: never a full batch left waiting
    assert len(stats.server._pending) == 5
    assert _count(stats) == batch * 3 + 5


def test_records_from_racing_threads_are_all_folded():
    import threading

    stats = Stats()
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for i in range(2000):
            stats.server.record("h", "", "GET", "200", i % 7, 10, 1.0)
            if i % 500 == 0:
                stats.snapshot()  # folds concurrently with appends

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = stats.snapshot()
    assert sum(snap.view("opencensus.io/http/server/request_count").rows.values()) == 16000
    assert snap.view("opencensus.io/http/server/request_bytes").rows[()].count == 16000
    assert stats.server.folded() == {}


def test_multiprocess_records_are_in_the_file_at_once(tmp_path):
    from gatescope import multiproc

    stats = Stats(multiprocess_dir=str(tmp_path))
    stats.server.record("h", "", "GET", "200", 0, 10, 1.0)
    assert len(stats.server._pending) == 1  # not folded yet: other workers read it in the ring
    found = multiproc.read_process_file(stats.store.path).explicit_rows()
    assert found["opencensus.io/http/server/request_count"] == {(): [1.0]}
    assert found["opencensus.io/http/server/response_bytes"][()][:5] == [1, 10, 100, 10, 10]
    assert found["opencensus.io/http/server/response_bytes"][()][5:] == [1] + [0] * 13
    assert _count(stats) == 1


def test_new_ids_are_lower_hex_nonzero_and_distinct(monkeypatch):
    from gatescope import tracing

    drawn = {tracing.new_ids() for _ in range(2000)}
    assert len(drawn) == 2000
    for trace_id, span_id in drawn:
        assert len(trace_id) == 32 and len(span_id) == 16
        assert trace_id == trace_id.lower() and int(trace_id, 16) and int(span_id, 16)
    # an all-zero draw (invalid in B3 and W3C) is replaced, not sent
    monkeypatch.setattr(tracing, "_randbytes", lambda n: bytes(n))
    tracing._forget_pools()  # ids drawn before the patch are still pooled
    trace_id, span_id = tracing.new_ids()
    assert int(trace_id, 16) and int(span_id, 16)
    assert int(tracing.new_span_id(), 16)  # child spans' ids too
    assert int(tracing.new_trace_id(), 16)


def test_pooled_ids_run_out_and_are_drawn_again():
    from gatescope import tracing

    count = 3 * tracing.POOL_SIZE + 5
    assert len({tracing.new_span_id() for _ in range(count)}) == count
    assert len({tracing.new_trace_id() for _ in range(count)}) == count


def test_a_forked_child_does_not_repeat_the_parents_pooled_ids(tmp_path):
    from gatescope import tracing
    from gatescope.testing import exit_code, fork_child

    tracing.new_ids(), tracing.new_span_id()  # the pools are filled and the fork hook is set
    out = tmp_path / "child"
    pid = fork_child(lambda: out.write_text(" ".join((*tracing.new_ids(), tracing.new_span_id()))))
    assert exit_code(pid) == 0
    # without the fork hook the child would draw exactly what the parent draws next
    assert out.read_text().split() != [*tracing.new_ids(), tracing.new_span_id()]


@pytest.mark.parametrize("sizes", [(0, 0, 0), (0, 10, 0), (10, 0, 5000), (7,)])
def test_request_bytes_distribution_with_and_without_bodies(sizes):
    stats = Stats()
    for size in sizes:
        stats.server.record("h", "", "POST", "200", size, 0, 1.0)
    value = stats.snapshot().view("opencensus.io/http/server/request_bytes").rows[()]
    assert (value.count, value.sum, value.min, value.max) == (len(sizes), sum(sizes), min(sizes),
                                                             max(sizes))
    mean = sum(sizes) / len(sizes)
    assert value.sum_of_squared_deviation == pytest.approx(sum((s - mean) ** 2 for s in sizes))
    expected = [0] * (len(SIZE_BOUNDS) + 1)
    for size in sizes:
        expected[sum(1 for bound in SIZE_BOUNDS if bound <= size)] += 1
    assert list(value.bucket_counts) == expected


def test_settled_views_copy_server_spans_and_count_unreadable_facts():
    from gatescope.spans import KIND_SERVER, UNKNOWN, SpanRecord
    from gatescope.tracing import SettledViews

    def server(status: object) -> Span:
        span = Span("/users/{id}", "4bf92f3577b34da6a3ce929d0e0e4736", None, KIND_SERVER,
                    lambda s: None, "00f067aa0ba902b7")
        span.http_facts = ("/users/42", b"a=1", b"h", "GET", b"curl", status)
        return span

    views = SettledViews()
    fine, broken = server(500), server("five hundred")
    view = views(fine)
    assert view is not fine and fine.attributes == {} and fine.http_facts is not None
    assert view.attributes["http.url"] == "/users/42?a=1" and view.status_code == UNKNOWN
    assert views(broken) is broken and broken.attributes == {}
    plain = SpanRecord("op", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7",
                               None, 0, 1, 2, {})
    assert views(plain) is plain
    count, last = views.take_problems()
    assert count == 1 and isinstance(last, TypeError)
    assert views.take_problems() == (0, None)
