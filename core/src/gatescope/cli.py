"""`gatescope check` and `gatescope plugins`: a thin face over the public API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from gatescope.config import ConfigUnreadable, load_config
from gatescope.plugins import default_registry, listing
from gatescope.settings import ConfigError

EXIT_VALID, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


def _check(path: str, as_json: bool) -> int:
    _, registry = default_registry()
    try:
        if registry.errors:
            raise ConfigError(registry.errors)
        config = load_config(path, registry)
    except ConfigUnreadable as exc:
        _emit(as_json, {"valid": False, "readable": False, "problems": list(exc.problems)}, str(exc))
        return EXIT_UNREADABLE
    except ConfigError as exc:
        _emit(as_json, {"valid": False, "readable": True, "problems": list(exc.problems)}, str(exc))
        return EXIT_INVALID
    effective = config.effective()
    if as_json:
        print(json.dumps({"valid": True, "config": effective}, indent=2, ensure_ascii=False))
        return EXIT_VALID
    print(f"{path}: valid")
    print(json.dumps(effective, indent=2, ensure_ascii=False))
    if effective["extension_keys"]:
        print("note: gatescope-only extension keys in use (KrakenD would reject this config): "
              + ", ".join(effective["extension_keys"]))
    return EXIT_VALID


def _emit(as_json: bool, payload: dict[str, object], text: str) -> None:
    if as_json:
        print(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        print(text, file=sys.stderr)


def _plugins(as_json: bool) -> int:
    _, registry = default_registry()
    rows = listing(registry)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        where = f"{row['distribution']} {row['version']}"
        if row["error"]:
            print(f"{row['name'] or '-':14} {where:32} ERROR {row['error']}")
        else:
            print(f"{row['name']:14} {where:32} {','.join(row['signals'])}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gatescope", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a krakend.json and print the effective config")
    check.add_argument("config")
    check.add_argument("--json", action="store_true")
    plugins = commands.add_parser("plugins", help="list installed exporters and plugin load errors")
    plugins.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(args.config, args.json)
    return _plugins(args.json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
