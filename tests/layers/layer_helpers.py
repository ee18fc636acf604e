"""Assertion helpers shared by the layer tests."""

from __future__ import annotations

from typing import Any

from gatescope.metrics import MetricsSnapshot
from gatescope.testing import exporter_of


def rows(snapshot: MetricsSnapshot, name: str) -> dict[tuple[str, ...], Any]:
    data = snapshot.view("opencensus.io/http/" + name)
    assert data is not None, name
    return dict(data.rows)


def tag_keys(snapshot: MetricsSnapshot, name: str) -> tuple[str, ...]:
    data = snapshot.view("opencensus.io/http/" + name)
    assert data is not None
    return data.view.tag_keys


def spans_of(telemetry: Any) -> list[Any]:
    assert telemetry.flush(5.0)
    return list(exporter_of(telemetry, "capture").spans)
