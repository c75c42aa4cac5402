"""Portal notifications split by scope over the real submission port: a proxy gets its own
copy of a kind within its scope (its own To, its own reply token), never a result or a
confidential kind for a 12-17 patient; the patient's copy names only the patient."""
from __future__ import annotations

import asyncio

from sqlalchemy import select

from gateway.models import Audit, Thread
from tests.conftest import maildir_files, wait_for_mail
from tests.helpers import add_patient, add_proxy
from tests.test_proxy_mail import ADULT_BORN, TEEN_BORN
from tests.test_submission import gw, notification, read, submit  # noqa: F401

MOM = "mom@example.net"


async def test_kind_within_scope_reaches_proxy_in_a_copy_of_its_own(gw):
    s, root = gw.s, gw.s.cfg.maildir_root
    pid = add_patient(s, account="1001", email="ana@example.com", birth_date=TEEN_BORN)
    proxy_id = add_proxy(s, pid)
    add_proxy(s, pid, email="gone@example.net", status="revoked")
    await submit(gw, notification("appointment_reminder"), ["ana@example.com"])
    mine = read((await wait_for_mail(root, "ana@example.com"))[0])
    theirs = read((await wait_for_mail(root, MOM))[0])
    assert MOM not in mine.as_string() and "ana@example.com" not in theirs.as_string()
    assert mine["Reply-To"] != theirs["Reply-To"]
    assert maildir_files(root, "gone@example.net") == []
    with s.factory() as session:
        threads = {t.proxy_id: t for t in session.scalars(select(Thread))}
        assert set(threads) == {None, proxy_id}
        rows = session.scalars(select(Audit).where(
            Audit.action == "notification.queued")).all()
    assert sorted((r.detail or {}).get("proxy") or 0 for r in rows) == [0, proxy_id]


async def test_results_never_reach_a_teens_proxy_even_with_results_in_scope(gw):
    s, root = gw.s, gw.s.cfg.maildir_root
    teen = add_patient(s, account="1001", email="ana@example.com", birth_date=TEEN_BORN)
    adult = add_patient(s, account="1002", email="bea@example.com", birth_date=ADULT_BORN)
    add_proxy(s, teen, scope="appointment results")
    add_proxy(s, adult, email="son@example.net", scope="results")
    await submit(gw, notification("lab_result"), ["ana@example.com"])
    await submit(gw, notification("lab_result", to="bea@example.com"), ["bea@example.com"])
    await wait_for_mail(root, "son@example.net")  # the adult's proxy: results in scope
    await wait_for_mail(root, "ana@example.com")
    await asyncio.sleep(0.5)
    assert maildir_files(root, MOM) == []
    await submit(gw, notification("statement"), ["ana@example.com"])  # billing: not in scope
    await wait_for_mail(root, "ana@example.com", 2)
    await asyncio.sleep(0.5)
    assert maildir_files(root, MOM) == []


async def test_confidential_kind_never_reaches_a_teens_proxy(tmp_path, db_url, config):
    from argon2 import PasswordHasher

    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.services import Services
    from tests.conftest import write_config
    from tests.test_submission import SECRET
    cfg = load_config(write_config(tmp_path, db_url), overrides={
        "smtp": {"submission_users": {"portal_app": PasswordHasher().hash(SECRET)}},
        "notifications": {"kinds": ["appointment_reminder", "counseling_reminder"],
                          "categories": {"appointment_reminder": "appointment",
                                         "counseling_reminder": "appointment"},
                          "confidential_kinds": ["counseling_reminder"]}})
    services = Services.create(cfg)
    gateway = Gateway(services, inbound_port=0, submission_port=0)
    await gateway.start()
    try:
        root = services.cfg.maildir_root
        pid = add_patient(services, account="1001", email="ana@example.com",
                          birth_date=TEEN_BORN)
        add_proxy(services, pid)
        await submit(gateway, notification("counseling_reminder"), ["ana@example.com"])
        await submit(gateway, notification("appointment_reminder"), ["ana@example.com"])
        await wait_for_mail(root, "ana@example.com", 2)
        await wait_for_mail(root, MOM, 1)
        await asyncio.sleep(0.5)
        assert len(maildir_files(root, MOM)) == 1
    finally:
        await gateway.stop(deadline=5)
        services.close()
