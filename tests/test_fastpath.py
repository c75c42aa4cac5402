"""The inbound fast path: only the decision is serialised (DNS and content work happen
before the write transaction), concurrent decisions commit together, one message's failure
never fails another, and outgoing mail is rendered cheaply but byte for byte as before."""
from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import email.utils
import itertools
import threading
import time

import pytest
from sqlalchemy import func, select

from gateway import notices as notices_module
from gateway.app import Gateway
from gateway.config import load_config
from gateway.models import Audit, Message
from gateway.notices import Notices
from gateway.services import Services
from tests.conftest import ROOT, write_config
from tests.dnsstub import DNSStub
from tests.helpers import add_patient, patient_mail, smtp_send

PORTAL = "portal@portal.example.org"


class SlowDNS(DNSStub):
    """The stub DNS server, answering names under slow.example only after `delay`."""

    def __init__(self, delay: float):
        super().__init__()
        answer, self.delay = self.resolver.resolve, delay

        def resolve(request, handler):
            if str(request.q.qname).lower().rstrip(".").endswith("slow.example"):
                time.sleep(self.delay)
            return answer(request, handler)
        self.resolver.resolve = resolve


@pytest.fixture
def slow_dns():
    stub = SlowDNS(delay=2.5)
    yield stub
    stub.stop()


def crlf(msg) -> bytes:
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


async def test_slow_dns_for_one_sender_does_not_hold_up_another(tmp_path, db_url, config,
                                                                 slow_dns):
    """Sender authentication waits on DNS outside the write transaction: while one
    sender's DNS takes 2.5 s, another patient's message is stored and answered at once."""
    slow_dns.resolver.txt("example.com", "v=spf1 ip4:127.0.0.1 -all")
    slow_dns.resolver.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    cfg = load_config(write_config(tmp_path, db_url), overrides={"policy": {
        "auth_mode": "verify", "require_aligned_auth": True,
        "dns_servers": [slow_dns.address], "dns_timeout_seconds": 10}})
    services = Services.create(cfg)
    gw = Gateway(services, inbound_port=0, submission_port=0, http_port=0)
    await gw.start()
    try:
        add_patient(services)
        add_patient(services, account="1002", email="bo@slow.example", first="Bo")
        # Rules and model load on first use (seconds when no earlier test has loaded them):
        # loaded here, so that the clock below measures the DNS wait only.
        await asyncio.to_thread(lambda: services.classifier)
        slow = asyncio.create_task(smtp_send(
            gw.inbound_port, "bo@slow.example", [PORTAL],
            crlf(patient_mail(sender="bo@slow.example"))))
        await asyncio.sleep(0.5)  # the slow sender is waiting on DNS now
        started = time.monotonic()
        fast = await smtp_send(gw.inbound_port, "ana@example.com", [PORTAL],
                               crlf(patient_mail()))
        fast_seconds = time.monotonic() - started
        assert fast[:2] == ("DATA", 250)
        assert not slow.done()  # still waiting on DNS when the other one was answered
        assert fast_seconds < 1.5, fast_seconds
        await slow
    finally:
        await gw.stop(deadline=5)
        services.close()


def _count(services, model) -> int:
    with services.factory() as session:
        return session.scalar(select(func.count()).select_from(model))


def _audit(tag: str):
    def job(session):
        session.add(Audit(actor="test", action=tag, object_type="test"))
        return tag
    return job


def _failing(session):
    session.add(Audit(actor="test", action="doomed", object_type="test"))
    session.flush()
    raise ValueError("this message's step crashed")


def _queue_behind_a_held_commit(services, jobs):
    """Hold the committer with one job until JOBS are queued from threads of their own
    (concurrent sessions), then let it go; returns [(result or exception)] per job."""
    release, started = threading.Event(), threading.Event()

    def hold(session):
        started.set()
        release.wait(10)
        return "held"
    results = [None] * len(jobs)

    def submit(i, job):
        try:
            results[i] = services.write(job)
        except Exception as error:
            results[i] = error
    holder = threading.Thread(target=submit, args=(0, hold))
    holder.start()
    started.wait(10)
    batches_before = services.group.batches
    threads = [threading.Thread(target=submit, args=(i, job)) for i, job in
               enumerate(jobs) if i > 0]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(services.group._jobs) < len(threads) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in [holder, *threads]:
        t.join(20)
    return results, services.group.batches - batches_before


def test_ready_decisions_commit_together_and_a_failure_stays_alone(services):
    jobs = [None] + [_audit(f"ok{i}") for i in range(6)] + [_failing] + \
        [_audit(f"ok{i}") for i in range(6, 9)]
    results, batches = _queue_behind_a_held_commit(services, jobs)
    assert batches == 2  # the held job, then the nine queued meanwhile in one commit
    assert results[0] == "held"
    assert isinstance(results[7], ValueError)
    assert results[1:7] + results[8:] == [f"ok{i}" for i in range(9)]
    with services.factory() as session:
        actions = set(session.scalars(select(Audit.action)).all())
    assert {f"ok{i}" for i in range(9)} <= actions and "doomed" not in actions


def _breaks_the_transaction(session):
    """A message whose work ends the shared transaction under everyone's feet."""
    session.add(Audit(actor="test", action="breaker", object_type="test"))
    session.flush()
    session.connection().exec_driver_sql("ROLLBACK")
    return "broken"


def test_a_failed_shared_commit_is_retried_one_by_one(services):
    jobs = [None, _audit("a"), _breaks_the_transaction, _audit("b")]
    results, batches = _queue_behind_a_held_commit(services, jobs)
    assert results[1] == "a" and results[3] == "b"
    assert batches == 1 + 3  # the held job; then the shared commit failed: each alone
    with services.factory() as session:
        actions = session.scalars(select(Audit.action)).all()
    assert actions.count("a") == 1 and actions.count("b") == 1
    assert "breaker" not in actions


async def test_concurrent_sessions_are_all_stored_once(gateway):
    """Ten sessions at once over SMTP: every one 250, every message stored exactly once."""
    for i in range(10):
        add_patient(gateway.s, account=f"20{i:02d}", email=f"p{i}@example.com")
    replies = await asyncio.gather(*(
        smtp_send(gateway.inbound_port, f"p{i}@example.com", [PORTAL],
                  crlf(patient_mail(sender=f"p{i}@example.com", subject=f"Q {i}")))
        for i in range(10)))
    assert [r[:2] for r in replies] == [("DATA", 250)] * 10
    assert _count(gateway.s, Message) == 10


HOSTILE_VALUES = [
    "plain-token", "r1 r2 r3", "<abc@example.com>", "<a@b>  <c@d>", " leading",
    "trailing ", "=?utf-8?q?Caf=C3=A9?=", "Caf\u00e9 caf\u00e9", "x" * 70, "y " * 60,
    "a\tb", "semi;colon, comma \"quoted\"", "(comment) <id@host>", "",
]


@pytest.mark.parametrize("lang", ["en", ["es", "en"]])
def test_outgoing_mail_is_byte_for_byte_what_header_objects_give(monkeypatch, lang):
    """Plain header values are stored as text instead of header objects; the mail that
    goes out is the same bytes, whatever the values hold."""
    counter = itertools.count()
    monkeypatch.setattr(email.utils, "make_msgid",
                        lambda domain=None: f"<m{next(counter)}@{domain}>")
    monkeypatch.setattr(email.utils, "format_datetime",
                        lambda _: "Wed, 02 Dec 2026 01:00:00 +0000")
    notices = Notices(ROOT / "templates", "America/Los_Angeles")
    context = dict(
        practice_name="Sunrise Clinic", office_phone="555", office_hours="9-5",
        after_hours_line="911", after_hours_name="Hospital", portal_url="https://p.example",
        patient_name="Jos\u00e9 N\u00fa\u00f1ez", due=dt.datetime(2026, 12, 3, 5, 0),
        subject="R\u00e9: =?utf-8?q?x?= " + "long " * 30, message_ref="M-12",
        removed_files=["a.pdf"], removed_more=0, removed_count=1)
    headers = {f"X-Test-{i}": v for i, v in enumerate(HOSTILE_VALUES)}
    headers.update({"Reply-To": "reply+abc@portal.example.org", "References": "<a@b> <c@d>"})

    def build(policy):
        nonlocal counter
        counter = itertools.count()
        monkeypatch.setattr(notices_module, "OUTBOUND", policy)
        msg = notices.build("emergency", sender='"Sunrise, Clinic" <portal@portal.example.org>',
                            to="Jos\u00e9 <ana@example.com>", domain="portal.example.org",
                            headers=headers, lang=lang, **context)
        msg["X-Portal-Outbox"] = "17"
        msg.set_boundary("BOUNDARY")
        return msg.as_bytes()
    fast = build(notices_module.CopiedHeaders())
    assert fast == build(email.policy.default)
    assert build(notices_module.CopiedHeaders()) == fast  # with what it remembered


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_rcpt_to_a_reply_token_does_not_wait_for_a_writer(gateway):
    """RCPT only reads: while another writer holds SQLite's write lock for three seconds,
    ``reply+TOKEN`` is still answered at once."""
    import sqlite3
    from gateway.steps.thread import open_thread, thread_token
    patient_id = add_patient(gateway.s)
    with gateway.s.transaction() as session:
        token = thread_token(session, open_thread(session, patient_id, None, "open"), "reply")
    path = gateway.s.cfg.database_url.split("///", 1)[1]
    held = threading.Event()

    def hold_the_write_lock():
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(3)
        writer.execute("ROLLBACK")
        writer.close()
    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    held.wait(5)
    from tests.helpers import raw_smtp
    started = time.monotonic()
    replies = await raw_smtp(gateway.inbound_port, [
        b"EHLO client.example\r\n", b"MAIL FROM:<ana@example.com>\r\n",
        f"RCPT TO:<reply+{token}@portal.example.org>\r\n".encode(), b"QUIT\r\n"])
    took = time.monotonic() - started
    holder.join()
    assert replies[3].startswith(b"250"), replies
    assert took < 1.5, took
    replies = await raw_smtp(gateway.inbound_port, [  # and an unknown token is still refused
        b"EHLO client.example\r\n", b"MAIL FROM:<ana@example.com>\r\n",
        b"RCPT TO:<reply+notatoken@portal.example.org>\r\n", b"QUIT\r\n"])
    assert replies[3].startswith(b"550 5.1.1"), replies


def test_group_commit_works_again_after_close_and_in_a_forked_child(services):
    """`serve` with workers closes its services and forks: each worker still commits."""
    import os
    assert services.write(_audit("before")) == "before"
    services.close()
    assert services.write(_audit("after-close")) == "after-close"
    services.close()
    pid = os.fork()
    if pid == 0:
        try:
            code = 0 if services.write(_audit("child")) == "child" else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with services.factory() as session:
        actions = set(session.scalars(select(Audit.action)).all())
    assert {"before", "after-close", "child"} <= actions
