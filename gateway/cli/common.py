"""What the commands share: loading config and services, tables and JSON output."""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from gateway.config import Config, ConfigError, build_config, config_path, load_config


class CommandError(Exception):
    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def add_config(parser) -> None:
    parser.add_argument("--config", dest="sub_config", default=None, help="config file (default: config.toml, "
                        "or $PORTAL_GATEWAY_CONFIG)")


def _config_arg(args) -> str | None:
    return getattr(args, "sub_config", None) or getattr(args, "config", None)


def config_from(args, required: bool = True) -> Config:
    try:
        return load_config(_config_arg(args))
    except ConfigError as e:
        if not required and not config_path(_config_arg(args)).exists():
            return default_config()
        raise CommandError(str(e), 2) from None


def default_config() -> Config:
    """Built-in defaults, resolving rules/ and templates/ beside the package (for inspect)."""
    return build_config({}, Path(__file__).resolve().parents[2] / "config.toml")


def services_from(args):
    from gateway.db import SchemaOutOfDate
    from gateway.services import Services
    cfg = config_from(args)
    try:
        return Services.create(cfg)
    except SchemaOutOfDate as e:
        raise CommandError(str(e), 3) from None
    except Exception as e:
        raise CommandError(f"cannot start: {type(e).__name__}: {e}") from None


def jsonable(value):
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return value


def print_json_lines(rows: list[dict]) -> None:
    for row in rows:
        print(json.dumps({k: jsonable(v) for k, v in row.items()}, ensure_ascii=False))


def print_table(rows: list[dict], columns: list[str], empty: str = "(none)") -> None:
    if not rows:
        print(empty)
        return
    cells = [[str(jsonable(r.get(c)) if r.get(c) is not None else "") for c in columns]
             for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def output(args, rows: list[dict], columns: list[str]) -> None:
    if getattr(args, "json", False):
        print_json_lines(rows)
    else:
        print_table(rows, columns)


def err(message: str) -> None:
    print(message, file=sys.stderr)


def progress_bar(label: str):
    """A callback progress(done, total) drawing a bar on stderr when it is a terminal."""
    def draw(done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return draw
