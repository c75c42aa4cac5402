"""`portal-gateway` commands.  Each command module registers its own sub-parsers."""
from __future__ import annotations

import argparse
import os
import sys

from gateway.cli import (audit_cmd, commands, inspect_cmd, invite_cmd, keys_cmd, outbox_cmd,
                         patients_cmd, purge_cmd, quarantine_cmd, threads_cmd)
from gateway.cli.common import CommandError

EPILOG = """examples:
  portal-gateway serve
  portal-gateway check-config --config /etc/portal-gateway/config.toml
  portal-gateway patients import roster.csv
  portal-gateway patients activate 1001
  portal-gateway inspect --json saved/*.eml
  portal-gateway audit list --patient 1001 --since 7d
  portal-gateway purge --dry-run
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portal-gateway", description="Portal Mail Gateway: the email side of a "
        "practice's patient portal.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="config file (default: config.toml, or "
                        "$PORTAL_GATEWAY_CONFIG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (commands, patients_cmd, invite_cmd, threads_cmd, outbox_cmd,
                   audit_cmd, purge_cmd, quarantine_cmd, inspect_cmd, keys_cmd):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    umask = os.umask(0o077)  # database, Maildir, key files: owner only (0600, dirs 0700)
    try:
        return args.func(args) or 0
    except CommandError as e:
        print(f"portal-gateway: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        os.umask(umask)  # called in-process (tests, scripts): leave the caller's as it was


if __name__ == "__main__":
    sys.exit(main())
