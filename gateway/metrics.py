"""Prometheus metrics: what the on-call person graphs and alerts on.

Two kinds:

* counters of events in this process (messages accepted and refused, attachments removed,
  delivery attempts, reloads), incremented by the functions below from the pipeline, the
  SMTP doors and the outbox worker.  Each instance counts its own; Prometheus sums them.
  The worker processes of one instance (``[gateway] workers``) are summed here.
* gauges read from the database at scrape time (outbox depth and oldest age, open and
  overdue threads, invites, patients by status) by `DatabaseCollector`, so several
  instances on one PostgreSQL report the same numbers.

No label ever carries an address, a name, a subject or a file name: every label value is a
short id from a fixed vocabulary (category, reason, outcome, state), and `_label` turns
anything else into "other".
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger("gateway.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
# prometheus_client's multi-process mode: set (by `serve` with workers > 1) before this
# module is first imported, so every counter keeps its value in a file of that directory.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

_SAFE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,39}$")
CATEGORIES = ("appointment", "medical_question", "results", "billing", "surgery",
              "demographics", "emergency", "other")


def _label(value, allowed=None) -> str:
    """A label value that cannot carry PHI: a short lower-case id (or one of `allowed`)."""
    value = str(value or "").strip().lower()
    if allowed is not None:
        return value if value in allowed else "other"
    return value if _SAFE.match(value) and "@" not in value else "other"


MESSAGES_ACCEPTED = Counter(
    "portal_messages_accepted", "Messages accepted (250) and stored, by category and urgency",
    ["category", "urgent", "direction", "source"], registry=REGISTRY)
MESSAGES_REFUSED = Counter(
    "portal_messages_refused", "Messages or recipients refused, by reason",
    ["reason", "source"], registry=REGISTRY)
MESSAGES_DUPLICATE = Counter(
    "portal_messages_duplicate", "Resends of a stored message, answered 250 and not stored "
    "again", ["reason", "source"], registry=REGISTRY)
MESSAGES_TEMPFAILED = Counter(
    "portal_messages_tempfailed", "Messages answered 451 (internal error or database down)",
    ["source"], registry=REGISTRY)
ATTACHMENTS_REMOVED = Counter(
    "portal_attachments_removed", "Attachments removed from accepted messages, by reason",
    ["reason"], registry=REGISTRY)
DELIVERY_ATTEMPTS = Counter(
    "portal_delivery_attempts", "Outbox delivery attempts by outcome "
    "(sent, temporary, permanent, expired)", ["outcome"], registry=REGISTRY)
AUTH_FAILURES = Counter(
    "portal_auth_failures", "Authentication failures: 'sender' (a patient's From failed "
    "SPF/DKIM/DMARC), 'submission' (a wrong SMTP AUTH login)", ["kind"], registry=REGISTRY)
RELOADS = Counter("portal_reloads", "SIGHUP reloads of rules and templates by outcome",
                  ["outcome"], registry=REGISTRY)
IMAP_LAG = Gauge("portal_imap_lag_seconds", "Seconds since the IMAP account was last "
                 "polled successfully", ["account"], registry=REGISTRY,
                 multiprocess_mode="max")  # only worker 0 polls (gateway.workers)
IMAP_LAST_OK = Gauge("portal_imap_last_success_timestamp_seconds", "When the IMAP account "
                     "was last polled successfully (Unix time)", ["account"], registry=REGISTRY,
                     multiprocess_mode="max")

_imap_ok: dict[str, float] = {}
DUE_SOON_MINUTES = 15  # portal_urgent_threads_due_soon looks this far ahead


# -- instrumentation points --------------------------------------------------------------
def message_accepted(category, urgent: bool, direction: str = "patient",
                     source: str = "smtp") -> None:
    MESSAGES_ACCEPTED.labels(_label(category, CATEGORIES) if category else "none",
                             "yes" if urgent else "no", _label(direction),
                             _label(source)).inc()


def message_refused(reason, source: str = "smtp") -> None:
    """`reason` is a Reject's short id ("header-from-not-patient", "bare-line-ending")."""
    MESSAGES_REFUSED.labels(_label(reason), _label(source)).inc()


def message_duplicate(reason="duplicate", source: str = "smtp") -> None:
    MESSAGES_DUPLICATE.labels(_label(reason), _label(source)).inc()


RCPT_REASONS = {"550 5.1.1": "unknown-recipient", "550 5.7.1": "sender-not-admitted",
                "452 4.5.3": "too-many-recipients", "451 4.3.0": "tempfail"}


def rcpt_reason(reply: str) -> str:
    """The reason code of a refusal at RCPT, from its SMTP reply code (never the text)."""
    return "rcpt-" + RCPT_REASONS.get(str(reply)[:9], "other")


def rcpt_refused(reply: str, source: str = "smtp") -> None:
    """A refusal at RCPT, from its SMTP reply (only the code is read, never the text)."""
    message_refused(rcpt_reason(reply), source)


def message_tempfailed(source: str = "smtp") -> None:
    MESSAGES_TEMPFAILED.labels(_label(source)).inc()


def attachments_removed(items) -> None:
    """`items`: the removed items (with .reason) or a plain count."""
    if isinstance(items, int):
        if items:
            ATTACHMENTS_REMOVED.labels("other").inc(items)
        return
    for item in items:
        ATTACHMENTS_REMOVED.labels(_label(getattr(item, "reason", None))).inc()


def delivery_attempt(outcome: str) -> None:
    DELIVERY_ATTEMPTS.labels(_label(outcome, ("sent", "temporary", "permanent",
                                              "expired", "released"))).inc()


def auth_failure(kind: str) -> None:
    AUTH_FAILURES.labels(_label(kind, ("sender", "submission"))).inc()


def reload(ok: bool) -> None:
    RELOADS.labels("ok" if ok else "refused").inc()


def imap_polled(account: str, at: float | None = None) -> None:
    """The IMAP poller calls this after each successful poll of ACCOUNT (its config name)."""
    name = _label(account)
    _imap_ok[name] = time.time() if at is None else at
    IMAP_LAST_OK.labels(name).set(_imap_ok[name])


def imap_lag(account: str, seconds: float) -> None:
    """Or set the lag directly (seconds behind the mailbox)."""
    IMAP_LAG.labels(_label(account)).set(max(0.0, float(seconds)))


# -- database gauges, computed at scrape time --------------------------------------------
class DatabaseCollector:
    """Gauges from the database; every query is a count or min over an indexed column."""

    def __init__(self, services):
        self.s = services

    def describe(self):
        return []

    def collect(self):
        from gateway.clock import utcnow
        try:
            values = snapshot(self.s, utcnow())
        except Exception as e:  # a scrape while the database is down: no DB gauges
            log.warning("metrics: database gauges unavailable",
                        extra={"error": type(e).__name__})
            up = GaugeMetricFamily("portal_database_up", "1 if the database answered")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("portal_database_up", "1 if the database answered")
        up.add_metric([], 1)
        yield up
        g = GaugeMetricFamily("portal_outbox_mails", "Outbox rows by state", labels=["state"])
        for state in ("queued", "sent", "failed"):
            g.add_metric([state], values["outbox"].get(state, 0))
        yield g
        g = GaugeMetricFamily("portal_outbox_depth", "Mail queued and not yet sent")
        g.add_metric([], values["outbox"].get("queued", 0))
        yield g
        g = GaugeMetricFamily("portal_outbox_oldest_age_seconds",
                              "Age of the oldest queued mail (0 when the queue is empty)")
        g.add_metric([], values["outbox_oldest_age"])
        yield g
        g = GaugeMetricFamily("portal_outbox_oldest_due_wait_seconds",
                              "How long the longest-waiting due mail has waited for a worker")
        g.add_metric([], values["outbox_due_wait"])
        yield g
        g = GaugeMetricFamily("portal_threads", "Threads by state", labels=["state"])
        for state in ("open", "waiting", "answered", "closed"):
            g.add_metric([state], values["threads"].get(state, 0))
        yield g
        g = GaugeMetricFamily("portal_threads_overdue", "Open threads past their due time")
        g.add_metric([], values["overdue"])
        yield g
        g = GaugeMetricFamily("portal_urgent_threads_overdue",
                              "Open urgent (emergency) threads past their due time")
        g.add_metric([], values["urgent_overdue"])
        yield g
        g = GaugeMetricFamily("portal_urgent_threads_due_soon", "Open urgent (emergency) "
                              f"threads due within {DUE_SOON_MINUTES} minutes, not yet past due")
        g.add_metric([], values["urgent_due_soon"])
        yield g
        g = GaugeMetricFamily("portal_quarantine_held", "Messages held in quarantine after "
                              "crashing the pipeline (portal-gateway quarantine list)")
        g.add_metric([], values["quarantine_held"])
        yield g
        g = GaugeMetricFamily("portal_invites", "Enrollment invites by state",
                              labels=["state"])
        for state in ("live", "used", "void", "expired", "locked"):
            g.add_metric([state], values["invites"].get(state, 0))
        yield g
        g = GaugeMetricFamily("portal_patients", "Patients by status", labels=["status"])
        for status in ("roster", "invited", "active", "suspended"):
            g.add_metric([status], values["patients"].get(status, 0))
        yield g


def snapshot(services, now) -> dict:
    """The database-derived numbers (also used by /healthz)."""
    from sqlalchemy import func, select

    from gateway.models import Invite, Outbox, Patient, Quarantine, Thread

    def count(session, model, *where) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    def by(session, column) -> dict:
        return {k: n for k, n in session.execute(select(column, func.count()).group_by(column))}

    with services.factory() as session:
        outbox = by(session, Outbox.state)
        oldest = session.scalar(select(func.min(Outbox.created_at))
                                .where(Outbox.state == "queued"))
        oldest_due = session.scalar(select(func.min(Outbox.next_attempt_at))
                                    .where(Outbox.state == "queued",
                                           Outbox.next_attempt_at <= now))
        overdue = session.scalar(select(func.count()).select_from(Thread)
                                 .where(Thread.state == "open", Thread.due_at < now))
        urgent_open = (Thread.state == "open", Thread.urgent.is_(True))
        soon = now + dt.timedelta(minutes=DUE_SOON_MINUTES)
        extra = {"urgent_overdue": count(session, Thread, *urgent_open, Thread.due_at < now),
                 "urgent_due_soon": count(session, Thread, *urgent_open, Thread.due_at >= now,
                                          Thread.due_at < soon),
                 "quarantine_held": count(session, Quarantine, Quarantine.state == "held")}
        return {**extra, "outbox": outbox,
                "outbox_oldest_age": max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
                "outbox_due_wait": max(0.0, (now - oldest_due).total_seconds())
                if oldest_due else 0.0,
                "threads": by(session, Thread.state), "overdue": overdue or 0,
                "invites": by(session, Invite.state), "patients": by(session, Patient.status)}


def _counters() -> CollectorRegistry:
    """This process's counters; with ``[gateway] workers = N`` the sum over every worker
    (each writes its counters to files in the shared directory `MULTIPROC_ENV` names)."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry)
    ProcessCollector(registry=registry)  # process_*: the process serving /metrics
    return registry


def render(services=None) -> bytes:
    """The /metrics body: the counters, then the database gauges."""
    now = time.time()
    for name, at in list(_imap_ok.items()):
        IMAP_LAG.labels(name).set(max(0.0, now - at))
    body = generate_latest(_counters())
    if services is not None:
        db = CollectorRegistry(auto_describe=False)
        db.register(DatabaseCollector(services))
        body += generate_latest(db)
    return body
