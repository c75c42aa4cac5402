"""patients import | list | activate | suspend | reinstate."""
from __future__ import annotations

from gateway.cli.common import (CommandError, Progress, add_config, add_json, output,
                                print_import_report, read_import_file, services_from)

# gateway.patients.STATUSES, repeated here so that --help need not import the models.
STATUSES = ("roster", "invited", "active", "suspended")


def register(sub) -> None:
    p = sub.add_parser("patients", help="the patient roster",
                       description="The patient roster: import, list, status changes.")
    psub = p.add_subparsers(dest="patients_command", metavar="ACTION", required=True)
    imp = psub.add_parser("import", help="import a roster CSV (account_number, first_name, "
                          "last_name, email, state); idempotent")
    imp.add_argument("csv", metavar="ROSTER.csv", help="the roster file (UTF-8 CSV with a "
                     "header line; optional columns language, birth_date)")
    ls = psub.add_parser("list", help="list patients")
    add_json(ls)
    ls.add_argument("--status", choices=STATUSES, help="only patients with this status")
    act = psub.add_parser("activate", help="make a roster patient active (the practice's "
                          "own portal handled registration)")
    sus = psub.add_parser("suspend", help="refuse a patient's mail (guideline 7); the "
                          "patient is told why by mail")
    sus.add_argument("--reason", required=True, metavar="TEXT",
                     help="why, in words for the patient: it is mailed to them")
    rei = psub.add_parser("reinstate", help="make a suspended patient active again")
    for q in (act, sus, rei):
        q.add_argument("account", metavar="ACCOUNT", help="the patient's account number")
    for q, fn in ((imp, cmd_import), (ls, cmd_list), (act, cmd_activate),
                  (sus, cmd_suspend), (rei, cmd_reinstate)):
        add_config(q)
        q.set_defaults(func=fn)


def cmd_import(args) -> int:
    path, text = read_import_file(args.csv)
    from gateway import patients
    services = services_from(args)
    with services.transaction() as session, Progress("importing") as progress:
        report = patients.import_roster(session, text, progress=progress)
    return print_import_report(path, report)


def cmd_list(args) -> int:
    from sqlalchemy import select

    from gateway.models import Patient
    services = services_from(args)
    with services.factory() as session:
        q = select(Patient).order_by(Patient.account_number)
        if args.status:
            q = q.where(Patient.status == args.status)
        rows = [{"account_number": p.account_number, "first_name": p.first_name,
                 "last_name": p.last_name, "email": p.email, "state": p.state,
                 "language": p.language, "status": p.status,
                 "undeliverable": p.undeliverable}
                for p in session.scalars(q)]
    output(args, rows, ["account_number", "first_name", "last_name", "email", "state",
                        "status"])
    services.close()
    return 0


def _change(args, allowed_from: tuple, to: str, reason: str | None = None) -> int:
    from gateway import patients
    services = services_from(args)
    with services.transaction() as session:
        patient = patients.by_account(session, args.account)
        if patient is None:
            raise CommandError(f"no patient with account {args.account}")
        if patient.status not in allowed_from:
            raise CommandError(f"patient {args.account} is {patient.status}; "
                               f"it cannot be made {to} from there")
        if to == "active":
            _check_can_be_active(services.cfg, patient)
            other = patients.address_clash(session, patient)
            if other is not None:
                raise CommandError(f"patient {patient.account_number} has the same email "
                                   f"address as patient {other}; one address belongs to one "
                                   "patient: give one of them another address first")
        patients.set_status(session, patient, to, "cli", reason)
        if to == "suspended" and patient.email:
            _queue_suspension_notice(services, session, patient)
    services.committed()
    print(f"patient {args.account} is now {to}")
    return 0


def _check_can_be_active(cfg, patient) -> None:
    allowed = {s.upper() for s in cfg.policy.allowed_states}
    if patient.state.upper() not in allowed:
        raise CommandError(f"patient {patient.account_number} lives in {patient.state}; "
                           f"the portal serves only {', '.join(sorted(allowed))}")
    if not patient.email:
        raise CommandError(f"patient {patient.account_number} has no email address")


def _queue_suspension_notice(services, session, patient) -> None:
    from gateway import outbox
    from gateway.language import patient_language
    from gateway.steps.acknowledge import practice_context
    s = services
    msg = s.notices.build(
        "suspended", sender=s.addresses.header_address(s.cfg.practice.name,
                                                       s.addresses.portal),
        to=s.addresses.header_address(patient.display_name, patient.email),
        domain=s.addresses.domain, headers={"Auto-Submitted": "auto-generated"},
        patient_name=patient.display_name, suspend_reason=patient.suspend_reason,
        lang=patient_language(patient), **practice_context(s.cfg))
    outbox.enqueue(session, s.addresses, msg, patient.email, "suspended", None, patient.id)


def cmd_activate(args) -> int:
    return _change(args, ("roster", "invited", "active"), "active")


def cmd_suspend(args) -> int:
    return _change(args, ("roster", "invited", "active", "suspended"), "suspended",
                   args.reason)


def cmd_reinstate(args) -> int:
    return _change(args, ("suspended",), "active")
