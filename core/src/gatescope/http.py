"""HTTP delivery for exporter plugins: a POST with a timeout, `ExportError` on failure, no payload logged."""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit, urlunsplit

import urllib3

from gatescope.exporter import RateLimitedLog
from gatescope.pipeline import ExportError

RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})  # "try again later" answers


class Poster:
    """Posts bodies to one URL; credentials in the URL become a Basic header, never a log line."""

    def __init__(self, url: str, content_type: str, timeout: float, warn: RateLimitedLog) -> None:
        parts = urlsplit(url)
        self.headers = {"Content-Type": content_type}
        if parts.username is not None:
            secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(secret.encode()).decode()
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        self.url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        self.where = urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))  # for logs
        self.timeout = timeout
        self._warn = warn
        self._pool = self._new_pool()

    def _new_pool(self) -> urllib3.PoolManager:
        return urllib3.PoolManager(num_pools=2, maxsize=1, retries=False,
                                   timeout=urllib3.Timeout(total=self.timeout))

    def post(self, body: bytes) -> int:
        """POST `body`; returns the 2xx status or raises ExportError (retryable when it may pass)."""
        try:
            response = self._pool.request("POST", self.url, body=body, headers=self.headers)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = _describe(exc)
            self._warn.warning("post-failed", "gatescope: cannot reach %s: %s", self.where, reason)
            raise ExportError(f"cannot reach {self.where}: {reason}", retryable=True) from None
        status = response.status
        if 200 <= status < 300:
            return status
        retryable = status >= 500 or status in RETRYABLE_CLIENT_STATUSES
        self._warn.warning(f"status-{status}", "gatescope: %s answered HTTP %d (%s)", self.where,
                           status, "will retry" if retryable else "batch rejected, not retried")
        raise ExportError(f"{self.where} answered HTTP {status}", retryable=retryable)

    def reset(self) -> None:
        """Forget pooled connections (after a fork they belong to the parent)."""
        self._pool = self._new_pool()

    def close(self) -> None:
        self._pool.clear()


def _describe(exc: BaseException) -> str:
    """A short reason for a transport failure, without request data."""
    reason = getattr(exc, "reason", None)
    text = f"{type(exc).__name__}: {reason if reason is not None else exc}"
    return text if len(text) <= 200 else text[:197] + "..."
