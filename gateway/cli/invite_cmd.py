"""invite ACCOUNT [--email ADDR] | invite --pending: enrollment invitations."""
from __future__ import annotations

from gateway.cli.common import CommandError, Progress, add_config, err, services_from


def register(sub) -> None:
    p = sub.add_parser("invite", help="send an enrollment invite (a single-use link); "
                       "sending again voids the earlier link")
    p.add_argument("account", metavar="ACCOUNT", nargs="?", help="the patient's account number")
    p.add_argument("--email", metavar="ADDR", help="invite at this address (it becomes "
                   "the patient's address on file)")
    p.add_argument("--pending", action="store_true", help="invite everyone in the roster "
                   "with an address, in an allowed state, and no live invite")
    add_config(p)
    p.set_defaults(func=cmd_invite)


def cmd_invite(args) -> int:
    if bool(args.account) == bool(args.pending):
        raise CommandError("give either ACCOUNT or --pending", 2)
    if args.pending and args.email:
        raise CommandError("--email goes with one ACCOUNT, not with --pending", 2)
    from gateway.enrollment import invites
    services = services_from(args)
    try:
        if args.pending:
            return _pending(services)
        try:
            inv = invites.invite(services, args.account, args.email)
        except invites.InviteRefused as e:
            raise CommandError(f"not invited: {e}") from None
        from gateway.clock import human
        print(f"invited patient {args.account} at {inv.email}; the link expires "
              f"{human(inv.expires_at, services.cfg.practice.timezone)}")
        return 0
    finally:
        services.close()


def _pending(services) -> int:
    from gateway.enrollment import invites
    with Progress("inviting") as progress:
        report = invites.invite_pending(services, progress=progress)
    for account, reason in report.refused:
        err(f"{account}: not invited: {reason}")
    print(f"{report.sent} invited, {len(report.refused)} refused")
    return 1 if report.refused else 0
