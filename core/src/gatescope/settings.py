"""Declarative config sections: typed settings that report every problem with its JSON path."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

COMMENT_KEY = re.compile(r"^[@$_#]")
DURATION = re.compile(r"^([0-9]+)(ns|ms|us|µs|s|m|h)\Z")
_DURATION_NS = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
                "h": 3600 * 10**9}
SECRET_NAME = re.compile(
    r"(?i)(password|passwd|secret|token|api[-_]?key|access[-_]?key|credential|authorization|"
    r"cookie|signature|private)"
)
REDACTED = "***"
# `scheme://user:password@` or `scheme://token@`: credentials inside a URL value
URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)"
                          r"(?P<password>:[^/@\s]*)?@")
MAX_INT64 = 2**63 - 1

T = TypeVar("T")


class ConfigError(ValueError):
    """One error carrying every problem found, so users fix a config in one pass."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return f"invalid telemetry config: {self.problems[0]}"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"invalid telemetry config ({len(self.problems)} problems):\n{lines}"


class Problems:
    """Collects path-qualified problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


def redact_userinfo(text: str) -> str:
    """A URL's password (or its lone user token) replaced by `***`; other text unchanged."""
    if "@" not in text or "://" not in text:
        return text
    def hide(match: re.Match[str]) -> str:
        user = f"{match['user']}:{REDACTED}" if match["password"] is not None else REDACTED
        return f"{match['scheme']}{user}@"

    return URL_USERINFO.sub(hide, text)


def describe(value: Any) -> str:
    """Render a bad value for an error message without flooding it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = redact_userinfo(value)
        text = shown if len(shown) <= 60 else shown[:57] + "..."
        return '"' + text.replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- value kinds: each converts a JSON value or raises ValueError("expected ...") ---------------

Kind = Callable[[Any], Any]


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {describe(value)}")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def integer(minimum: int | None = None, maximum: int | None = None) -> Kind:
    """An integer in [minimum, maximum] (JSON 3.0 counts as 3, as JSON Schema does)."""
    lo = -MAX_INT64 - 1 if minimum is None else minimum
    hi = MAX_INT64 if maximum is None else maximum

    def convert(value: Any) -> int:
        number = _as_int(value)
        if number is None or not lo <= number <= hi:
            if minimum is None and maximum is None:
                raise ValueError(f"expected an integer, got {describe(value)}")
            raise ValueError(f"expected an integer {lo}..{hi}, got {describe(value)}")
        return number

    return convert


def string(pattern: str | None = None, non_empty: bool = False) -> Kind:
    regex = re.compile(pattern) if pattern else None

    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {describe(value)}")
        if non_empty and not value.strip():
            raise ValueError("expected a non-empty string")
        if regex and not regex.search(value):
            raise ValueError(f"expected a string matching {pattern}, got {describe(value)}")
        return value

    return convert


def one_of(*choices: str) -> Kind:
    def convert(value: Any) -> str:
        if isinstance(value, str) and value in choices:
            return value
        options = ", ".join(f'"{c}"' for c in choices)
        raise ValueError(f"expected one of {options}, got {describe(value)}")

    return convert


def duration(value: Any) -> float:
    """A Go-style duration string (`2s`, `500ms`) as seconds."""
    if isinstance(value, str):
        match = DURATION.match(value)
        if match:
            nanoseconds = int(match.group(1)) * _DURATION_NS[match.group(2)]
            if nanoseconds > MAX_INT64:
                raise ValueError(f"duration {describe(value)} exceeds the maximum (about 292 years)")
            return nanoseconds / 1e9
    raise ValueError(
        f"expected a duration like \"2s\" or \"500ms\" (units ns, us, µs, ms, s, m, h), "
        f"got {describe(value)}"
    )


def string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"expected a list of strings, item {index} is {describe(item)}")
    return tuple(value)


def string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object of strings, got {describe(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise ValueError(f'expected an object of strings, "{key}" is not a string (got {describe(item)})')
    return dict(value)


def scalar_map(value: Any) -> dict[str, str]:
    """An object whose values are rendered as text (KrakenD keeps them as interface{})."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected an object, got {describe(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif isinstance(item, str):
            out[key] = item
        elif item is None:
            out[key] = ""
        else:
            try:
                out[key] = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
            except (RecursionError, ValueError) as exc:
                raise ValueError(
                    f'expected an object of scalars, "{key}" cannot be rendered: {exc}'
                ) from None
    return out


def port_number(text: str) -> int | None:
    """A TCP/UDP port, 1-65535, in ASCII digits (`int()` takes other scripts' digits too, and
    raises past 4,300 of them)."""
    digits = text.lstrip("0")
    number = int(digits) if 0 < len(digits) <= 5 and text.isascii() and text.isdigit() else 0
    return number if 0 < number <= 65535 else None


def host_port(value: Any) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) as a pair."""
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        number = port_number(port)
        if sep and host and number is not None:
            return host, number
    raise ValueError(f'expected "host:port", got {describe(value)}')


def url(schemes: tuple[str, ...] = ("http", "https")) -> Kind:
    def convert(value: Any) -> str:
        from urllib.parse import urlsplit

        if isinstance(value, str):
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                parts = None
            if parts and parts.scheme in schemes and parts.hostname:
                return value
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"expected a URL starting with {wanted}, got {describe(value)}")

    return convert


# --- settings ----------------------------------------------------------------------------------

_META = "gatescope"


@attrs.frozen
class SettingSpec:
    kind: Kind
    key: str | None
    required: bool
    secret: bool
    extension: bool
    doc: str


def _redact(value: Any) -> str:
    return REDACTED if value not in (None, "", {}, ()) else repr(value)


def _safe(value: Any) -> Any:
    """Mapping values under secret-looking keys (`x-api-key`, `token`, ...) and URL
    credentials (`http://user:password@host`) redacted."""
    if isinstance(value, Mapping):
        return {k: REDACTED if isinstance(k, str) and is_secret_name(k) else _safe(v)
                for k, v in value.items()}
    if isinstance(value, str):
        return redact_userinfo(value)
    if type(value) in (tuple, list):
        return type(value)(_safe(v) for v in value)
    return value


def _safe_repr(value: Any) -> str:
    return repr(_safe(value))


def setting(
    kind: Kind,
    *,
    default: Any = attrs.NOTHING,
    factory: Callable[[], Any] | None = None,
    required: bool = False,
    secret: bool = False,
    extension: bool = False,
    key: str | None = None,
    doc: str = "",
) -> Any:
    """Declare one key of a config section; `extension` marks keys KrakenD does not know."""
    spec = SettingSpec(kind, key, required, secret, extension, doc)
    kwargs: dict[str, Any] = {"metadata": {_META: spec}}
    kwargs["repr"] = _redact if secret else _safe_repr
    if factory is not None:
        kwargs["factory"] = factory
    elif default is not attrs.NOTHING:
        kwargs["default"] = default
    elif required:
        kwargs["default"] = None
    return attrs.field(**kwargs)


def specs(cls: type) -> dict[str, tuple[attrs.Attribute[Any], SettingSpec]]:
    """JSON key -> (attribute, spec) for a settings class."""
    out = {}
    for attribute in attrs.fields(cls):
        spec = attribute.metadata.get(_META)
        if spec is not None:
            out[spec.key or attribute.name] = (attribute, spec)
    return out


def suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def unknown_key(problems: Problems, path: str, key: str, known: Iterable[str]) -> None:
    known = sorted(known)
    hint = suggest(key, known) or (f" (known keys: {', '.join(known)})" if known else "")
    problems.add(join_path(path, key), f"unknown key{hint}")


def parse_section(
    cls: type[T], data: Any, path: str, problems: Problems, also_known: Iterable[str] = ()
) -> T | None:
    """Build `cls` from a JSON object; returns None when any problem was recorded."""
    if not isinstance(data, Mapping):
        problems.add(path, f"expected an object, got {describe(data)}")
        return None
    before = len(problems.items)
    table = specs(cls)
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if not isinstance(key, str) or COMMENT_KEY.match(key):
            continue
        entry = table.get(key)
        if entry is None:
            unknown_key(problems, path, key, [*table, *also_known])
            continue
        attribute, spec = entry
        try:
            values[attribute.name] = spec.kind(raw)
        except ValueError as exc:
            message = str(exc)
            if spec.secret:  # name the key, never echo any part of a secret's value
                message = re.sub(r" \(got .*\)$", "", message)
                if ", got " in message:
                    message = message.split(", got ")[0] + ", got a value of the wrong type"
            problems.add(join_path(path, key), message)
    for key, (_, spec) in table.items():
        if spec.required and key not in data:
            problems.add(join_path(path, key), "is required")
    if len(problems.items) > before:
        return None
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if validate is not None:
        validate(path, problems, frozenset(k for k in data if isinstance(k, str)))
        if len(problems.items) > before:
            return None
    return instance


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def effective(instance: Any) -> dict[str, Any]:
    """A section as JSON-ready data with defaults filled and secrets redacted."""
    out: dict[str, Any] = {}
    for key, (attribute, spec) in specs(type(instance)).items():
        value = getattr(instance, attribute.name)
        if spec.secret or is_secret_name(key):
            value = {k: REDACTED for k in value} if isinstance(value, Mapping) else _redact(value)
        out[key] = _jsonable(_safe(value))
    return out


def extension_keys(instance: Any, present: Iterable[str]) -> list[str]:
    table = specs(type(instance))
    return sorted(k for k in present if k in table and table[k][1].extension)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
