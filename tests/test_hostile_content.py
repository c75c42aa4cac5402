"""Hostile content over real SMTP: it cannot stall, crash or fool the content path.

ReDoS bait, CPU budget, MIME nesting and part counts (RFC 2231 boundaries too), many small
attachments, and the quarantine's bounds (strangers never reach it; size and age caps)."""
from __future__ import annotations

import datetime as dt
from email import policy

import pytest
from sqlalchemy import func, select

from gateway import pipeline, quarantine
from gateway.app import Gateway
from gateway.config import load_config
from gateway.models import Attachment, Message, Quarantine
from gateway.services import Services
from tests.conftest import maildir_files, migrate, wait_for_mail, write_config
from tests.helpers import add_patient, patient_mail, smtp_send

ANA, PORTAL = "ana@example.com", "portal@portal.example.org"
TOO_COSTLY = "5.6.0 Message too complex to process; please send plain text or call the office"


@pytest.fixture
async def start(tmp_path, db_url):
    """start(gateway={...}, **smtp) -> (gateway, services)."""
    migrate(db_url)
    running = []

    async def _start(gateway=None, **smtp):
        cfg = load_config(write_config(tmp_path, db_url, max_bytes=8 * 1024 * 1024),
                          overrides={"smtp": smtp, "gateway": gateway or {}})
        services = Services.create(cfg)
        gw = Gateway(services, inbound_port=0)
        await gw.start()
        running.append((gw, services))
        add_patient(services)
        return gw, services
    yield _start
    for gw, services in running:
        await gw.stop(deadline=5)
        services.close()


async def send(gateway, raw: bytes, sender: str = ANA) -> tuple[int, str]:
    stage, code, text = await smtp_send(gateway.inbound_port, sender, [PORTAL], raw)
    assert stage == "DATA", (stage, code, text)
    return code, text


def count(services, model) -> int:
    with services.factory() as session:
        return session.scalar(select(func.count()).select_from(model))


def head(subject: str, ctype: str, sender: str = ANA) -> str:
    return (f"From: {sender}\r\nTo: {PORTAL}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.com>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {ctype}\r\n\r\n")


# --- ReDoS and the CPU budget -------------------------------------------------------------

async def test_css_url_bait_is_answered_with_its_text(start):
    """2.4 KB of CSS bait took the old url(...) pattern about 10 s of CPU; with a 1 s
    budget that would be a 554.  Now the message is accepted and its text kept."""
    gateway, services = await start(content_cpu_seconds=1)
    html = ("<html><head><style>p { background: url(" + (" " * 800 + "\r\n") * 3
            + "x }</style></head>"
            "<body><p>Can I move my appointment to Friday?</p></body></html>")
    code, _ = await send(gateway, (head("css bait", "text/html; charset=utf-8")
                                   + html + "\r\n").encode())
    assert code == 250
    with services.factory() as session:
        assert "move my appointment" in session.scalar(select(Message.body))


def busy_html(kb: int) -> bytes:
    cells = "".join(f"<td><b>{i}</b> <i>cell</i></td>" for i in range(15))
    row = f"<tr>{cells}</tr>\r\n"
    body = row * (kb * 1024 // len(row))
    return (head("busy", "text/html; charset=utf-8") + "<table>\r\n" + body
            + "</table>\r\n").encode()


async def test_content_past_the_cpu_budget_is_refused_554_and_nothing_kept(start):
    gateway, services = await start(content_cpu_seconds=0.1,
                                    quarantine_after_crashes=1)
    code, text = await send(gateway, busy_html(3000))
    assert (code, text) == (554, TOO_COSTLY)
    assert count(services, Message) == 0 and count(services, Quarantine) == 0
    assert (await send(gateway, patient_mail().as_bytes(policy=policy.SMTP)))[0] == 250


# --- MIME shape: counted by the parser --------------------------------------------------------

def nested(depth: int) -> bytes:
    body = "Content-Type: text/plain\r\n\r\nCan I move my appointment?\r\n"
    opening = "".join(f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n'
                      for i in range(depth - 1))
    closing = "".join(f"--b{i}--\r\n" for i in range(depth - 1, -1, -1))
    return (head(f"nested {depth}", 'multipart/mixed; boundary="b0"') + opening
            + f"--b{depth - 1}\r\n" + body + closing).encode()


async def test_1500_deep_nesting_is_554_never_a_crash_nor_quarantine(start):
    gateway, services = await start(quarantine_after_crashes=1)
    for _ in range(2):
        code, text = await send(gateway, nested(1500))
        assert (code, text) == (554, "5.6.0 MIME structure nested too deeply")
    assert count(services, Quarantine) == 0 and count(services, Message) == 0
    assert (await send(gateway, nested(15)))[0] == 250


def many_parts(n: int, ctype_boundary: str = 'boundary="p"', boundary: str = "p") -> bytes:
    part = f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return (head(f"parts {n}", f"multipart/mixed; {ctype_boundary}") + part * n
            + f"--{boundary}--\r\n").encode()


async def test_20000_parts_are_554_before_they_cost_much(start):
    gateway, services = await start(quarantine_after_crashes=1)
    code, text = await send(gateway, many_parts(20_000))
    assert (code, text) == (554, "5.6.0 Too many MIME parts")
    assert count(services, Quarantine) == 0 and count(services, Message) == 0


async def test_rfc2231_continued_boundary_is_counted_too(start):
    gateway, services = await start()
    split = 'boundary*0="long-boundary-"; boundary*1="of-a-client"'
    code, text = await send(gateway, many_parts(1_200, split, "long-boundary-of-a-client"))
    assert (code, text) == (554, "5.6.0 Too many MIME parts")
    small = many_parts(3, split, "long-boundary-of-a-client").replace(
        b"\r\n\r\nx\r\n", b"\r\n\r\nCan I move my appointment?\r\n", 1)
    assert (await send(gateway, small))[0] == 250
    with services.factory() as session:
        assert session.scalar(select(Message.body)).startswith("Can I move my appointment?")


async def test_500_small_attachments_are_accepted_and_logged(start):
    """A forwarded thread with many inline images is normal mail."""
    gateway, services = await start()
    msg = patient_mail(body="Here is the thread about my appointment.")
    for i in range(500):
        msg.add_attachment(b"\x89PNG\r\n\x1a\n" + bytes([i % 256]) * 20, maintype="image",
                           subtype="png", filename=f"image{i:03}.png")
    code, _ = await send(gateway, msg.as_bytes(policy=policy.SMTP))
    assert code == 250
    assert count(services, Attachment) == 500
    with services.factory() as session:
        assert session.scalar(select(Message.body)).startswith("Here is the thread")


# --- the quarantine: authenticated senders only, bounded ------------------------------------

def crash_on_marker(ctx):
    if b"CRASHME" in ctx.inbound.raw:
        raise ValueError("a bug in a content step")


async def test_a_strangers_crashing_message_never_reaches_the_quarantine(start, monkeypatch):
    gateway, services = await start(quarantine_after_crashes=1)
    monkeypatch.setattr(pipeline, "CONTENT_STEPS", pipeline.CONTENT_STEPS + (crash_on_marker,))
    stranger = "x.bounce@attack.example"  # looks like a rewritten envelope
    raw = patient_mail(sender=stranger, body="CRASHME").as_bytes(policy=policy.SMTP)
    for _ in range(3):
        code, text = await send(gateway, raw, sender=stranger)
        assert code == 550 and text.startswith("5.7.1 This address accepts mail only")
    assert count(services, Quarantine) == 0


async def test_a_patients_crashing_message_is_held_after_three_tries(start, monkeypatch):
    gateway, services = await start(quarantine_after_crashes=3)
    monkeypatch.setattr(pipeline, "CONTENT_STEPS", pipeline.CONTENT_STEPS + (crash_on_marker,))
    raw = patient_mail(body="CRASHME please").as_bytes(policy=policy.SMTP)
    assert [(await send(gateway, raw))[0] for _ in range(3)] == [451, 451, 250]
    with services.factory() as session:
        row = session.scalars(select(Quarantine)).one()
        assert (row.state, row.raw, row.step) == ("held", raw, None)


async def test_a_full_quarantine_keeps_answering_451(start, monkeypatch):
    gateway, services = await start(gateway={"quarantine_max_bytes": 1000},
                                    quarantine_after_crashes=1)
    monkeypatch.setattr(pipeline, "CONTENT_STEPS", pipeline.CONTENT_STEPS + (crash_on_marker,))
    small = patient_mail(body="CRASHME").as_bytes(policy=policy.SMTP)
    big = patient_mail(body="CRASHME " + "x " * 600).as_bytes(policy=policy.SMTP)
    assert len(small) < 1000 < len(big)
    assert (await send(gateway, small))[0] == 250  # held
    for _ in range(2):
        assert (await send(gateway, big))[0] == 451  # would not fit: the sender keeps it
    with services.factory() as session:
        assert sorted(session.scalars(select(Quarantine.state))) == ["held", "retrying"]


async def test_held_messages_lose_their_bytes_after_quarantine_days(start, monkeypatch):
    gateway, services = await start(gateway={"quarantine_days": 30},
                                    quarantine_after_crashes=1)
    monkeypatch.setattr(pipeline, "CONTENT_STEPS", pipeline.CONTENT_STEPS + (crash_on_marker,))
    assert (await send(gateway, patient_mail(body="CRASHME").as_bytes(
        policy=policy.SMTP)))[0] == 250
    with services.transaction() as session:
        assert quarantine.expire(session, 30, dt.datetime.utcnow() + dt.timedelta(days=29)) == 0
        assert quarantine.expire(session, 30, dt.datetime.utcnow() + dt.timedelta(days=31)) == 1
    with services.factory() as session:
        row = session.scalars(select(Quarantine)).one()
        assert (row.state, row.raw) == ("expired", None)


async def test_adversarial_session_does_not_delay_the_staff_copy(start):
    """A message next to one refused for its cost is delivered as usual."""
    gateway, services = await start(content_cpu_seconds=0.1)
    assert (await send(gateway, busy_html(3000)))[0] == 554
    assert (await send(gateway, patient_mail().as_bytes(policy=policy.SMTP)))[0] == 250
    await wait_for_mail(services.cfg.maildir_root, ANA)
    assert len(maildir_files(services.cfg.maildir_root, ANA)) == 1


async def test_reading_a_message_of_many_lines_lets_other_sessions_run():
    """A StreamReader with data buffered never suspends; the session's reader does, every
    64 lines, so one huge DATA cannot hold the event loop (other sessions, /healthz)."""
    import asyncio

    from gateway.smtp.inbound import YieldingReader
    reader = asyncio.StreamReader()
    reader.feed_data(b"x\r\n" * 1000)
    reader.feed_eof()
    wrapped = YieldingReader(reader)
    ticks, done = 0, False

    async def other_session():
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)
    task = asyncio.create_task(other_session())
    for _ in range(1000):
        assert await wrapped.readuntil(b"\r\n") == b"x\r\n"
    done = True
    await task
    assert ticks >= 10
    wrapped._transport = "t"  # aiosmtpd swaps the transport on STARTTLS: it must land
    assert reader._transport == "t"
