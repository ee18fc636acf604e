"""InfluxDB 1.x `/write` and `/ping` over the standard library, with failures sorted by cause."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from enum import Enum

USER_AGENT = "gatescope-influxdb/0.1.0"
_ERROR_TEXT_LIMIT = 300


class Failure(Enum):
    """Why a write failed, which decides whether the points are kept and how it is reported."""

    TRANSIENT = "transient"  # network error, timeout, 5xx: keep the points, retry next period
    AUTH = "auth"  # 401/403: keep the points, report once
    NO_DATABASE = "no_database"  # 404 database not found: keep the points, report once
    REJECTED = "rejected"  # 400/413/other 4xx: the points themselves are bad; drop them


class WriteError(Exception):
    """A failed write with its cause and a message safe to log (no payload, no password)."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


class InfluxWriter:
    """Sends line-protocol bodies to one database; one short-lived request per call."""

    def __init__(self, address: str, db: str, username: str, password: str) -> None:
        base = urllib.parse.urlsplit(address)
        self.address = address
        self.db = db
        self.username = username
        path = base.path.rstrip("/")
        query = urllib.parse.urlencode({"db": db, "precision": "s"})
        self._write_url = urllib.parse.urlunsplit(
            (base.scheme, base.netloc, path + "/write", query, ""))
        self._ping_url = urllib.parse.urlunsplit((base.scheme, base.netloc, path + "/ping", "", ""))
        self._headers = {"User-Agent": USER_AGENT, "Content-Type": "text/plain; charset=utf-8"}
        if username:  # as InfluxDB's Go client: basic auth only when a username is set
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"

    def ping(self, timeout: float) -> None:
        """Raises WriteError when InfluxDB does not answer `/ping` with a 2xx."""
        request = urllib.request.Request(self._ping_url, headers=self._headers, method="GET")
        self._send(request, timeout)

    def write(self, lines: Sequence[str], timeout: float) -> None:
        """Writes the points or raises WriteError saying why not."""
        body = ("\n".join(lines) + "\n").encode("utf-8")
        request = urllib.request.Request(self._write_url, data=body, headers=self._headers,
                                         method="POST")
        self._send(request, timeout)

    def _send(self, request: urllib.request.Request, timeout: float) -> None:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                raise self._classify(exc.code, _error_text(exc.read())) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WriteError(Failure.TRANSIENT,
                             f"cannot reach InfluxDB at {self.address}: {reason}") from None

    def _classify(self, status: int, text: str) -> WriteError:
        where = f"InfluxDB at {self.address}"
        if status == 401:
            who = f'user "{self.username}"' if self.username else "no credentials (username unset)"
            return WriteError(Failure.AUTH, f"{where} rejected the credentials of {who} "
                              f"(HTTP 401: {text}); check username and password")
        if status == 403:
            return WriteError(Failure.AUTH, f'{where} denied user "{self.username}" writing to '
                              f'database "{self.db}" (HTTP 403: {text}); grant WRITE on it')
        if status == 404 and "database not found" in text:
            return WriteError(Failure.NO_DATABASE, f'database "{self.db}" does not exist on '
                              f'{where} (HTTP 404: {text}); create it with CREATE DATABASE '
                              f'"{self.db}"')
        if status >= 500 or status in (404, 408, 429):
            return WriteError(Failure.TRANSIENT, f"{where} answered HTTP {status}: {text}")
        return WriteError(Failure.REJECTED, f"{where} rejected the points (HTTP {status}: {text})")


def _error_text(body: bytes) -> str:
    """InfluxDB's `{"error": "..."}` message, shortened in the middle (its end says what was
    dropped); the raw body when it is not JSON."""
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        text = parsed["error"]
    if len(text) > _ERROR_TEXT_LIMIT:
        half = _ERROR_TEXT_LIMIT // 2
        text = text[:half] + " ... " + text[-half:]
    return text or "no message"
