"""A proxy's enrollment page in headless Chromium (JavaScript off), SQLite and PostgreSQL:
the page asks for the patient's account number, a wrong one is announced, success makes
the proxy (not the patient) active with its own password; Spanish too."""
from __future__ import annotations

import asyncio
import concurrent.futures
import email
import email.policy
import inspect
import re

from sqlalchemy import select

from gateway.delivery.worker import OutboxWorker
from gateway.enrollment import proxy_invites
from gateway.models import Patient, Proxy
from tests.conftest import maildir_files
from tests.helpers import add_patient, add_proxy
from tests.test_enrollment_browser import PASSWORD, alert, browser, page, server  # noqa: F401

MOM = "mom@example.net"


def proxy_link(services, key: str) -> str:
    proxy_invites.invite(services, key)
    delivered = OutboxWorker(services).deliver_batch()
    if inspect.isawaitable(delivered):  # Playwright's loop runs in this thread
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, delivered).result(30)
    msg = email.message_from_bytes(maildir_files(services.cfg.maildir_root, MOM)[-1]
                                   .read_bytes(), policy=email.policy.default)
    body = msg.get_body(("plain",)).get_content()
    return re.search(r"(http://\S+/enroll\?token=[\w-]+(?:&lang=\w+)?)", body).group(1)


def fill(page, account, label="The patient's account number", button="Enroll",
         agree="I agree") -> None:
    page.get_by_label(label).fill(account)
    page.get_by_role("textbox", name=re.compile("password", re.I)).first.fill(PASSWORD)
    page.locator("#confirm").fill(PASSWORD)
    page.get_by_label(agree).check()
    page.get_by_role("button", name=button).click()


def test_proxy_enrolls_with_the_patients_account_number(services, server, page):
    pid = add_patient(services, account="1001", email="teen@example.com", status="roster")
    proxy_id = add_proxy(services, pid, status="roster")
    link = proxy_link(services, str(proxy_id))
    assert page.goto(link).status == 200
    assert "for a patient you care for" in page.inner_text("main")
    fill(page, "1002")
    assert "does not match our records" in alert(page)
    fill(page, "1001")
    assert page.get_by_role("heading", level=1).inner_text() == "You are enrolled"
    assert MOM in page.inner_text("main")
    with services.factory() as session:
        proxy, patient = session.get(Proxy, proxy_id), session.get(Patient, pid)
        assert proxy.status == "active" and proxy.password_hash.startswith("$argon2id$")
        assert patient.status == "roster" and patient.password_hash is None
    assert page.goto(link).status == 410 and "already been used" in alert(page)


def test_proxy_page_in_spanish_and_revoked_link(services, server, page):
    pid = add_patient(services, account="1001", email="teen@example.com", status="roster",
                      language="es")
    proxy_id = add_proxy(services, pid, status="roster")
    link = proxy_link(services, str(proxy_id))
    assert "lang=es" in link
    assert page.goto(link).status == 200
    assert "en nombre de un paciente a su cargo" in page.inner_text("main")
    assert page.get_by_label("Número de cuenta del paciente").count() == 1
    from gateway import proxies
    with services.transaction() as session:
        proxies.revoke(session, session.get(Proxy, proxy_id))
    response = page.goto(link)
    assert response.status == 410 and page.locator("form").count() == 0
    with services.factory() as session:
        assert session.scalar(select(Proxy.status)) == "revoked"
