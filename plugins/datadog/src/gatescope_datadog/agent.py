"""Trace payloads for the Datadog agent: msgpack `/v0.4/traces`, grouped by trace, size-bounded."""

from __future__ import annotations

import http.client
import json
import platform
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

TRACES_PATH = "/v0.4/traces"
TRACER_VERSION = "gatescope-datadog/0.1.0"
#: the agent refuses bodies above 10 MB (the Go exporter flushes at half that)
MAX_PAYLOAD_BYTES = 5_000_000
_ERROR_TEXT_LIMIT = 300


class AgentError(Exception):
    """A failed upload; `retryable` is False when the agent refused the payload itself."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def group_by_trace(spans: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Spans of the same trace go together: the agent wants one array per trace."""
    traces: dict[int, list[dict[str, Any]]] = {}
    for span in spans:
        traces.setdefault(span["trace_id"], []).append(span)
    return list(traces.values())


def payloads(traces: Sequence[list[dict[str, Any]]],
             limit: int = MAX_PAYLOAD_BYTES) -> Iterator[tuple[bytes, int]]:
    """(msgpack body, trace count) pairs, each body under `limit` unless one trace alone is larger."""
    packer = msgpack.Packer()
    chunk: list[bytes] = []
    size = 0
    for trace in traces:
        encoded = packer.pack(trace)
        if chunk and size + len(encoded) > limit:
            yield _array(chunk), len(chunk)
            chunk, size = [], 0
        chunk.append(encoded)
        size += len(encoded)
    if chunk:
        yield _array(chunk), len(chunk)


def _array(encoded_items: list[bytes]) -> bytes:
    n = len(encoded_items)
    if n <= 15:
        header = bytes([0x90 | n])
    elif n <= 0xFFFF:
        header = b"\xdc" + n.to_bytes(2, "big")
    else:
        header = b"\xdd" + n.to_bytes(4, "big")
    return header + b"".join(encoded_items)


class AgentClient:
    """POSTs payloads to one trace agent; returns the agent's per-service sampling rates."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.headers = {
            "Content-Type": "application/msgpack",
            "Datadog-Meta-Lang": "python",
            "Datadog-Meta-Lang-Version": platform.python_version(),
            "Datadog-Meta-Lang-Interpreter": platform.python_implementation(),
            "Datadog-Meta-Tracer-Version": TRACER_VERSION,
        }

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{TRACES_PATH}"

    def send(self, body: bytes, trace_count: int, timeout: float) -> dict[str, Any]:
        headers = {**self.headers, "X-Datadog-Trace-Count": str(trace_count),
                   "Content-Length": str(len(body))}
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request("POST", TRACES_PATH, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise AgentError(f"cannot reach the Datadog agent at {self.where}: {exc}", True) from None
        finally:
            connection.close()
        if response.status >= 400:
            text = data.decode("utf-8", "replace").strip()[:_ERROR_TEXT_LIMIT] or response.reason
            raise AgentError(f"the Datadog agent at {self.where} answered HTTP {response.status}: "
                             f"{text}", response.status >= 500 or response.status in (408, 429))
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            return {}
        rates = parsed.get("rate_by_service") if isinstance(parsed, dict) else None
        return rates if isinstance(rates, dict) else {}
