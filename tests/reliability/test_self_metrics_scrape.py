"""gatescope's own health is on the Prometheus scrape, so operators can alert on telemetry loss."""

from __future__ import annotations

import io
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from gatescope import pipeline
from gatescope.config import NAMESPACE
from gatescope.testing import exporter_of
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: reach the sibling helper module
from faulty_receiver import REFUSE, Receiver

REQUESTS = 300
QUEUE_SIZE = 5


@pytest.fixture
def refusing() -> Iterator[Receiver]:
    receiver = Receiver(REFUSE)
    yield receiver
    receiver.close()


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value} from one real scrape of /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_self_metrics_on_the_scrape_match_the_core(gatescope_plugins: Any, refusing: Receiver,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "RETRY_DELAYS", (0.01,))
    telemetry = gatescope_plugins.telemetry({"version": 3, "extra_config": {NAMESPACE: {
        "sample_rate": 100, "queue_size": QUEUE_SIZE, "batch_size": 5,
        "exporters": {"prometheus": {"port": 0, "listen_ip": "127.0.0.1"},
                      "zipkin": {"collector_url": refusing.url, "service_name": "self"}}}}})
    app = telemetry.wsgi(hello)
    for i in range(REQUESTS):
        environ: dict[str, Any] = {"PATH_INFO": f"/r/{i}", "wsgi.input": io.BytesIO()}
        setup_testing_defaults(environ)
        result = app(environ, lambda status, headers, exc_info=None: None)
        b"".join(result)
        result.close()  # type: ignore[attr-defined]
    assert telemetry.flush(10) is False  # nothing could be delivered
    samples = scrape(exporter_of(telemetry, "prometheus").port)
    zipkin = (("exporter", "zipkin"),)
    dropped = samples["gatescope_spans_dropped_total"][()]
    failed = samples["gatescope_spans_failed_total"][zipkin]
    errors = samples["gatescope_export_errors_total"][zipkin]
    assert samples["gatescope_spans_exported_total"][zipkin] == 0
    assert samples["gatescope_spans_queued"][()] == 0
    assert dropped > 0 and failed > 0 and errors > 0
    assert dropped + failed == REQUESTS  # every lost span is on the scrape
    core = telemetry.metrics()
    assert core.view("gatescope/spans_dropped").rows == {(): dropped}
    assert core.view("gatescope/spans_failed").rows == {("zipkin",): failed}
    assert core.view("gatescope/export_errors").rows[("zipkin",)] == errors
