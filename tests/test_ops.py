"""Operations (issue 8): metrics and health scraped from a running `serve`, SIGHUP
reload and SIGTERM drain with a live process, the audit trail of a whole patient story,
retention, and the audit/purge commands."""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from gateway import pipeline
from gateway.config import load_config
from gateway.models import Audit, Message, Outbox, Thread, Token
from gateway.services import Services
from tests.conftest import ROOT
from tests import ports
from tests.helpers import add_patient, patient_mail

CLI = str(Path(sys.executable).parent / "portal-gateway")


def cli(*argv) -> int:
    """portal-gateway in this process (audit and purge registered if the list lacks them)."""
    from gateway.cli import build_parser
    from gateway.cli import audit_cmd, purge_cmd
    from gateway.cli.common import CommandError
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, module in (("audit", audit_cmd), ("purge", purge_cmd)):
        if name not in sub.choices:
            module.register(sub)
    args = parser.parse_args([str(a) for a in argv])
    try:
        return args.func(args) or 0
    except CommandError as e:
        print(f"portal-gateway: {e}", file=sys.stderr)
        return e.exit_code


# -- a live `serve` ------------------------------------------------------------------------
class Served:
    """`portal-gateway serve` as a subprocess on the example config, with free ports, the
    rules copied (so a test may break them) and stderr collected line by line."""

    def __init__(self, tmp_path: Path, drain_seconds: float = 10):
        self.tmp = tmp_path
        self.smtp, self.http, self.ops, submission = ports.free_ports(4)
        shutil.copytree(ROOT / "rules", tmp_path / "rules")
        text = (ROOT / "config.example.toml").read_text()
        for old, new in (("inbound_port = 2525", f"inbound_port = {self.smtp}"),
                         ("submission_port = 2587", f"submission_port = {submission}"),
                         ("port = 8025", f"port = {self.http}"),
                         ("ops_port = 8026", f"ops_port = {self.ops}"),
                         ('templates_dir = "templates"', f'templates_dir = "{ROOT}/templates"'),
                         ("drain_seconds = 30", f"drain_seconds = {drain_seconds}"),
                         ("poll_seconds = 1.0", "poll_seconds = 0.1")):
            assert old in text, old
            text = text.replace(old, new)
        self.config = tmp_path / "config.toml"
        self.config.write_text(text)
        self.services = Services.create(load_config(self.config))
        add_patient(self.services)  # 1001 Ana Lopez <ana@example.com>, active
        self.lines: list[str] = []
        self.proc = subprocess.Popen([CLI, "--config", str(self.config), "serve"], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_log('"listening"')

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_log(self, needle: str, timeout: float = 20, after: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if needle in line:
                    return json.loads(line)
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no log line with {needle}:\n" + "\n".join(self.lines))

    def send(self, msg: EmailMessage, sender: str = "ana@example.com"):
        with smtplib.SMTP("127.0.0.1", self.smtp, timeout=20) as client:
            return client.send_message(msg, sender, ["portal@portal.example.org"])

    def get(self, path: str) -> tuple[int, bytes]:
        port = self.ops if path in ("/healthz", "/metrics") else self.http  # apart
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def messages(self) -> list[Message]:
        with self.services.factory() as session:
            return list(session.scalars(select(Message).order_by(Message.id)))

    def wait_messages(self, count: int, timeout: float = 15) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.messages()
            if len(rows) >= count:
                return rows
            time.sleep(0.05)
        raise AssertionError(f"expected {count} stored messages, have {len(self.messages())}")

    def stop(self, timeout: float = 30) -> float:
        """SIGTERM; returns how long the process took to exit."""
        if self.proc.poll() is None:
            start = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
            took = time.monotonic() - start
        else:
            took = 0.0
        self._reader.join(5)
        self.services.close()
        return took

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.services.close()


@pytest.fixture
def served(tmp_path):
    server = Served(tmp_path)
    yield server
    server.kill()


def samples(body: str) -> dict:
    """{(name, frozenset(labels)): value} of a /metrics body."""
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict, name: str, **labels) -> float:
    """The sum of NAME's samples whose labels include LABELS (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= set(ls))


def with_attachment(subject="Appointment", body="Can I move my appointment to next week?"):
    msg = patient_mail(subject=subject, body=body)
    msg.add_attachment(b"%PDF-1.4 secret scan", maintype="application", subtype="pdf",
                       filename="Lopez_lab_results.pdf")
    return msg


def test_metrics_and_health_after_real_traffic(served):
    status, body = served.get("/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok", health
    assert health["checks"]["database"] == "ok"
    assert health["checks"]["listeners"] == {"inbound": "up", "submission": "up"}

    served.send(with_attachment(subject="Moving my visit"))
    served.send(patient_mail(subject="Chest pain", body="I have severe chest pain and "
                             "cannot breathe"))
    # refused at end of DATA: envelope of a patient, header From of a stranger
    with pytest.raises(smtplib.SMTPDataError) as refused:
        served.send(patient_mail(sender="mallory@example.net", subject="Hello"))
    assert refused.value.smtp_code == 550
    # a stranger: also refused at end of DATA (RCPT never looks the sender up)
    with pytest.raises(smtplib.SMTPDataError):
        served.send(patient_mail(sender="eve@example.net"), sender="eve@example.net")
    served.wait_messages(2)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the worker delivered staff copies and acks
        found = samples(served.get("/metrics")[1].decode())
        if value(found, "portal_delivery_attempts_total", outcome="sent") >= 4 \
                and value(found, "portal_outbox_depth") == 0:
            break
        time.sleep(0.1)
    status, raw = served.get("/metrics")
    text = raw.decode()
    found = samples(text)
    assert status == 200
    assert value(found, "portal_messages_accepted_total") == 2
    assert value(found, "portal_messages_accepted_total", category="appointment",
                 urgent="no") == 1
    assert value(found, "portal_messages_accepted_total", category="emergency",
                 urgent="yes") == 1
    assert value(found, "portal_messages_refused_total",
                 reason="envelope-from-mismatch") == 1
    assert value(found, "portal_messages_refused_total", reason="not-admitted-unknown") == 1
    assert value(found, "portal_attachments_removed_total") == 1
    assert value(found, "portal_delivery_attempts_total", outcome="sent") >= 4
    assert value(found, "portal_outbox_depth") == 0
    assert value(found, "portal_outbox_mails", state="sent") >= 4
    assert value(found, "portal_threads", state="open") == 2
    assert value(found, "portal_threads_overdue") == 0
    assert value(found, "portal_patients", status="active") == 1
    assert value(found, "portal_invites", state="live") == 0
    assert value(found, "portal_database_up") == 1
    for secret in ("ana@example.com", "example.com", "mallory", "eve@", "Ana", "Lopez",
                   "Moving my visit", "Chest pain", "Lopez_lab_results", ".pdf", "@"):
        assert secret not in text, secret

    # a wedged worker: due mail under a lease nobody renews -> 503 with the reason
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with served.services.transaction() as session:
        row = Outbox(kind="ack", recipient="ana@example.com", mail_from="x@portal.example.org",
                     raw=b"Subject: x\r\n\r\nx\r\n", state="queued",
                     next_attempt_at=now - dt.timedelta(hours=2),
                     lease_until=now + dt.timedelta(hours=1),
                     created_at=now - dt.timedelta(hours=2))
        session.add(row)
    status, body = served.get("/healthz")
    health = json.loads(body)
    assert status == 503 and "outbox stuck" in health["reason"], health
    assert health["checks"]["outbox"]["depth"] == 1
    found = samples(served.get("/metrics")[1].decode())
    assert value(found, "portal_outbox_oldest_age_seconds") >= 7000
    assert served.stop() < 10
    assert served.proc.returncode == 0
    for line in served.lines:  # every log line is JSON and names nobody
        json.loads(line)
        for secret in ("ana@example.com", "mallory@", "eve@", "Lopez", "Moving my visit"):
            assert secret not in line, line


def test_sighup_refuses_a_bad_rule_file_and_applies_a_good_one(served):
    served.send(patient_mail(subject="Question", body="Can I move my appointment to next "
                             "week? Also the zebra crossing."))
    assert served.wait_messages(1)[-1].category == "appointment"

    broken = served.tmp / "rules" / "zz-local.toml"
    broken.write_text('[[rule]]\nid = "local-zebra"\ncategory = "billing"\nweight = "ten"\n')
    mark = len(served.lines)
    served.proc.send_signal(signal.SIGHUP)
    entry = served.wait_log("reload refused", after=mark)
    assert entry["level"] == "error" and "zz-local.toml" in entry["error"]
    served.send(patient_mail(subject="Question", body="Can I move my appointment to next "
                             "week? Also the zebra crossing."))
    assert served.wait_messages(2)[-1].category == "appointment"  # the old rules stay live
    assert served.get("/healthz")[0] == 200

    broken.write_text('[[rule]]\nid = "local-zebra"\ncategory = "billing"\nweight = 10\n'
                      'reason = "A test rule"\nphrases = ["zebra crossing"]\npin = true\n')
    mark = len(served.lines)
    served.proc.send_signal(signal.SIGHUP)
    served.wait_log("reloaded rules and templates", after=mark)
    served.send(patient_mail(subject="Question", body="Can I move my appointment to next "
                             "week? Also the zebra crossing."))
    last = served.wait_messages(3)[-1]
    assert last.category == "billing"
    assert any(r["id"] == "local-zebra" for r in last.rules)
    found = samples(served.get("/metrics")[1].decode())
    assert value(found, "portal_reloads_total", outcome="refused") == 1
    assert value(found, "portal_reloads_total", outcome="ok") == 1
    assert served.stop() < 10 and served.proc.returncode == 0


def _reply(sock_file) -> bytes:
    lines = []
    while True:
        line = sock_file.readline()
        lines.append(line)
        if not line or line[3:4] != b"-":
            return b"".join(lines)


def test_sigterm_drains_an_inflight_transaction_and_exits_in_time(tmp_path):
    served = Served(tmp_path, drain_seconds=6)
    try:
        busy = socket.create_connection(("127.0.0.1", served.smtp), timeout=15)
        idle = socket.create_connection(("127.0.0.1", served.smtp), timeout=15)
        bf, idf = busy.makefile("rb"), idle.makefile("rb")
        assert _reply(bf).startswith(b"220") and _reply(idf).startswith(b"220")
        idle.sendall(b"EHLO idle.example.net\r\n")
        assert _reply(idf).startswith(b"250")
        for command, code in ((b"EHLO client.example.net", b"250"),
                              (b"MAIL FROM:<ana@example.com>", b"250"),
                              (b"RCPT TO:<portal@portal.example.org>", b"250"),
                              (b"DATA", b"354")):
            busy.sendall(command + b"\r\n")
            assert _reply(bf).startswith(code), command
        raw = patient_mail(subject="Slow", body="Can I move my appointment?\n" * 20) \
            .as_bytes().replace(b"\n", b"\r\n")
        half = len(raw) // 2
        busy.sendall(raw[:half])  # half the message, then the signal
        start = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        served.wait_log('"draining"')
        # the idle session is told to go away; no new session is taken
        assert _reply(idf).startswith(b"421")
        time.sleep(0.3)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", served.smtp), timeout=2)
        for i in range(half, len(raw), 200):  # the rest, slowly
            busy.sendall(raw[i:i + 200])
            time.sleep(0.05)
        busy.sendall(b".\r\n")
        reply = _reply(bf)
        assert reply.startswith(b"250"), reply  # it had the time to finish
        served.proc.wait(15)
        took = time.monotonic() - start
        assert served.proc.returncode == 0
        assert took < 6 + 3, took
        stored = served.messages()
        if reply.startswith(b"250"):
            assert len(stored) == 1 and stored[0].subject == "Slow"
        else:
            assert stored == []
        served.wait_log('"stopped"')
        busy.close(), idle.close()
    finally:
        served.kill()


def test_sigterm_cuts_a_stalled_transaction_at_the_deadline(tmp_path):
    served = Served(tmp_path, drain_seconds=2)
    try:
        stalled = socket.create_connection(("127.0.0.1", served.smtp), timeout=15)
        sf = stalled.makefile("rb")
        _reply(sf)
        for command in (b"EHLO client.example.net", b"MAIL FROM:<ana@example.com>",
                        b"RCPT TO:<portal@portal.example.org>", b"DATA"):
            stalled.sendall(command + b"\r\n")
            _reply(sf)
        stalled.sendall(b"Subject: never finished\r\n\r\nhalf a mess")
        start = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        served.proc.wait(15)
        took = time.monotonic() - start
        assert served.proc.returncode == 0 and 1.5 < took < 5, took
        assert _reply(sf)[:3] in (b"421", b"")
        assert served.messages() == []  # nothing half-stored
        served.wait_log("drain deadline passed")
        stalled.close()
    finally:
        served.kill()


# -- the audit trail of one patient's whole story -----------------------------------------
def test_audit_rows_for_a_full_patient_story(services, tmp_path, capsys):
    from gateway import patients
    from gateway.delivery.worker import OutboxWorker
    from gateway.enrollment import enroll, invites
    from gateway.models import utcnow

    with services.transaction() as session:
        patients.import_roster(session, "account_number,first_name,last_name,email,state\n"
                                        "1001,Ana,Lopez,ana@example.com,CA\n", actor="cli")
    now = utcnow()
    with services.transaction() as session:
        patient = patients.by_account(session, "1001")
        _, token = invites.create(session, services, patient, now=now, actor="cli")
    outcome = enroll.enroll(services, token, enroll.Form(
        account="1001", password="correct horse battery staple",
        confirm="correct horse battery staple", agree=True, terms_version="v1"), "v1", now)
    assert outcome.ok, outcome

    raw = with_attachment().as_bytes().replace(b"\n", b"\r\n")
    [ctx] = pipeline.ingest(services, pipeline.Inbound(
        raw=raw, mail_from="ana@example.com", rcpt_tos=["portal@portal.example.org"],
        session_id="s-patient"))
    with services.factory() as session:
        staff_token = session.scalar(select(Token.token).where(
            Token.thread_id == ctx.thread.id, Token.purpose == "staff"))
    answer = EmailMessage()
    answer["From"], answer["To"] = "nurse@practice.example.org", \
        f"staff+{staff_token}@portal.example.org"
    answer["Subject"] = "Re: Appointment"
    answer.set_content("Yes, Tuesday at 10 works.")
    pipeline.ingest(services, pipeline.Inbound(
        raw=answer.as_bytes().replace(b"\n", b"\r\n"), mail_from="nurse@practice.example.org",
        rcpt_tos=[f"staff+{staff_token}@portal.example.org"], session_id="s-staff"))
    with pytest.raises(pipeline.Reject):
        pipeline.ingest(services, pipeline.Inbound(
            raw=patient_mail(sender="mallory@example.net").as_bytes().replace(b"\n", b"\r\n"),
            mail_from="ana@example.com", rcpt_tos=["portal@portal.example.org"],
            session_id="s-refused"))

    async def deliver():
        worker = OutboxWorker(services)
        while await worker.deliver_batch():
            pass
        await worker.backend.close()
    asyncio.run(deliver())

    capsys.readouterr()
    assert cli("--config", services.cfg.path, "audit", "list", "--patient", "1001",
               "--json") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    actions = [r["action"] for r in rows]
    story = ["patient.imported", "patient.invited", "invite.sent", "patient.active",
             "invite.used", "patient.enrolled", "attachment.removed", "message.accepted",
             "message.accepted", "thread.answered", "mail.sent"]
    it = iter(actions)
    assert all(step in it for step in story), actions  # in this order
    for row in rows:
        assert row["actor"] and row["at"].endswith("Z") and row["account"] == "1001", row
    assert {r["actor"] for r in rows} >= {"cli", "enrollment", "smtp", "outbox"}
    assert any(r["actor"].startswith("staff:") for r in rows)
    text = json.dumps(rows)
    for secret in ("ana@example.com", "nurse@", "Lopez", "Lopez_lab_results", "Tuesday"):
        assert secret not in text, secret

    with services.factory() as session:
        refused = session.scalars(select(Audit).where(Audit.action == "message.refused")).all()
    assert [(r.object_id, r.detail["reason"]) for r in refused] == [
        ("s-refused", "envelope-from-mismatch")]

    assert cli("--config", services.cfg.path, "audit", "list", "--since", "1h",
               "--action", "invite.") == 0
    table = capsys.readouterr().out
    assert "invite.sent" in table and "invite.used" in table and "message." not in table
    assert cli("--config", services.cfg.path, "audit", "list", "--since", "next week") == 2
    assert cli("--config", services.cfg.path, "audit", "list", "--patient", "9999") == 1


def test_since_accepts_ages_and_iso_dates():
    from gateway.cli.audit_cmd import parse_since
    now = dt.datetime(2025, 3, 10, 12, 0)
    assert parse_since("7d", now) == dt.datetime(2025, 3, 3, 12, 0)
    assert parse_since("24h", now) == dt.datetime(2025, 3, 9, 12, 0)
    assert parse_since("30m", now) == dt.datetime(2025, 3, 10, 11, 30)
    assert parse_since("2025-01-31") == dt.datetime(2025, 1, 31)
    assert parse_since("2025-01-31T10:00:00+02:00") == dt.datetime(2025, 1, 31, 8, 0)


# -- retention -----------------------------------------------------------------------------
def _thread(services, patient_id: int, state: str, ended_days_ago: float, text: str) -> str:
    from gateway.steps.thread import open_thread
    when = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) \
        - dt.timedelta(days=ended_days_ago)
    with services.transaction() as session:
        thread = open_thread(session, patient_id, None, state)
        thread.answered_at = when if state == "answered" else None
        thread.created_at = when
        session.flush()
        session.add(Message(thread_id=thread.id, patient_id=patient_id, direction="patient",
                            subject=f"about {text}", body=text, history="> earlier",
                            category="appointment", received_at=when))
        session.add(Outbox(kind="staff_copy", recipient="frontdesk@practice.example.org",
                           mail_from="portal@portal.example.org",
                           raw=f"Subject: x\r\n\r\n{text}\r\n".encode(), state="sent",
                           thread_id=thread.id, patient_id=patient_id, created_at=when))
        return thread.public_id


def test_purge_removes_text_of_ended_threads_after_retention(services, capsys):
    patient_id = add_patient(services)
    old = _thread(services, patient_id, "answered", 400, "old answered text")
    open_old = _thread(services, patient_id, "open", 400, "old but still open")
    recent = _thread(services, patient_id, "answered", 30, "recent answered text")
    closed = _thread(services, patient_id, "closed", 400, "closed long ago")
    with services.transaction() as session:  # closed last week: its clock starts then
        session.add(Audit(actor="cli", action="thread.closed", object_type="thread",
                          object_id=closed, patient_id=patient_id))
    cfg = services.cfg.path

    def texts() -> dict:
        with services.factory() as session:
            rows = session.execute(select(Thread.public_id, Message.body, Message.subject,
                                          Message.history, Message.category)
                                   .join(Message, Message.thread_id == Thread.id))
            return {tid: (body, subject, history, category)
                    for tid, body, subject, history, category in rows}

    before = texts()
    assert cli("--config", cfg, "purge", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would purge: 1 messages and 1 sent mails in 1 threads" in out, out
    assert texts() == before

    assert cli("--config", cfg, "purge", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threads"] == 1 and report["messages"] == 1 and not report["dry_run"]
    after = texts()
    assert after[old] == (None, None, None, "appointment")  # metadata stays
    for kept in (open_old, recent, closed):
        assert after[kept] == before[kept]
    with services.factory() as session:
        raws = {tid: raw for tid, raw in session.execute(
            select(Thread.public_id, Outbox.raw).join(Outbox, Outbox.thread_id == Thread.id))}
        purged = session.scalars(select(Audit).where(Audit.action == "thread.purged")).all()
    assert raws[old] == b"" and b"recent answered text" in raws[recent]
    assert [(a.object_id, a.detail["messages"]) for a in purged] == [(old, 1)]

    assert cli("--config", cfg, "purge") == 0  # nothing left to do
    assert "purged: 0 messages" in capsys.readouterr().out
