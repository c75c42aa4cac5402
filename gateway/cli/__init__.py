"""`portal-gateway` commands.  Each command module registers its own sub-parsers.

Registration imports nothing heavy (see gateway.cli.common), so `--help` answers at once;
a command imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import os
import sys

from gateway.cli import (audit_cmd, commands, inspect_cmd, invite_cmd, keys_cmd, outbox_cmd,
                         patients_cmd, proxies_cmd, purge_cmd, quarantine_cmd, threads_cmd)
from gateway.cli.common import CONFIG_HELP, CommandError

EPILOG = """examples:
  portal-gateway serve
  portal-gateway check-config --config /etc/portal-gateway/config.toml
  portal-gateway patients import roster.csv
  portal-gateway patients activate 1001
  portal-gateway proxies import proxies.csv
  portal-gateway inspect --json saved/*.eml
  portal-gateway audit list --patient 1001 --since 7d
  portal-gateway purge --dry-run

Every command takes --config PATH, before or after its name; `portal-gateway COMMAND -h`
tells more.  Tables are for people (times in the practice's zone); --json is for scripts.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portal-gateway", description="Portal Mail Gateway: the email side of a "
        "practice's patient portal.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (commands, patients_cmd, proxies_cmd, invite_cmd, threads_cmd, outbox_cmd,
                   audit_cmd, purge_cmd, quarantine_cmd, inspect_cmd, keys_cmd):
        module.register(sub)
    _describe(parser)
    return parser


def subparsers(parser: argparse.ArgumentParser):
    """Yield (help line, parser) for every command and action under PARSER."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                yield helps.get(name), child
                yield from subparsers(child)


def _describe(parser: argparse.ArgumentParser) -> None:
    """A command without its own description shows its one-line help under -h."""
    for help_line, child in subparsers(parser):
        if not child.description and help_line:
            child.description = help_line[0].upper() + help_line[1:] + "."


def _quiet_broken_pipe() -> int:
    """The reader went away (`| head`): no traceback, and no second error when Python
    flushes stdout at exit.  128 + SIGPIPE, as a shell reports it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    umask = os.umask(0o077)  # database, Maildir, key files: owner only (0600, dirs 0700)
    try:
        return args.func(args) or 0
    except CommandError as e:
        print(f"portal-gateway: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        return 130
    finally:
        os.umask(umask)  # called in-process (tests, scripts): leave the caller's as it was


if __name__ == "__main__":
    sys.exit(main())
