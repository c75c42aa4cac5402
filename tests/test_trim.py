"""Tests of split_reply: quoted history and signatures are set aside, nothing is lost."""
from __future__ import annotations

import pytest

from gateway.classification import split_reply


def lines(text: str) -> list[str]:
    return [l.strip() for l in text.splitlines() if l.strip()]


def assert_nothing_lost(raw: str, new: str, history: str) -> None:
    kept = lines(new) + lines(history)
    assert sorted(kept) == sorted(lines(raw))


GMAIL = """Can I move it to Friday?

On Tue, Mar 5, 2024 at 9:14 AM Bayview Women's Health <noreply@portal.example> wrote:

> Your appointment is on Monday, March 11 at 9:00 AM.
> Reply to this message to reschedule.
"""

GMAIL_WRAPPED = """Thanks, got it.

On Tue, Mar 5, 2024 at 9:14 AM Bayview Women's Health Patient Portal <
noreply@portal.example> wrote:
> New lab results are available.
"""

APPLE = """Yes please.

Sent from my iPhone

> On Mar 5, 2024, at 9:14 AM, Bayview Women's Health <noreply@portal.example> wrote:
>
> Your statement is available.
"""

SPANISH = """Sí, ahí estaré.

Enviado desde mi iPhone

El mar, 5 mar 2024 a las 9:14, Bayview Women's Health (<noreply@portal.example>) escribió:
> Recordatorio de su cita.
"""

OUTLOOK = """I paid this last week.

-----Original Message-----
From: Bayview Women's Health <noreply@portal.example>
Sent: Tuesday, March 5, 2024 9:14 AM
To: jane@mail.example
Subject: Your statement is available

Your statement is available. Balance: $45.00
"""

OUTLOOK_HEADERS_ONLY = """Please call me about this.

________________________________
From: Bayview Women's Health <noreply@portal.example>
Sent: Tuesday, March 5, 2024 9:14 AM
To: Jane Doe
Subject: Surgery scheduling

We would like to schedule your procedure.
"""

SPANISH_OUTLOOK = """Ya pagué.

De: Bayview Women's Health <noreply@portal.example>
Enviado: martes, 5 de marzo de 2024 9:14
Para: ana@mail.example
Asunto: Estado de cuenta

Su estado de cuenta está disponible.
"""


@pytest.mark.parametrize("raw,expected_new,history_has", [
    (GMAIL, "Can I move it to Friday?", "Your appointment is on Monday"),
    (GMAIL_WRAPPED, "Thanks, got it.", "New lab results"),
    (APPLE, "Yes please.", "Sent from my iPhone"),
    (SPANISH, "Sí, ahí estaré.", "Recordatorio de su cita"),
    (OUTLOOK, "I paid this last week.", "Balance: $45.00"),
    (OUTLOOK_HEADERS_ONLY, "Please call me about this.", "schedule your procedure"),
    (SPANISH_OUTLOOK, "Ya pagué.", "Su estado de cuenta"),
])
def test_quoted_history_is_set_aside(raw, expected_new, history_has):
    new, history = split_reply(raw)
    assert new == expected_new
    assert history_has in history
    assert_nothing_lost(raw, new, history)


def test_apple_history_and_signature_both_set_aside():
    new, history = split_reply(APPLE)
    assert "Sent from my iPhone" in history and "Your statement" in history


def test_spanish_mobile_signature():
    new, history = split_reply(SPANISH)
    assert "Enviado desde mi iPhone" in history and "Enviado" not in new


def test_inline_quote_lines_are_history_and_replies_are_kept():
    raw = ("> Your appointment is on Monday.\n"
           "Can we make it Tuesday instead?\n"
           "> Reply to reschedule.\n"
           "Also I have a question about my bill.\n")
    new, history = split_reply(raw)
    assert new == "Can we make it Tuesday instead?\nAlso I have a question about my bill."
    assert history == "> Your appointment is on Monday.\n> Reply to reschedule."


def test_bottom_posted_reply_is_new_text():
    raw = ("On Tue, Mar 5, 2024 at 9:14 AM Portal <noreply@portal.example> wrote:\n"
           "> New lab results are available.\n"
           "\n"
           "What does my TSH mean?\n")
    new, history = split_reply(raw)
    assert new == "What does my TSH mean?"
    assert "New lab results" in history


def test_sig_dash_separator():
    raw = "Is my surgery still on for Monday?\n-- \nJane Doe\nAcct 12345\n"
    new, history = split_reply(raw)
    assert new == "Is my surgery still on for Monday?"
    assert history.startswith("--") and "Acct 12345" in history


@pytest.mark.parametrize("sig", [
    "Thanks,\nMaria Lopez\n(555) 123-4567",
    "Best regards,\nJennifer K. Smith\nCell: 916-555-0142\njen@mail.example",
    "Gracias,\nAna Díaz",
    "Maria Lopez\n555.123.4567",
    "Sincerely,\nMrs. Garcia\nDOB: 01/02/1990",
])
def test_name_and_phone_block_is_signature(sig):
    raw = "Can I get a copy of my pap results?\n\n" + sig + "\n"
    new, history = split_reply(raw)
    assert new.startswith("Can I get a copy of my pap results?")
    for line in sig.splitlines()[1:] if not sig.startswith("Maria") else sig.splitlines():
        assert line in history
    assert_nothing_lost(raw, new, history)


@pytest.mark.parametrize("sent_from", [
    "Sent from my Galaxy", "Sent from Yahoo Mail for iPhone", "Get Outlook for Android",
    "Sent from Mail for Windows",
])
def test_mobile_signatures(sent_from):
    new, history = split_reply("Please cancel my appointment.\n\n" + sent_from)
    assert new == "Please cancel my appointment." and history == sent_from


@pytest.mark.parametrize("raw,must_keep", [
    ("I'm bleeding heavily.\nThanks,\nMaria\nPS: it started an hour ago and I feel dizzy",
     "PS: it started an hour ago and I feel dizzy"),
    ("Thanks\nHeavy bleeding since this morning", "Heavy bleeding since this morning"),
    ("Hi,\nMy water broke.\nMaria", "My water broke."),
    ("Question about my bill.\nFrom: my husband's account\nThanks", "From: my husband's account"),
    ("See you Monday.\nThanks,\nWater Broke Just Now", "Water Broke Just Now"),
    ("Hello\nRegards,\nHeavy Bleeding\n555-123-4567", "Heavy Bleeding"),
])
def test_content_after_a_sign_off_is_kept(raw, must_keep):
    """Conservative: real content at the end must stay in the new text."""
    new, history = split_reply(raw)
    assert must_keep in new.splitlines()
    assert_nothing_lost(raw, new, history)


def test_plain_message_is_untouched():
    raw = "Hello,\n\nI would like to book an appointment.\n\nThank you"
    new, history = split_reply(raw)
    assert new == raw and history == ""


def test_empty_and_only_quote():
    assert split_reply("") == ("", "")
    new, history = split_reply("> just a quote\n> nothing else")
    assert new == "" and history == "> just a quote\n> nothing else"


def test_crlf_line_endings():
    new, history = split_reply(GMAIL.replace("\n", "\r\n"))
    assert new == "Can I move it to Friday?"
    assert "Your appointment" in history


def test_forwarded_message_marker():
    raw = ("See below, is this right?\n\n---------- Forwarded message ---------\n"
           "From: Billing <billing@example.org>\nDate: Mon, Mar 4, 2024\n"
           "Subject: Statement\n\nYou owe $300.")
    new, history = split_reply(raw)
    assert new == "See below, is this right?" and "You owe $300." in history


def test_a_message_that_only_looks_like_a_signature_is_kept():
    new, history = split_reply("new phone # 555-201-4477")
    assert new == "new phone # 555-201-4477" and history == ""
    new, history = split_reply("Ana Lopez\n555-201-4477\n\n> On Mon, Portal wrote:\n> hi")
    assert "555-201-4477" in new and "> hi" in history
