"""proxies import | list | revoke | invite: parents, guardians and caregivers."""
from __future__ import annotations

from gateway.cli.common import (CommandError, add_config, add_json, output,
                                print_import_report, read_import_file, services_from)


def register(sub) -> None:
    p = sub.add_parser("proxies", help="proxies: people who write for a patient",
                       description="Proxies (a parent, guardian or caregiver acting for a "
                       "patient): import, list, invite, revoke.")
    psub = p.add_subparsers(dest="proxies_command", metavar="ACTION", required=True)
    imp = psub.add_parser("import", help="import PROXIES.csv (patient_account, first_name, "
                          "last_name, email, relation, scope); idempotent")
    imp.add_argument("csv", metavar="PROXIES.csv", help="UTF-8 CSV with a header line; "
                     "scope: category ids separated by spaces, empty for the default")
    ls = psub.add_parser("list", help="list proxies")
    add_json(ls)
    ls.add_argument("--patient", metavar="ACCOUNT", help="only this patient's proxies")
    rev = psub.add_parser("revoke", help="revoke a proxy: its mail is refused from now on "
                          "and its invite links stop working (final)")
    inv = psub.add_parser("invite", help="send a proxy its enrollment invite (a single-use "
                          "link); sending again voids the earlier link")
    for q in (rev, inv):
        q.add_argument("key", metavar="ID-or-EMAIL", help="the proxy's id (see proxies list) "
                       "or address (every proxy row with it)")
    for q, fn in ((imp, cmd_import), (ls, cmd_list), (rev, cmd_revoke), (inv, cmd_invite)):
        add_config(q)
        q.set_defaults(func=fn)


def cmd_import(args) -> int:
    path, text = read_import_file(args.csv)
    from gateway import proxies
    services = services_from(args)
    try:
        with services.transaction() as session:
            report = proxies.import_proxies(session, text)
    finally:
        services.close()
    return print_import_report(path, report)


def cmd_list(args) -> int:
    from sqlalchemy import select

    from gateway.models import Patient, Proxy
    from gateway.proxy_scope import scope_of
    services = services_from(args)
    try:
        with services.factory() as session:
            q = select(Proxy, Patient.account_number).join(
                Patient, Patient.id == Proxy.patient_id).order_by(Proxy.id)
            if args.patient:
                q = q.where(Patient.account_number == args.patient.strip())
            rows = [{"id": p.id, "patient_account": account, "first_name": p.first_name,
                     "last_name": p.last_name, "email": p.email, "relation": p.relation,
                     "scope": " ".join(scope_of(p)), "default_scope": p.scope is None,
                     "status": p.status}
                    for p, account in session.execute(q)]
    finally:
        services.close()
    output(args, rows, ["id", "patient_account", "first_name", "last_name", "email",
                        "relation", "scope", "status"])
    return 0


def cmd_revoke(args) -> int:
    from gateway import proxies
    services = services_from(args)
    try:
        with services.transaction() as session:
            rows = proxies.find(session, args.key)
            if not rows:
                raise CommandError(f"no proxy {args.key!r} (give its id or address)")
            changed = [p.id for p in rows if proxies.revoke(session, p)]
        services.committed()
    finally:
        services.close()
    for proxy_id in changed:
        print(f"proxy {proxy_id} is now revoked")
    if not changed:
        print(f"proxy {args.key} was already revoked")
    return 0


def cmd_invite(args) -> int:
    from gateway.clock import human
    from gateway.enrollment import proxy_invites
    from gateway.enrollment.invites import InviteRefused
    services = services_from(args)
    try:
        made = proxy_invites.invite(services, args.key)
    except InviteRefused as e:
        raise CommandError(f"not invited: {e}") from None
    finally:
        services.close()
    for inv in made:
        print(f"invited proxy {inv.proxy_id} at {inv.email}; the link expires "
              f"{human(inv.expires_at, services.cfg.practice.timezone)}")
    return 0
