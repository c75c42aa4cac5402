"""Staff answers on a proxy's thread over real SMTP: relayed to the proxy within its scope;
held (stored, not relayed, the staff member told why) when the thread is outside the scope
or the answer is confidential for a 12-17 patient, including a short answer written in a
hurry; a reply to the notice sends the answer to the patient's own address only."""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import select

from gateway.models import Audit, Message, Thread
from tests.conftest import maildir_files, wait_for_mail
from tests.helpers import add_patient, add_proxy, smtp_send
from tests.test_proxy_mail import (ADULT_BORN, MOM, TEEN_BORN, authed, gw, plain,  # noqa: F401
                                   read, send)

NURSE = "nurse@practice.example.org"
TEEN = "teen@example.com"


def answer_to(mail, body: str) -> EmailMessage:
    """What a nurse's mail client writes on Reply: the answer above the quoted mail."""
    reply = EmailMessage()
    reply["From"] = f"Nurse Joy <{NURSE}>"
    reply["To"] = mail["Reply-To"]
    reply["Subject"] = "Re: " + mail["Subject"]
    reply["Message-ID"] = make_msgid(domain="practice.example.org")
    quoted = "\n".join("> " + line for line in mail.get_body(("plain",)).get_content()
                       .splitlines())
    reply.set_content((body + "\n\n" if body else "") +
                      f"On Tue, Dec 1, 2026, Portal wrote:\n{quoted}\n")
    return reply


async def staff_send(gw, reply: EmailMessage):
    rcpt = reply["To"].addresses[0].addr_spec
    return await smtp_send(gw.inbound_port, NURSE, [rcpt],
                           authed(reply, "practice.example.org"))


async def _teen_thread(gw, text="Can we move her appointment to Tuesday morning?"):
    s, root = gw.s, gw.s.cfg.maildir_root
    pid = add_patient(s, account="1001", email=TEEN, birth_date=TEEN_BORN)
    add_proxy(s, pid)
    assert (await send(gw, MOM, text, subject="Her appointment"))[:2] == ("DATA", 250)
    await wait_for_mail(root, MOM)
    with s.factory() as session:
        team = session.scalars(select(Thread)).one().team.split(", ")[0]
    return read((await wait_for_mail(root, team))[0])


async def test_answer_within_scope_goes_to_the_proxy_only(gw):
    root = gw.s.cfg.maildir_root
    copy = await _teen_thread(gw)
    result = await staff_send(gw, answer_to(copy, "Yes, Tuesday at 10 works. See you then."))
    assert result[:2] == ("DATA", 250)
    answer = plain((await wait_for_mail(root, MOM, 2))[1])
    assert "Tuesday at 10 works" in answer and "Dear" not in answer.split("Tuesday")[0][-3:]
    assert maildir_files(root, TEEN) == []
    with gw.s.factory() as session:
        assert session.scalars(select(Thread)).one().state == "answered"


async def test_staff_replies_in_a_hurry_with_confidential_words_is_held(gw):
    s, root = gw.s, gw.s.cfg.maildir_root
    copy = await _teen_thread(gw)
    result = await staff_send(gw, answer_to(copy, "Her pregnancy test was positive, call us."))
    assert result[:2] == ("DATA", 250)  # stored durably
    notice_path = (await wait_for_mail(root, NURSE))[0]
    notice = read(notice_path)
    text = notice.get_content()
    assert notice["Subject"].startswith("NOT SENT")
    assert "confidential care (pregnancy) of a patient aged 12-17" in text
    assert "Her pregnancy test was positive" in text
    assert len(maildir_files(root, MOM)) == 1  # the acknowledgement only
    with s.factory() as session:
        staff_msg = session.scalars(select(Message).where(Message.direction == "staff")).one()
        assert staff_msg.held == "confidential:pregnancy"
        assert session.scalars(select(Thread)).one().state == "open"  # the clock runs on
        held = session.scalars(select(Audit).where(Audit.action == "answer.held")).one()
    assert held.detail["decision"] == "held" and held.detail["proxy"] is not None
    # "send it to the patient instead": Reply on the notice, adding nothing
    assert (await staff_send(gw, answer_to(notice, "")))[:2] == ("DATA", 250)
    to_teen = read((await wait_for_mail(root, TEEN))[0])
    assert "Her pregnancy test was positive" in to_teen.get_body(("plain",)).get_content()
    assert "Her appointment" not in str(to_teen["Subject"])  # nothing of the proxy's mail
    assert len(maildir_files(root, MOM)) == 1
    teen_reply_to = to_teen["Reply-To"].addresses[0].addr_spec
    with s.factory() as session:
        threads = session.scalars(select(Thread).order_by(Thread.id)).all()
        assert threads[0].state == "answered" and threads[1].proxy_id is None
        relayed = session.scalars(select(Audit).where(Audit.action == "answer.relayed")).one()
    assert relayed.detail["decision"] == "to-patient"
    # the teen's reply lands in the teen's own thread, not the proxy's
    back = await send(gw, TEEN, "Thank you, I will call.", to=teen_reply_to)
    assert back[:2] == ("DATA", 250)
    with s.factory() as session:
        last = session.scalars(select(Message).order_by(Message.id.desc())).first()
        assert last.thread_id == threads[1].id and last.proxy_id is None


async def test_answer_on_an_out_of_scope_thread_is_held_however_harmless(gw):
    root = gw.s.cfg.maildir_root
    copy = await _teen_thread(gw, "Is it normal that she is so anxious before exams?")
    assert "OUTSIDE THIS PROXY'S SCOPE" in copy.get_content()
    assert (await staff_send(gw, answer_to(copy, "Yes, that is common.")))[:2] == ("DATA", 250)
    notice = read((await wait_for_mail(root, NURSE))[0]).get_content()
    assert "the proxy's message was outside the proxy's scope" in notice
    assert len(maildir_files(root, MOM)) == 1


async def test_answer_in_a_category_outside_an_adult_patients_proxy_scope_is_held(gw):
    s, root = gw.s, gw.s.cfg.maildir_root
    pid = add_patient(s, account="1002", email="dad@example.com", birth_date=ADULT_BORN)
    add_proxy(s, pid, email="son@example.net", relation="son", scope="billing results")
    assert (await send(gw, "son@example.net", "Are her lab results from the blood test in?",
                       subject="Lab results"))[:2] == ("DATA", 250)
    copy = read((await wait_for_mail(root, "nurses@practice.example.org"))[0])
    assert "scope=within" in copy["X-Portal-Proxy"]
    with s.factory() as session:
        session.scalars(select(Thread)).one()
    with s.transaction() as session:  # the practice narrows the scope meanwhile
        from gateway.models import Proxy
        session.scalars(select(Proxy)).one().scope = "billing"
    assert (await staff_send(gw, answer_to(copy, "All normal.")))[:2] == ("DATA", 250)
    notice = read((await wait_for_mail(root, NURSE))[0]).get_content()
    assert "the category results is outside this proxy's scope" in notice
    assert len(maildir_files(root, "son@example.net")) == 1
