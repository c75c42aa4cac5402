"""MAIL FROM and RCPT TO addresses are read as aiosmtpd reads them: the gateway's quick
reading of a plain ``<local@domain>`` gives the very same address and parameters (or the
same refusal) as aiosmtpd's full parser, for ordinary and odd arguments alike."""
from __future__ import annotations

import asyncio
import random

from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP

from gateway.smtp.inbound import GatewaySMTP

ARGS = [
    "", "<>", "<p1@example.com>", "<p1@example.com> SIZE=2048", "<a.b+c@x.org>  BODY=8BITMIME",
    "<A.B@Ex.ORG>", "<portal@portal.example.org>", "<reply+abc234@portal.example.org>",
    "<x@y>", "<x@y.>", "<.x@y>", "<x..y@z>", "<x@-y.org>", "<x@y.org>(comment)",
    "<x@y.org> (comment)", "<x@y.org> SIZE=1 (c)", '<"q"@y.org>', "<x@[127.0.0.1]>",
    "<@route:x@y.org>", "x@y.org", "x@y.org SIZE=1", "<x@y.org", "<x@y.org>>", "< x@y.org>",
    "<x@y.org >", "<x@y.org>\tSIZE=1", "<x@y.org> =1", "<x@y.org> 1SIZE", "<ü@y.org>",
    "<x@ü.org>", "<" + "l" * 65 + "@y.org>", "<" + "l" * 64 + "@y.org>",
    "<x@y.org> SIZE=1 BODY=7BIT", "<x@y.org> SIZE=\"1\"", "<x@y.org> SIZE=1\\",
]
ALPHABET = "ab.@<>-+_ ()\"\\:[]=!~xyZ9\t"


def servers():
    loop = asyncio.new_event_loop()
    try:
        ours = GatewaySMTP(Sink(), loop=loop)
        stock = SMTP(Sink(), loop=loop)
        yield ours, stock
    finally:
        loop.close()


def read(server, arg):
    try:
        return server._getaddr(arg)
    except Exception as error:  # the email package's parser trips over some odd input
        return type(error).__name__


def test_plain_and_odd_addresses_read_as_aiosmtpd_reads_them():
    rng = random.Random(14)
    fuzz = ["<" + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 18))) + ">"
            + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8)))
            for _ in range(3000)]
    atom = lambda: "".join(rng.choice("abZ9!#$%&'*+/=?^_`{|}~-.") for _ in range(rng.randint(1, 6)))
    label = lambda: "".join(rng.choice("ab9-.") for _ in range(rng.randint(1, 5)))
    plausible = [f"<{atom()}@{label()}.{label()}>" + rng.choice(
        ["", " ", " SIZE=12", "  BODY=8BITMIME SIZE=3", " X=(y)", ' X="y"', " 9=1", "\tA=b"])
        for _ in range(3000)]
    for ours, stock in servers():
        for arg in ARGS + fuzz + plausible:
            assert read(ours, arg) == read(stock, arg), arg


def test_the_quick_reading_is_taken_for_ordinary_addresses(monkeypatch):
    for ours, _ in servers():
        monkeypatch.setattr(SMTP, "_getaddr", lambda self, arg: (_ for _ in ()).throw(
            AssertionError("full parser used")))
        assert ours._getaddr("<p1@example.com> SIZE=2048") == ("p1@example.com", "SIZE=2048")
