"""keys: the encryption keys of the data at rest (gateway.crypto, gateway.keys)."""
from __future__ import annotations

import argparse
import contextlib
import json

from gateway.cli.common import CommandError, Progress, add_config, config_from, services_from

EXAMPLES = """examples:
  portal-gateway keys init      # create the key file (needed once before PostgreSQL use)
  portal-gateway keys rotate    # add a new current key and re-encrypt everything with it
"""


def register(sub) -> None:
    p = sub.add_parser("keys", help="encryption keys of the stored data", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ksub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = ksub.add_parser("init", help="create [security] key_file with one new key (0600)")
    add_config(init)
    init.set_defaults(func=cmd_init)
    rot = ksub.add_parser("rotate", help="make a new key current and re-encrypt every "
                          "stored value with it, in batches, while the gateway runs")
    add_config(rot)
    rot.add_argument("--batch", type=int, default=500, help="rows per transaction")
    rot.add_argument("--json", action="store_true", help="print the result as JSON")
    rot.set_defaults(func=cmd_rotate)


def cmd_init(args) -> int:
    from gateway import crypto
    cfg = config_from(args)
    if cfg.security.keys:
        raise CommandError("[security] keys is set: the keys come from the environment")
    if cfg.key_file.exists():
        raise CommandError(f"{cfg.key_file} exists already; it is never overwritten")
    crypto.write_key_file(cfg.key_file)
    print(f"created {cfg.key_file} (mode 0600); back it up apart from the database")
    return 0


def cmd_rotate(args) -> int:
    from gateway import crypto, keys, rotation
    cfg = config_from(args)
    if args.batch < 1:
        raise CommandError("--batch must be at least 1", 2)
    if not cfg.security.keys:
        if not cfg.key_file.exists():
            raise CommandError(f"{cfg.key_file}: no key file to rotate")
        crypto.append_key(cfg.key_file)  # the running gateway picks it up when it meets it
    services = services_from(args)
    bar = None if args.json else Progress("re-encrypting")
    try:
        keys.install(cfg)
        with bar or contextlib.nullcontext():
            report = rotation.rotate(services, batch=args.batch, progress=bar)
    finally:
        services.close()
    result = {"key_id": report.key_id, "values_reencrypted": report.values,
              "rows": report.rows_seen, "passes": report.passes, "tables": report.per_table}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"current key {report.key_id}: re-encrypted {report.values} values in "
              f"{report.rows_seen} rows ({report.passes} passes); older keys stay in the "
              "key source and can be removed once every backup made with them is gone")
    return 0
