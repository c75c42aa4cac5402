"""Purge is complete: every kind of row that holds a patient's words, a file name or a raw
mail loses them after retention_days; metadata (types, sizes, hashes, states) stays."""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select

from gateway.cli import main as cli
from gateway.models import Attachment, Audit, Message, Outbox, Quarantine, Thread, utcnow
from gateway.quarantine import retry
from tests.helpers import add_patient

OLD = utcnow() - dt.timedelta(days=400)
NEW = utcnow() - dt.timedelta(days=3)


def _message(session, pid, thread_id, at, word):
    m = Message(thread_id=thread_id, patient_id=pid, direction="patient", subject=f"S {word}",
                body=f"B {word}", history=f"H {word}", category="results", received_at=at)
    session.add(m)
    session.flush()
    session.add(Attachment(message_id=m.id, filename=f"{word}.pdf", declared_type="app/pdf",
                           sniffed_type="application/pdf", size=10, sha256="ab" * 32,
                           reason="not-allowed"))
    return m


def _outbox(session, kind, thread_id, at, word, state="sent"):
    session.add(Outbox(kind=kind, recipient="ana@example.com", mail_from="bounces@x",
                       raw=f"Subject: {word}\r\n\r\n{word}".encode(), state=state,
                       thread_id=thread_id, created_at=at))


def seed(services) -> dict:
    pid = add_patient(services)
    with services.transaction() as session:
        ended = Thread(public_id="ended", patient_id=pid, state="answered", answered_at=OLD,
                       created_at=OLD)
        fresh = Thread(public_id="fresh", patient_id=pid, state="answered", answered_at=NEW,
                       created_at=NEW)
        silent = Thread(public_id="silent", patient_id=pid, state="waiting", created_at=OLD,
                        kind="lab_result")
        session.add_all([ended, fresh, silent])
        session.flush()
        _message(session, pid, ended.id, OLD, "endedword")
        _message(session, pid, fresh.id, NEW, "freshword")
        _message(session, pid, None, OLD, "loosemsgword")
        _message(session, pid, None, NEW, "newloosemsgword")
        _outbox(session, "staff_copy", ended.id, OLD, "endedmail")
        _outbox(session, "notify:lab_result", silent.id, OLD, "silentmail")
        _outbox(session, "invite", None, OLD, "invitemail")
        _outbox(session, "suspended", None, OLD, "reasonmail", state="failed")
        _outbox(session, "invite", None, NEW, "newinvitemail")
        _outbox(session, "invite", None, OLD, "queuedmail", state="queued")
        session.add_all([
            Quarantine(raw_sha256="1" * 64, state="held", error_type="E", raw=b"heldword",
                       mail_from="ana@example.com", first_at=OLD, last_at=OLD, held_at=OLD),
            Quarantine(raw_sha256="2" * 64, state="held", error_type="E", raw=b"newheldword",
                       mail_from="ana@example.com", first_at=NEW, last_at=NEW, held_at=NEW)])
    return {"pid": pid}


def stored_words(services) -> set[str]:
    """Every marker word still held anywhere, by the kind of place it is held in."""
    words = set()
    with services.factory() as session:
        for m in session.scalars(select(Message)):
            words |= {v.split()[1] for v in (m.subject, m.body, m.history) if v}
        words |= {a.filename[:-4] for a in session.scalars(select(Attachment)) if a.filename}
        words |= {r.raw.split(b"\r\n\r\n")[1].decode() for r in session.scalars(select(Outbox))
                  if r.raw}
        words |= {q.raw.decode() for q in session.scalars(select(Quarantine)) if q.raw}
    return words


ALL = {"endedword", "freshword", "loosemsgword", "newloosemsgword", "endedmail",
       "silentmail", "invitemail", "reasonmail", "newinvitemail", "queuedmail", "heldword",
       "newheldword"}
KEPT = {"freshword", "newloosemsgword", "newinvitemail", "queuedmail", "newheldword"}


def test_purge_removes_every_kind_of_old_text_and_counts_each(services, capsys):
    seed(services)
    cfg = str(services.cfg.path)
    assert stored_words(services) == ALL
    assert cli(["purge", "--dry-run", "--json", "--config", cfg]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["dry_run"] is True
    assert {k: counts[k] for k in ("threads", "messages", "outbox_mails", "attachment_names",
                                   "messages_without_thread", "other_outbox_mails",
                                   "attachment_names_without_thread", "quarantined")} == {
        "threads": 1, "messages": 1, "outbox_mails": 1, "attachment_names": 1,
        "messages_without_thread": 1, "other_outbox_mails": 3,
        "attachment_names_without_thread": 1, "quarantined": 1}
    assert stored_words(services) == ALL  # a dry run changes nothing

    assert cli(["purge", "--json", "--config", cfg]) == 0
    assert json.loads(capsys.readouterr().out)["quarantined"] == 1
    assert stored_words(services) == KEPT
    with services.factory() as session:
        held = session.scalar(select(Quarantine).where(Quarantine.raw_sha256 == "1" * 64))
        # its text went with the purge; past quarantine_days it is marked expired as well
        assert held.raw is None and held.mail_from is None and held.state == "expired"
        kept_log = session.scalars(select(Attachment).where(Attachment.filename.is_(None)))
        assert {(a.sniffed_type, a.size, a.sha256, a.reason) for a in kept_log} == {
            ("application/pdf", 10, "ab" * 32, "not-allowed")}
        loose = session.scalar(select(Audit).where(Audit.action == "retention.purged"))
        assert loose.detail["other_outbox_mails"] == 3
        qid = held.id
    try:
        retry(services, qid)
        raise AssertionError("a purged message cannot be retried")
    except LookupError as e:
        assert "purged" in str(e)

    assert cli(["purge", "--json", "--config", cfg]) == 0  # nothing left
    again = json.loads(capsys.readouterr().out)
    assert not any(again[k] for k in ("threads", "messages_without_thread",
                                      "other_outbox_mails", "quarantined"))
