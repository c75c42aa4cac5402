"""The outbox as written and delivered in batches: one insert for all the mails of an
ingest, the row's id (X-Portal-Outbox) added as the worker delivers it, and a batch of sent
mail recorded with one audit row per mail."""
from __future__ import annotations

import email
import os
from email.message import EmailMessage

from sqlalchemy import select

from gateway import outbox
from gateway.delivery.worker import OutboxWorker
from gateway.models import Audit, Outbox, Token
from gateway.services import Services
from tests.helpers import add_patient

STAFF = "frontdesk@practice.example.org"


def mail(subject: str, **headers) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("text")
    return msg


def delivered(services) -> dict[str, email.message.Message]:
    folder = services.cfg.maildir_root / STAFF / "new"
    return {name: email.message_from_bytes((folder / name).read_bytes())
            for name in os.listdir(folder)}


async def test_a_batch_of_mail_names_its_own_rows_and_is_audited_once_each(config):
    services = Services.create(config)
    try:
        patient_id = add_patient(services)
        with services.transaction() as session:
            rows = outbox.enqueue_many(session, services.addresses, [
                outbox.Outgoing(mail(f"m{n}"), STAFF, "staff_copy", None, patient_id)
                for n in range(3)])
            bytes_row = outbox.enqueue(session, services.addresses,
                                       mail("as bytes").as_bytes(), STAFF, "staff_copy")
        ids = [r.id for r in rows] + [bytes_row.id]
        assert await OutboxWorker(services).deliver_batch() == 4
        files = delivered(services)
        assert sorted(int(m["X-Portal-Outbox"]) for m in files.values()) == sorted(ids)
        assert all(len(m.get_all("X-Portal-Outbox")) == 1 for m in files.values())
        by_id = {int(m["X-Portal-Outbox"]): m["Subject"] for m in files.values()}
        assert by_id == {rows[0].id: "m0", rows[1].id: "m1", rows[2].id: "m2",
                         bytes_row.id: "as bytes"}
        with services.factory() as session:
            sent = session.scalars(select(Outbox)).all()
            assert {(r.state, r.lease_until, r.claimed_by) for r in sent} == {
                ("sent", None, None)}
            audits = session.scalars(select(Audit).where(Audit.action == "mail.sent")).all()
            assert sorted((int(a.object_id), a.patient_id) for a in audits) == sorted(
                [(i, patient_id) for i in ids[:3]] + [(bytes_row.id, None)])
            tokens = session.scalars(select(Token).where(Token.purpose == "bounces")).all()
            assert sorted(t.outbox_id for t in tokens) == sorted(ids)
            assert {r.mail_from for r in sent} == {
                services.addresses.make("bounces", t.token) for t in tokens}
    finally:
        services.close()


async def test_mail_queued_with_its_id_already_in_it_is_not_stamped_twice(config):
    services = Services.create(config)
    try:
        with services.transaction() as session:
            row = outbox.enqueue(session, services.addresses, mail("old"), STAFF,
                                 "staff_copy")
            session.execute(Outbox.__table__.update().where(Outbox.__table__.c.id == row.id)
                            .values(raw=mail("old", X_Portal_Outbox=str(row.id)).as_bytes()))
        assert await OutboxWorker(services).deliver_batch() == 1
        (only,) = delivered(services).values()
        assert only.get_all("X-Portal-Outbox") == [str(row.id)]
    finally:
        services.close()


def test_a_repeated_delivery_finds_the_file_a_mail_client_already_moved(tmp_path):
    """Written, then the gateway died before marking it sent, and the staff member's mail
    client has read it (new/ -> cur/ with flags): the retry delivers nothing twice."""
    from gateway.delivery.maildir import MaildirDelivery
    box = MaildirDelivery(tmp_path)
    first = box.write(7, 1700000000, STAFF, b"Subject: x\r\n\r\nbody\r\n")
    read = first.parent.parent / "cur" / (first.name + ":2,S")
    first.rename(read)
    other = box.write(70, 1700000000, STAFF, b"Subject: y\r\n\r\nbody\r\n")  # a name that starts like 7's
    assert box.write(7, 1700000000, STAFF, b"Subject: x\r\n\r\nbody\r\n") == read
    assert sorted(os.listdir(tmp_path / STAFF / "new")) == [other.name]
