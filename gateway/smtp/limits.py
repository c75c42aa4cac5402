"""SMTP protocol defence: the limits aiosmtpd does not enforce by itself.

Session limits (concurrent sessions overall, per client address and per /24 or /64,
a short window to send MAIL, whole-session deadline, command repeat caps, line and
command length) are applied by ``GatewaySMTP``; cheap content limits (NUL bytes, header
block size, Received hops) by ``check_content`` before the pipeline parses anything (MIME
depth and part count are bounded while parsing); the per-patient message rate by the
``patient_rate`` pipeline step.  Every value comes from ``[smtp]`` in the config.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import re
from dataclasses import dataclass
from functools import partial

from sqlalchemy import func, or_, select

from gateway import outbox
from gateway.decisions import MIME_TOO_DEEP, MIME_TOO_MANY_PARTS, Reject  # noqa: F401
from gateway.models import Message, Patient, utcnow
from gateway.notice_claims import claim_notice

log = logging.getLogger("gateway.smtp")

TOO_MANY_SESSIONS = "421 4.7.0 Too many connections, please try again later"
SESSION_DEADLINE = "421 4.4.2 Session time limit reached, closing connection"
IDLE_TIMEOUT = "421 4.4.2 Idle timeout, closing connection"
PRE_MAIL_TIMEOUT = "421 4.4.2 No mail transaction started in time, closing connection"
COMMAND_TOO_LONG = "500 5.5.2 Command line too long"
LINE_TOO_LONG = "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)"
STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
NUL_BYTES = "550 5.6.0 NUL characters are not accepted in mail"
HEADER_TOO_BIG = "552 5.3.4 Message header block too large"
TOO_MANY_HOPS = "554 5.4.6 Too many Received headers: possible mail loop"
RATE_LIMITED = ("451 4.7.1 Too many messages from this sender; please try again later "
                "or call the office")


@dataclass(frozen=True)
class SessionLimits:
    """What each ``GatewaySMTP`` session of one listener is held to."""
    line_length: int
    command_length: int
    deadline_seconds: float
    pre_mail_seconds: float
    call_limits: dict
    counter: "SessionCounter"

    @classmethod
    def from_config(cls, smtp) -> "SessionLimits":
        return cls(line_length=smtp.max_line_length, command_length=smtp.max_command_length,
                   deadline_seconds=smtp.session_deadline_seconds,
                   pre_mail_seconds=smtp.pre_mail_timeout_seconds,
                   call_limits={"NOOP": smtp.max_noop_per_session,
                                "RSET": smtp.max_rset_per_session,
                                "*": smtp.max_command_repeats},
                   counter=SessionCounter(smtp.max_sessions, smtp.max_sessions_per_ip,
                                          smtp.max_sessions_per_network))


def network_of(ip: str) -> str:
    """The client's network: its IPv4 /24 or IPv6 /64 (an IPv4-mapped address as IPv4)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


class SessionCounter:
    """Concurrent sessions of one listener, overall, per client address and per client
    network (/24, /64), so that one network's idle sessions cannot fill the listener
    (event loop only)."""

    def __init__(self, total: int, per_ip: int, per_network: int | None = None):
        self.max_total, self.max_per_ip = total, per_ip
        self.max_per_network = per_network or total
        self.total = 0
        self.by_ip: dict[str, int] = {}
        self.by_net: dict[str, int] = {}

    def acquire(self, ip: str) -> bool:
        net = network_of(ip)
        if (self.total >= self.max_total or self.by_ip.get(ip, 0) >= self.max_per_ip
                or self.by_net.get(net, 0) >= self.max_per_network):
            return False
        self.total += 1
        self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
        self.by_net[net] = self.by_net.get(net, 0) + 1
        return True

    def release(self, ip: str) -> None:
        self.total -= 1
        for table, key in ((self.by_ip, ip), (self.by_net, network_of(ip))):
            left = table.get(key, 1) - 1
            if left > 0:
                table[key] = left
            else:
                table.pop(key, None)


# --- content -------------------------------------------------------------------------------

_RECEIVED = re.compile(rb"^received[ \t]*:", re.I | re.M)


def check_content(raw: bytes, smtp) -> tuple[str, str] | None:
    """(reply, reason) when the message breaks a cheap content limit, else None.  `raw`
    has CRLF line endings only (bare CR/LF are refused before this).  The MIME shape
    (nesting, part count) is bounded while the message is parsed (gateway.content.mime)."""
    if b"\x00" in raw:
        return NUL_BYTES, "nul-bytes"
    end = raw.find(b"\r\n\r\n")
    header = raw if end < 0 else raw[:end + 2]
    if len(header) > smtp.max_header_bytes:
        return HEADER_TOO_BIG, "header-too-big"
    if len(_RECEIVED.findall(header)) > smtp.max_received_headers:
        return TOO_MANY_HOPS, "mail-loop"
    return None


# --- per-patient message rate (a pipeline step) ----------------------------------------------

def patient_rate(ctx) -> None:
    """Step: more than ``max_messages_per_patient_per_hour`` from one patient over SMTP
    gets a temporary refusal, and the triage address one alert per patient and hour."""
    limit = ctx.services.cfg.smtp.max_messages_per_patient_per_hour
    if (limit <= 0 or ctx.inbound.source != "smtp" or ctx.patient is None
            or ctx.unverified):
        return
    since = utcnow() - dt.timedelta(hours=1)
    count = ctx.session.scalar(
        select(func.count()).select_from(Message).where(
            Message.patient_id == ctx.patient.id, Message.direction == "patient",
            Message.received_at >= since,
            or_(Message.sender_auth.is_(None), Message.sender_auth != "unverified"))) or 0
    if count >= limit:
        raise Reject(RATE_LIMITED, "patient-rate",
                     followups=(partial(alert_abuse, ctx.services, ctx.patient.id, count),))


def alert_abuse(services, patient_id: int, count: int, session) -> None:
    """One abuse alert per patient and clock hour to the triage address (via the outbox)."""
    triage = services.cfg.routing.triage
    if not claim_notice(session, triage, f"abuse-rate:{patient_id}", per_hour=True):
        return  # this hour's alert went out already (from this or another session)
    patient = session.get(Patient, patient_id)
    s = services
    try:
        msg = s.notices.build(
            "abuse_alert", sender=s.addresses.header_address("Portal Gateway",
                                                             s.addresses.portal),
            to=triage, domain=s.addresses.domain, headers={"Auto-Submitted": "auto-generated"},
            account_number=patient.account_number, count=count,
            limit=s.cfg.smtp.max_messages_per_patient_per_hour)
    except Exception as error:  # a broken template must not turn the 451 into a crash
        log.error("abuse alert not rendered", extra={"patient": patient_id,
                                                     "error": type(error).__name__})
        return
    outbox.enqueue(session, s.addresses, msg, triage, "abuse_alert", None, patient_id)
    log.warning("patient rate limited, staff alerted", extra={"patient": patient_id})
