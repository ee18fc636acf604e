"""Content-Length read as KrakenD's Go server reads it, so no header value can fail a request."""

from __future__ import annotations

# Go's net/http parses Content-Length with `strconv.ParseUint(value, 10, 63)` into the int64
# `Request.ContentLength` that ochttp records; a value past it is no length at all.
MAX_CONTENT_LENGTH = 2**63 - 1
# Values this short that are digits need no further check (the hot paths test this inline).
SHORT_DIGITS = 19
_GO_SPACE = " \t\r\n"  # what Go's textproto trims from a header value


def declared_length(value: str | bytes) -> int | None:
    """The length a Content-Length value declares, None when it declares none: `int()` alone
    takes other scripts' digits ('²' passes `str.isdigit` and fails `int`), raises past 4,300
    digits, and a length past float's range overflows the byte-size distributions."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip(_GO_SPACE)
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")
    if len(digits) > SHORT_DIGITS:
        return None
    length = int(digits) if digits else 0
    return length if length <= MAX_CONTENT_LENGTH else None


__all__ = ["MAX_CONTENT_LENGTH", "SHORT_DIGITS", "declared_length"]
