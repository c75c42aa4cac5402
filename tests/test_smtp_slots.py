"""SMTP slots: one network's idle sessions cannot lock others out (per /24 and /64 limits,
a short window to start a mail transaction).  Real sockets from distinct loopback
addresses (127.0.1.x and 127.0.2.x are two networks)."""
from __future__ import annotations

import asyncio

from gateway.smtp.limits import SessionCounter, network_of
from tests.helpers import patient_mail
from tests.test_smtp_defence import (ANA, PORTAL, mail_bytes, open_session,  # noqa: F401
                                     read_reply, start)


async def test_one_network_cannot_take_every_slot(start):
    gateway, _ = await start(max_sessions=10, max_sessions_per_ip=2,
                             max_sessions_per_network=4)
    port, sessions = gateway.inbound_port, []
    try:
        for i in range(1, 5):  # four addresses of 127.0.1.0/24
            sessions.append(await open_session(port, f"127.0.1.{i}"))
            assert sessions[-1][2].startswith(b"220")
        refused = await open_session(port, "127.0.1.99")
        assert refused[2].startswith(b"421 4.7.0")
        reader, writer, banner = await open_session(port, "127.0.2.1")  # another network
        sessions.append((reader, writer, banner))
        assert banner.startswith(b"220")
        for line in (b"EHLO other.example\r\n", f"MAIL FROM:<{ANA}>\r\n".encode(),
                     f"RCPT TO:<{PORTAL}>\r\n".encode(), b"DATA\r\n"):
            writer.write(line)
            assert (await read_reply(reader))[:1] in (b"2", b"3")
        writer.write(mail_bytes() + b".\r\n")
        assert (await read_reply(reader)).startswith(b"250")
    finally:
        for _, writer, _ in sessions:
            writer.close()


async def test_a_session_that_never_starts_a_transaction_is_closed(start):
    gateway, _ = await start(pre_mail_timeout_seconds=1, session_timeout_seconds=300)
    reader, writer, banner = await open_session(gateway.inbound_port, "127.0.3.1")
    assert banner.startswith(b"220")
    writer.write(b"EHLO idle.example\r\n")
    await read_reply(reader)
    reply = await asyncio.wait_for(read_reply(reader), 10)  # the window, not the 300 s
    assert reply.startswith(b"421 4.4.2 No mail transaction started in time")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_slow_transaction_is_not_cut_by_the_pre_mail_window(start):
    gateway, _ = await start(pre_mail_timeout_seconds=1, session_timeout_seconds=300)
    reader, writer, _ = await open_session(gateway.inbound_port, "127.0.3.2")
    for line in (b"EHLO slow.example\r\n", f"MAIL FROM:<{ANA}>\r\n".encode()):
        writer.write(line)
        assert (await read_reply(reader)).startswith(b"250")
    await asyncio.sleep(2)  # inside a transaction the idle timeout governs
    writer.write(f"RCPT TO:<{PORTAL}>\r\n".encode())
    assert (await read_reply(reader)).startswith(b"250")
    writer.close()


def test_networks_are_slash_24_and_slash_64():
    assert network_of("192.0.2.77") == "192.0.2.0/24"
    assert network_of("::ffff:192.0.2.77") == "192.0.2.0/24"
    assert network_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    counter = SessionCounter(total=10, per_ip=5, per_network=2)
    assert counter.acquire("2001:db8::1") and counter.acquire("2001:db8::2")
    assert not counter.acquire("2001:db8::3") and counter.acquire("2001:db8:0:1::1")
    counter.release("2001:db8::1")
    assert counter.acquire("2001:db8::3")
