"""View data as DogStatsD lines in the names of Datadog's Go OpenCensus exporter, and their socket."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Sequence
from decimal import Decimal

import attrs
from gatescope.metrics import COUNT, DistributionValue, MetricsSnapshot

_NOT_ALNUM = re.compile(r"[^a-zA-Z0-9]+")
_TAG_BREAKERS = str.maketrans({"|": "_", ",": "_", "\n": " ", "\r": " "})
UDP_PAYLOAD_BYTES = 1432  # datadog-go's optimal UDP datagram size
UDS_PAYLOAD_BYTES = 8192  # and its unix-socket one
DISTRIBUTION_STATS = ("min", "max", "count", "avg", "squared_dev_sum")

CountKey = tuple[str, tuple[str, ...]]


def metric_name(namespace: str, view_name: str) -> str:
    """`<namespace>.<view>`, each with runs of non-alphanumerics turned into one `_`."""
    name = _NOT_ALNUM.sub("_", view_name)
    if namespace:
        return _NOT_ALNUM.sub("_", namespace.replace(" ", "")) + "." + name
    return name


def format_value(value: float) -> str:
    """Shortest exact decimal without exponent (Go's FormatFloat(v, 'f', -1, 64))."""
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")


def clean_tag(tag: str) -> str:
    """Characters that would split a DogStatsD line are replaced."""
    return tag.translate(_TAG_BREAKERS)


@attrs.frozen
class Line:
    """One metric line; `count_key`/`count_total` move the delta baseline once it is sent."""

    text: str
    count_key: CountKey | None = None
    count_total: int = 0


def _line(name: str, value: str, kind: str, tags: Sequence[str]) -> str:
    suffix = "|#" + ",".join(clean_tag(t) for t in tags) if tags else ""
    return f"{name}:{value}|{kind}{suffix}"


def snapshot_lines(snapshot: MetricsSnapshot, namespace: str, tags: Sequence[str],
                   count_per_bucket: bool, sent_counts: dict[CountKey, int]) -> list[Line]:
    """Count views as `|c` deltas since the last sent push; everything else as `|g` gauges."""
    out: list[Line] = []
    for data in snapshot.views:
        if not data.rows:
            continue
        view = data.view
        name = metric_name(namespace, view.name)
        for key, value in data.rows.items():
            row_tags = [*tags, *(f"{k}:{v}" for k, v in data.tags(key).items())]
            if isinstance(value, DistributionValue):
                stats = (value.min, value.max, value.count, value.mean, value.sum_of_squared_deviation)
                for stat, number in zip(DISTRIBUTION_STATS, stats, strict=True):
                    out.append(Line(_line(f"{name}.{stat}", format_value(number), "g", row_tags)))
                if count_per_bucket:
                    for index, count in enumerate(value.bucket_counts):
                        out.append(Line(_line(f"{name}.count_per_bucket", str(count), "g",
                                              [*row_tags, f"bucket_idx:{index}"])))
            elif view.aggregation == COUNT:
                count_key = (view.name, key)
                total = int(value)
                delta = total - sent_counts.get(count_key, 0)
                if delta < 0:  # the counter restarted (a fork, a new process): all is new
                    delta = total
                out.append(Line(_line(name, str(delta), "c", row_tags), count_key, total))
            else:
                out.append(Line(_line(name, format_value(float(value)), "g", row_tags)))
    return out


def datagrams(lines: Sequence[Line], limit: int) -> Iterator[list[Line]]:
    """Lines packed newline-separated into datagrams of at most `limit` bytes (as datadog-go)."""
    batch: list[Line] = []
    size = 0
    for line in lines:
        length = len(line.text.encode("utf-8"))
        if batch and size + 1 + length > limit:
            yield batch
            batch, size = [], 0
        size += length + (1 if batch else 0)
        batch.append(line)
    if batch:
        yield batch


class StatsdSocket:
    """A UDP or unix datagram socket to DogStatsD, (re)connected on demand."""

    def __init__(self, address: tuple[str, int] | str) -> None:
        self.address = address
        self.unix = isinstance(address, str)
        self.limit = UDS_PAYLOAD_BYTES if self.unix else UDP_PAYLOAD_BYTES
        self._socket: socket.socket | None = None
        self._target: tuple[str, int] | str | None = None

    @property
    def where(self) -> str:
        if isinstance(self.address, str):
            return f"unix://{self.address}"
        return f"{self.address[0]}:{self.address[1]}"

    def resolve(self) -> None:
        """Looks the UDP host up once (datadog-go does it at creation); unix paths need nothing."""
        if isinstance(self.address, str):
            return
        host, port = self.address
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, target = infos[0]
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._target = (str(target[0]), int(target[1]))

    def send(self, payload: bytes, timeout: float) -> None:
        if self.unix:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(str(self.address))
                except OSError:
                    sock.close()
                    raise
                self._socket = sock
            try:
                self._socket.send(payload)
            except OSError:
                self.close()  # the agent may have restarted: reconnect next time
                raise
            return
        if self._socket is None or self._target is None:
            self.resolve()
        assert self._socket is not None and self._target is not None
        self._socket.sendto(payload, self._target)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
