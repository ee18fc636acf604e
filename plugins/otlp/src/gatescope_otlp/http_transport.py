"""OTLP/HTTP with binary protobuf bodies over the standard library's http.client."""

from __future__ import annotations

import gzip
import http.client
import ssl
from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import urlsplit

from gatescope import ExportError
from google.protobuf.message import DecodeError, Message

TRACES_PATH = "/v1/traces"
METRICS_PATH = "/v1/metrics"
# OTLP/HTTP: these statuses mean "try again later"; every other failure is final.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

R = TypeVar("R", bound=Message)


class HttpTransport:
    """One POST per export; a fresh connection each time, so nothing is shared across threads."""

    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout: float,
                 compress: bool, user_agent: str, tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(endpoint)
        self.tls = tls  # for https://: None verifies against the system's CA certificates
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.display = f"{parts.scheme}://{parts.netloc}{self.prefix}"  # never includes headers
        self.timeout = timeout
        self.compress = compress
        self.headers = {"User-Agent": user_agent, **headers,
                        "Content-Type": "application/x-protobuf"}
        if compress:
            self.headers["Content-Encoding"] = "gzip"

    def export(self, path: str, request: Message, response: type[R]) -> R:
        """POST `request` to `<endpoint><path>`; raises ExportError on any failure."""
        body = request.SerializeToString()
        if self.compress:
            body = gzip.compress(body)
        url = f"{self.display}{path}"
        connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                 context=self.tls) if self.https else \
            http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request("POST", self.prefix + path, body, self.headers)
            reply = connection.getresponse()
            data = reply.read()
        except TimeoutError as exc:
            raise ExportError(f"otlp: POST {url} timed out after {self.timeout:g}s") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ExportError(f"otlp: POST {url} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            connection.close()
        if not 200 <= reply.status < 300:
            raise ExportError(f"otlp: POST {url} answered {reply.status} {reply.reason}",
                              retryable=reply.status in RETRYABLE_STATUSES)
        parsed: R = response()
        try:
            parsed.ParseFromString(data)
        except DecodeError as exc:
            raise ExportError(f"otlp: POST {url} answered {reply.status} with a body that is "
                              "not an OTLP response", retryable=False) from exc
        return parsed

    def close(self) -> None:
        return None

    def reset(self) -> None:
        return None
