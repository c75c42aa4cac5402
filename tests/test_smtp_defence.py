"""SMTP protocol defence: smuggling, STARTTLS injection, limits, rate, quarantine, duplicates.

Raw sockets wherever a normal client would never send what the test sends."""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import ssl
from contextlib import redirect_stdout
from email import policy

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from gateway import pipeline
from gateway.app import Gateway
from gateway.cli import quarantine_cmd
from gateway.config import ConfigError, load_config
from gateway.models import Message, Outbox, Quarantine
from gateway.services import Services
from tests.conftest import maildir_files, migrate, wait_for_mail, write_config
from tests.helpers import add_patient, patient_mail, raw_smtp, smtp_send

ANA, PORTAL = "ana@example.com", "portal@portal.example.org"
ENVELOPE = [b"EHLO client.example.com\r\n", f"MAIL FROM:<{ANA}>\r\n".encode(),
            f"RCPT TO:<{PORTAL}>\r\n".encode(), b"DATA\r\n"]


@pytest.fixture
async def start(tmp_path, db_url):
    """start(**smtp) -> (gateway, services) with [smtp] overrides."""
    migrate(db_url)
    running = []

    async def _start(**smtp):
        cfg = load_config(write_config(tmp_path, db_url), overrides={"smtp": smtp})
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


def mail_bytes(**kw) -> bytes:
    return patient_mail(**kw).as_bytes(policy=policy.SMTP)


def stored(services) -> int:
    with services.factory() as session:
        return session.scalar(select(func.count()).select_from(Message))


# --- smuggling: one test per ending ---------------------------------------------------------

ENDINGS = {
    "lf-dot-lf": (b"\n.\n", b"550 5.5.2"), "cr-dot-cr": (b"\r.\r", b"550 5.5.2"),
    "cr-dot-lf": (b"\r.\n", b"550 5.5.2"), "lf-dot-cr": (b"\n.\r", b"550 5.5.2"),
    "lf-dot-crlf": (b"\n.\r\n", b"550 5.5.2"), "crlf-dot-lf": (b"\r\n.\n", b"550 5.5.2"),
    "cr-dot-crlf": (b"\r.\r\n", b"550 5.5.2"), "crlf-dot-cr": (b"\r\n.\r", b"550 5.5.2"),
    "crlf-nul-dot-crlf": (b"\r\n\x00.\r\n", b"550 5.6.0"),
    "crlf-dot-nul-crlf": (b"\r\n.\x00\r\n", b"550 5.6.0"),
}


async def smuggle(gateway, services, ending: bytes) -> list[bytes]:
    first = mail_bytes(body="First message.").rstrip(b"\r\n")
    second = mail_bytes(subject="Smuggled", body="Smuggled message.")
    payload = (first + ending + f"MAIL FROM:<{ANA}>\r\nRCPT TO:<{PORTAL}>\r\nDATA\r\n"
               .encode() + second + b".\r\n")
    return await raw_smtp(gateway.inbound_port, ENVELOPE + [payload, b"QUIT\r\n"])


@pytest.mark.parametrize("name", list(ENDINGS))
async def test_smuggled_second_message_is_never_accepted(start, name):
    gateway, services = await start()
    ending, expected = ENDINGS[name]
    replies = await smuggle(gateway, services, ending)
    assert replies[4].startswith(b"354")
    assert replies[5].startswith(expected), replies  # one reply: the whole write is one DATA
    assert replies[6].startswith(b"221"), replies  # no reply to a smuggled MAIL/RCPT/DATA
    await asyncio.sleep(0.2)
    assert stored(services) == 0
    assert not maildir_files(services.cfg.maildir_root, "frontdesk@practice.example.org")


# --- STARTTLS ---------------------------------------------------------------------------------

async def read_reply(reader) -> bytes:
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        lines.append(line)
        if not line or line[3:4] != b"-":
            return b"".join(lines)


@pytest.fixture
def cert(tmp_path):
    from tests.relay import make_cert
    return make_cert(tmp_path)


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


async def test_command_pipelined_with_starttls_does_not_survive_into_tls(start, cert):
    """CVE-2024-34083: plaintext after STARTTLS in the same packet must be discarded."""
    gateway, _ = await start(tls_cert_file=str(cert[0]), tls_key_file=str(cert[1]))
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.inbound_port)
    try:
        await read_reply(reader)
        writer.write(b"EHLO client.example.com\r\n")
        assert b"STARTTLS" in await read_reply(reader)
        writer.write(f"STARTTLS\r\nMAIL FROM:<{ANA}>\r\n".encode())  # one write, one packet
        assert (await read_reply(reader)).startswith(b"220")
        await writer.start_tls(client_tls())
        assert writer.get_extra_info("ssl_object").version().startswith("TLS")
        writer.write(b"NOOP\r\n")
        assert await read_reply(reader) == b"250 OK\r\n"  # not a reply to the injected MAIL
        writer.write(f"MAIL FROM:<{ANA}>\r\n".encode())
        assert (await read_reply(reader)).startswith(b"503")  # state reset: EHLO needed
        writer.write(b"EHLO client.example.com\r\n")
        assert b"STARTTLS" not in await read_reply(reader)
        writer.write(f"MAIL FROM:<{ANA}>\r\n".encode())
        assert (await read_reply(reader)).startswith(b"250")
    finally:
        writer.close()


async def test_require_starttls_refuses_mail_before_tls(start, cert):
    gateway, _ = await start(tls_cert_file=str(cert[0]), tls_key_file=str(cert[1]),
                             require_starttls=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.inbound_port)
    try:
        await read_reply(reader)
        writer.write(b"EHLO client.example.com\r\n")
        await read_reply(reader)
        writer.write(f"MAIL FROM:<{ANA}>\r\n".encode())
        assert (await read_reply(reader)).startswith(b"530 5.7.0")
        writer.write(b"STARTTLS\r\n")
        assert (await read_reply(reader)).startswith(b"220")
        await writer.start_tls(client_tls())
        writer.write(b"EHLO client.example.com\r\n")
        await read_reply(reader)
        writer.write(f"MAIL FROM:<{ANA}>\r\n".encode())
        assert (await read_reply(reader)).startswith(b"250")
    finally:
        writer.close()


def test_require_starttls_needs_a_certificate(tmp_path):
    path = write_config(tmp_path, "sqlite:///x.db")
    with pytest.raises(ConfigError, match=r"\[smtp\] require_starttls"):
        load_config(path, overrides={"smtp": {"require_starttls": True}})
    with pytest.raises(ConfigError, match=r"\[smtp\] max_mime_depth: must be between"):
        load_config(path, overrides={"smtp": {"max_mime_depth": 0}})
    with pytest.raises(ConfigError, match=r"\[smtp\] max_sessions_per_ip"):
        load_config(path, overrides={"smtp": {"max_sessions": 5, "max_sessions_per_ip": 6}})


# --- limits -----------------------------------------------------------------------------------

async def data_reply(gateway, raw: bytes) -> tuple[int, str]:
    stage, code, text = await smtp_send(gateway.inbound_port, ANA, [PORTAL], raw)
    assert stage == "DATA"
    return code, text


async def test_recipients_per_message_are_capped(start):
    gateway, _ = await start(max_recipients=2)
    rcpt = [f"RCPT TO:<{PORTAL}>\r\n".encode()] * 3
    replies = await raw_smtp(gateway.inbound_port, ENVELOPE[:2] + rcpt)
    assert replies[3].startswith(b"250") and replies[4].startswith(b"250")
    assert replies[5].startswith(b"452 4.5.3")


async def test_long_command_line_is_refused(start):
    gateway, _ = await start()
    long_mail = b"MAIL FROM:<" + b"a" * 700 + b"@example.com>\r\n"
    replies = await raw_smtp(gateway.inbound_port, [ENVELOPE[0], long_mail, b"NOOP\r\n"])
    assert replies[2].startswith(b"500 5.5.2 Command line too long")
    assert replies[3] == b"250 OK\r\n"  # the session goes on


async def test_long_data_line_is_refused(start):
    gateway, services = await start(max_line_length=2000)
    head = f"From: {ANA}\r\nTo: {PORTAL}\r\nSubject: long\r\nMessage-ID: <{{}}@x>\r\n\r\n"
    ok = (head.format("ok") + "x" * 1500 + "\r\n").encode()
    assert (await data_reply(gateway, ok))[0] == 250
    too_long = (head.format("long") + "y" * 2500 + "\r\n").encode()
    code, text = await data_reply(gateway, too_long)
    assert (code, text.split("(")[0].strip()) == (500, "5.5.2 Line too long")
    assert stored(services) == 1


async def test_header_block_size_is_capped(start):
    gateway, services = await start()
    fillers = {f"X_Filler_{i}": "f" * 900 for i in range(120)}  # about 110 KB of header
    code, text = await data_reply(gateway, mail_bytes(**fillers))
    assert (code, text) == (552, "5.3.4 Message header block too large")
    assert stored(services) == 0


def nested(depth: int) -> bytes:
    head = (f"From: {ANA}\r\nTo: {PORTAL}\r\nSubject: nested\r\nMessage-ID: <n{depth}@x>\r\n"
            "MIME-Version: 1.0\r\n")
    body = "Content-Type: text/plain\r\n\r\nCan I move my appointment?\r\n"
    for level in range(depth, 0, -1):
        b = f"b{level}"
        body = (f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n--{b}\r\n{body}'
                f"--{b}--\r\n")
    return (head + body).encode()


async def test_mime_depth_is_capped(start):
    gateway, services = await start()
    assert (await data_reply(gateway, nested(20)))[0] == 250
    code, text = await data_reply(gateway, nested(21))
    assert (code, text) == (554, "5.6.0 MIME structure nested too deeply")
    assert stored(services) == 1


async def test_mime_part_count_is_capped(start):
    gateway, services = await start(max_mime_parts=10)
    msg = patient_mail()
    for i in range(12):
        msg.add_attachment(f"note {i}".encode(), maintype="application",
                           subtype="octet-stream", filename=f"n{i}.bin")
    code, text = await data_reply(gateway, msg.as_bytes(policy=policy.SMTP))
    assert (code, text) == (554, "5.6.0 Too many MIME parts")
    assert stored(services) == 0


async def test_received_hops_beyond_the_limit_are_a_loop(start):
    gateway, services = await start()
    hops = "".join(f"Received: from h{i}.example.net by h{i + 1}.example.net; "
                   f"Mon, 1 Jan 2024 00:00:{i % 60:02d} +0000\r\n" for i in range(31))
    code, text = await data_reply(gateway, hops.encode() + mail_bytes())
    assert (code, text) == (554, "5.4.6 Too many Received headers: possible mail loop")
    code, _ = await data_reply(gateway, hops.encode().split(b"\r\n", 1)[1] + mail_bytes())
    assert code == 250  # 30 hops are fine
    assert stored(services) == 1


async def test_idle_session_gets_421_and_is_closed(start):
    gateway, _ = await start(session_timeout_seconds=1)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.inbound_port)
    try:
        await read_reply(reader)
        assert (await read_reply(reader)).startswith(b"421 4.4.2 Idle")
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()


async def test_busy_session_hits_the_whole_session_deadline(start):
    gateway, _ = await start(session_deadline_seconds=2, session_timeout_seconds=1)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.inbound_port)
    try:
        await read_reply(reader)
        for _ in range(12):  # active all along: the idle timeout never fires
            writer.write(b"NOOP\r\n")
            reply = await read_reply(reader)
            if not reply.startswith(b"250"):
                break
            await asyncio.sleep(0.3)
        assert reply.startswith(b"421 4.4.2 Session time limit"), reply
    finally:
        writer.close()


async def open_session(port: int, local: str = "127.0.0.1"):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
    return reader, writer, await read_reply(reader)


async def test_concurrent_sessions_per_ip_and_overall(start):
    gateway, _ = await start(max_sessions=3, max_sessions_per_ip=2)
    port, sessions = gateway.inbound_port, []
    try:
        for local in ("127.0.0.1", "127.0.0.1"):
            sessions.append(await open_session(port, local))
            assert sessions[-1][2].startswith(b"220")
        refused = await open_session(port, "127.0.0.1")
        assert refused[2].startswith(b"421 4.7.0")
        assert await asyncio.wait_for(refused[0].read(), 5) == b""
        sessions.append(await open_session(port, "127.0.0.2"))  # another address: allowed
        assert sessions[-1][2].startswith(b"220")
        over = await open_session(port, "127.0.0.3")  # the listener is full
        assert over[2].startswith(b"421 4.7.0")
        sessions[0][1].close()
        await asyncio.sleep(0.2)
        again = await open_session(port, "127.0.0.1")  # a slot was freed
        assert again[2].startswith(b"220")
        sessions.append(again)
    finally:
        for _, writer, _ in sessions:
            writer.close()


@pytest.mark.parametrize("command", ["NOOP", "RSET"])
async def test_repeated_commands_are_capped(start, command):
    gateway, _ = await start(max_noop_per_session=3, max_rset_per_session=3)
    replies = await raw_smtp(gateway.inbound_port, [ENVELOPE[0]] + [f"{command}\r\n".encode()] * 4)
    assert all(r.startswith(b"250") for r in replies[2:5])
    assert replies[5].startswith(f"421 4.7.0 {command} sent too many times".encode())


# --- per-patient rate ---------------------------------------------------------------------------

async def test_patient_rate_gets_451_and_one_staff_alert(start):
    gateway, services = await start(max_messages_per_patient_per_hour=2)
    replies = []
    for i in range(5):
        body = f"Can I move my appointment? SECRETBODY{i}"
        replies.append(await data_reply(gateway, mail_bytes(body=body)))
    assert [c for c, _ in replies] == [250, 250, 451, 451, 451]
    assert replies[2][1].startswith("4.7.1 Too many messages")
    root = services.cfg.maildir_root
    alerts = await wait_for_mail(root, services.cfg.routing.triage)
    await asyncio.sleep(0.5)
    assert len(maildir_files(root, services.cfg.routing.triage)) == 1  # one alert an hour
    text = alerts[0].read_text()
    assert "account 1001" in text and "SECRETBODY" not in text and ANA not in text
    assert stored(services) == 2
    with services.factory() as session:
        kinds = session.scalars(select(Outbox.kind)).all()
    assert kinds.count("abuse_alert") == 1


# --- quarantine -----------------------------------------------------------------------------------

def crash_on_marker(ctx):
    if b"CRASHME" in ctx.inbound.raw:
        raise ValueError("a bug in a step")


def quarantine_cli(services, *argv) -> str:
    parser = argparse.ArgumentParser()
    quarantine_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["quarantine", *argv, "--config", str(services.cfg.path)])
    out = io.StringIO()
    with redirect_stdout(out):
        assert args.func(args) == 0
    return out.getvalue()


async def test_crashing_message_is_retried_then_quarantined(start, monkeypatch):
    gateway, services = await start(quarantine_after_crashes=3)
    steps = pipeline.PATIENT_STEPS
    after_auth = steps.index(pipeline.trust_sender) + 1  # strangers never reach quarantine
    monkeypatch.setitem(pipeline.CHAINS, "portal",
                        steps[:after_auth] + (crash_on_marker,) + steps[after_auth:])
    poison = mail_bytes(body="Can I move my appointment? CRASHME")
    codes = []
    for _ in range(3):
        codes.append((await data_reply(gateway, poison))[0])
        assert (await data_reply(gateway, mail_bytes()))[0] == 250  # others keep flowing
    assert codes == [451, 451, 250]
    assert (await data_reply(gateway, poison))[0] == 250  # held: the same bytes again
    assert stored(services) == 3
    rows = [json.loads(line) for line in quarantine_cli(services, "list", "--json").splitlines()]
    assert len(rows) == 1 and rows[0]["state"] == "held" and rows[0]["attempts"] == 3
    assert rows[0]["error_type"] == "ValueError" and rows[0]["size"] == len(poison)
    with services.factory() as session:
        assert session.get(Quarantine, rows[0]["id"]).raw == poison
    monkeypatch.undo()  # the fix is deployed
    assert "released" in quarantine_cli(services, "retry", str(rows[0]["id"]))
    assert stored(services) == 4
    assert quarantine_cli(services, "list").strip() == "(none)"


async def test_database_errors_are_451_and_never_quarantined(start, monkeypatch):
    gateway, services = await start(quarantine_after_crashes=1)

    def db_down(ctx):
        raise OperationalError("select 1", {}, Exception("connection refused"))
    monkeypatch.setitem(pipeline.CHAINS, "portal", (db_down,) + pipeline.PATIENT_STEPS)
    for _ in range(2):
        assert (await data_reply(gateway, mail_bytes()))[0] == 451
    with services.factory() as session:
        assert session.scalar(select(func.count()).select_from(Quarantine)) == 0


# --- a 250 lost on the wire: the resend is stored once ------------------------------------------

async def test_identical_resend_is_answered_250_and_stored_once(start):
    gateway, services = await start()
    raw = mail_bytes()
    assert (await data_reply(gateway, raw))[0] == 250
    assert (await data_reply(gateway, raw))[0] == 250
    root = services.cfg.maildir_root
    await wait_for_mail(root, ANA)
    await asyncio.sleep(0.5)
    assert stored(services) == 1 and len(maildir_files(root, ANA)) == 1
    other = mail_bytes()  # same text, new Message-ID: a new message
    assert (await data_reply(gateway, other))[0] == 250
    assert stored(services) == 2


async def test_one_message_to_two_of_our_addresses_is_not_its_own_duplicate(start):
    from gateway.models import Token
    gateway, services = await start()
    assert (await data_reply(gateway, mail_bytes()))[0] == 250
    with services.factory() as session:
        token = session.scalars(select(Token.token).where(Token.purpose == "reply")).first()
    reply = services.addresses.make("reply", token)
    raw = mail_bytes(to=f"{PORTAL}, {reply}")
    for _ in range(2):  # the second time: a duplicate of the whole message
        stage, code, _ = await smtp_send(gateway.inbound_port, ANA, [PORTAL, reply], raw)
        assert (stage, code) == ("DATA", 250)
    assert stored(services) == 3  # the first message, then one row per address, once
