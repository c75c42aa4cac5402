"""What the commands share: loading config and services, tables and JSON output.

Kept light on purpose: `portal-gateway --help` imports only this module and argparse, so
everything heavy (SQLAlchemy, rich, the gateway's own services) is imported where a command
runs.  Tables: `rich` on a terminal, plain aligned text when piped; times in the practice's
zone, booleans as yes/no.  JSON (for scripts) keeps UTC ISO times and true/false.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

CONFIG_HELP = "config file (default: config.toml, or $PORTAL_GATEWAY_CONFIG)"


class CommandError(Exception):
    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def add_config(parser) -> None:
    """--config on a sub-command; when absent there, the one before the command counts."""
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help=CONFIG_HELP)


def add_json(parser, what: str = "one JSON object per line (UTC times)") -> None:
    parser.add_argument("--json", action="store_true", help=what)


def add_limit(parser, default: int) -> None:
    parser.add_argument("--limit", type=int, default=default, metavar="N",
                        help=f"show at most N rows (default {default})")


def _config_arg(args) -> str | None:
    return getattr(args, "config", None)


def config_from(args, required: bool = True):
    from gateway.config import ConfigError, config_path, load_config
    try:
        return load_config(_config_arg(args))
    except ConfigError as e:
        if not required and not config_path(_config_arg(args)).exists():
            return default_config()
        raise CommandError(str(e), 2) from None


def default_config():
    """Built-in defaults, resolving rules/ and templates/ beside the package (for inspect)."""
    from pathlib import Path

    from gateway.config import build_config
    return build_config({}, Path(__file__).resolve().parents[2] / "config.toml")


def services_from(args, load_rules: bool = False):
    """The gateway's services; LOAD_RULES: load the classifier now (serve), not on first
    use (every other command, most of which never classify)."""
    from gateway.db import SchemaOutOfDate
    from gateway.services import Services
    cfg = config_from(args)
    try:
        services = Services.create(cfg)
    except SchemaOutOfDate as e:
        raise CommandError(str(e), 3) from None
    except Exception as e:
        raise CommandError(f"cannot start: {type(e).__name__}: {e}") from None
    try:
        if load_rules:
            services.load_classifier()
    except Exception as e:
        services.close()
        raise CommandError(f"cannot start: {type(e).__name__}: {e}") from None
    return services


def jsonable(value):
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return value


def human_cell(value, tz: str | None = None) -> str:
    """A value as people read it: local time to the minute, yes/no, blank for nothing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        if tz:
            from gateway.clock import local
            return f"{local(value, tz):%Y-%m-%d %H:%M %Z}"
        return f"{value:%Y-%m-%d %H:%M} UTC"
    if isinstance(value, (list, tuple)):
        return ", ".join(human_cell(v, tz) for v in value)
    return str(value)


def print_json_lines(rows: list[dict]) -> None:
    for row in rows:
        print(json.dumps({k: jsonable(v) for k, v in row.items()}, ensure_ascii=False))


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def print_table(rows: list[dict], columns: list[str], empty: str = "(none)",
                tz: str | None = None) -> None:
    if not rows:
        print(empty)
        return
    cells = [[human_cell(r.get(c), tz) for c in columns] for r in rows]
    if is_terminal():
        _rich_table(cells, columns)
        return
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


_STYLES = {"failed": "bold red", "yes": "bold", "queued": "yellow", "sent": "green",
           "active": "green", "suspended": "red", "held": "red", "overdue": "bold red"}


def _rich_table(cells: list[list[str]], columns: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
    table = Table(header_style="bold", box=None, pad_edge=False)
    for c in columns:
        table.add_column(c.upper(), overflow="fold")
    for row in cells:
        table.add_row(*(Text(v, style=_STYLES.get(v, "")) for v in row))
    Console().print(table)


def output(args, rows: list[dict], columns: list[str], tz: str | None = None) -> None:
    if getattr(args, "json", False):
        print_json_lines(rows)
    else:
        print_table(rows, columns, tz=tz)


def err(message: str) -> None:
    print(message, file=sys.stderr)


def read_import_file(name: str):
    """(path, text) of a CSV to import (UTF-8, a byte-order mark dropped); CommandError if
    it cannot be read."""
    from pathlib import Path
    path = Path(name)
    try:
        return path, path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f"{path}: cannot read: {e}") from None


def print_import_report(path, report) -> int:
    """An import's report: each rejected row as FILE:LINE: problem on stderr, then the
    counts; returns the exit code (1 when a row was rejected)."""
    for line, problem in report.errors:
        err(f"{path}:{line}: {problem}")
    print(f"{path}: {report.added} added, {report.updated} updated, "
          f"{report.unchanged} unchanged, {len(report.errors)} rejected")
    return 1 if report.errors else 0


class Progress:
    """A progress bar on stderr while a long command runs, only when stderr is a terminal.
    Use as a context manager; call it as progress(done, total)."""

    def __init__(self, label: str):
        self.label = label
        self._bar = None
        self._task = None

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar,
                                       TimeElapsedColumn)
            self._bar = Bar("[progress.description]{task.description}", BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(),
                            console=Console(stderr=True), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


def spinner(label: str):
    """A spinner on stderr for one long step (a terminal only); a context manager."""
    import contextlib
    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console
    return Console(stderr=True).status(label)
