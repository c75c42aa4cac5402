"""The enrollment page in a real browser: Debian's Chromium, headless, driven by Playwright,
against the real aiohttp application on a loopback port, on SQLite and PostgreSQL.

JavaScript is off in every test (the page must work without it).  Screenshots go to
test-output/ (enroll-form.png, enroll-form-phone.png, enroll-error.png, enrolled.png).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import email
import email.policy
import inspect
import json
import logging
import os
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest
from sqlalchemy import select

from gateway.delivery.worker import OutboxWorker
from gateway.enrollment import invites, web
from gateway.models import Invite, Patient
from tests.conftest import IN_CI, ROOT, maildir_files
from tests.helpers import add_patient

CHROMIUM = os.environ.get("PORTAL_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = ROOT / "test-output"
PASSWORD = "violet tractor 42 lantern"
ADDRESS = "ana@example.com"


def _missing(reason: str):
    if IN_CI:
        pytest.fail(f"browser tests need {reason} (CI=true: missing is a failure)")
    pytest.skip(f"browser tests need {reason}")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package (pip install -e '.[test]')")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _missing(f"Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Server:
    """The real aiohttp application, served from a thread with its own event loop."""

    def __init__(self, services):
        self.services = services
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        self.runner = asyncio.run_coroutine_threadsafe(
            web.start_http(self.services, "127.0.0.1", 0), self.loop).result(15)
        self.base = f"http://127.0.0.1:{self.runner.port}"
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def server(services, caplog):
    caplog.set_level(logging.DEBUG)
    with Server(services) as srv:
        services.cfg.http.public_url = srv.base  # the links in invite mail point here
        yield srv


@pytest.fixture
def page(browser):
    context = browser.new_context(java_script_enabled=False)
    pg = context.new_page()
    yield pg
    context.close()


def invite_link(services, account="1001", email_addr=ADDRESS) -> str:
    """Invite, let the outbox worker deliver to the Maildir, read the link from the mail."""
    invites.invite(services, account)
    delivered = OutboxWorker(services).deliver_batch()
    if inspect.isawaitable(delivered):  # Playwright's loop runs in this thread
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, delivered).result(30)
    files = maildir_files(services.cfg.maildir_root, email_addr)
    msg = email.message_from_bytes(files[-1].read_bytes(), policy=email.policy.default)
    body = msg.get_body(("plain",)).get_content()
    return re.search(r"(http://\S+/enroll\?token=[\w-]+)", body).group(1)


def fill(page, account="1001", password=PASSWORD, confirm=None, agree=True) -> None:
    page.get_by_label("Patient account number").fill(account)
    page.get_by_label("New password", exact=True).fill(password)
    page.get_by_label("Type the new password again").fill(password if confirm is None
                                                          else confirm)
    if agree:
        page.get_by_label("I agree").check()
    page.get_by_role("button", name="Enroll").click()


def patient(services) -> Patient:
    with services.factory() as session:
        return session.scalar(select(Patient).where(Patient.account_number == "1001"))


def alert(page) -> str:
    return page.get_by_role("alert").inner_text()


def test_happy_path_from_the_invite_mail(services, server, page, browser, caplog):
    add_patient(services, status="roster")
    link = invite_link(services)
    token = link.split("token=")[1]
    SHOTS.mkdir(exist_ok=True)
    response = page.goto(link)
    assert response.status == 200
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "no-store" in response.headers["cache-control"]
    assert page.get_by_role("heading", level=1).inner_text().startswith("Enroll")
    assert "Patient portal terms" in page.inner_text("section.terms")
    page.screenshot(path=str(SHOTS / "enroll-form.png"), full_page=True)
    phone = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844},
                                device_scale_factor=2, is_mobile=True)
    phone_page = phone.new_page()
    phone_page.goto(link)
    phone_page.screenshot(path=str(SHOTS / "enroll-form-phone.png"), full_page=True)
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390
    phone.close()
    fill(page)
    assert page.get_by_role("heading", level=1).inner_text() == "You are enrolled"
    assert ADDRESS in page.inner_text("main") and "portal@portal.example.org" in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "enrolled.png"), full_page=True)
    p = patient(services)
    assert p.status == "active" and p.password_hash.startswith("$argon2id$")
    version = web.terms_version(web.page_env(services), web._practice(services))
    assert p.terms_version == version and p.terms_accepted_at is not None
    # The token is burned: the link, and the form sent again, both say so.
    assert page.goto(link).status == 410
    assert "already been used" in alert(page)
    assert page.locator("form").count() == 0
    lines = [r.getMessage() + " " + json.dumps(vars(r), default=str) for r in caplog.records]
    assert any('"path": "/enroll"' in line for line in lines)
    for line in lines:
        assert token not in line and PASSWORD not in line
        assert invites.hash_token(token) not in line


def test_each_error_is_announced_on_the_form(services, server, page):
    add_patient(services, status="roster")
    link = invite_link(services)
    page.goto(link)
    fill(page, account="1002")
    assert page.url.endswith("/enroll") and "token=" not in page.url
    assert "does not match our records" in alert(page) and "4 tries left" in alert(page)
    account = page.get_by_label("Patient account number")
    assert account.get_attribute("aria-invalid") == "true" and account.input_value() == "1002"
    assert "does not match" in page.inner_text("#account-error")
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "enroll-error.png"), full_page=True)
    fill(page, password="too short")
    assert "at least 12 characters" in alert(page)
    assert page.get_by_label("New password", exact=True).get_attribute("aria-invalid") == "true"
    fill(page, confirm=PASSWORD + "x")
    assert "do not match" in alert(page)
    fill(page, agree=False)
    assert "I agree" in alert(page)
    fill(page, account="", password="x", confirm="y", agree=False)
    text = alert(page)
    assert "Please correct these 3 things" in text and "account number" in text
    p = patient(services)
    assert (p.status, p.password_hash, p.terms_version) == ("invited", None, None)
    fill(page)
    assert page.get_by_role("heading", level=1).inner_text() == "You are enrolled"


def test_unknown_expired_and_replaced_links(services, server, page):
    response = page.goto(f"{server.base}/enroll?token=nosuchtoken")
    assert response.status == 404 and "not valid" in alert(page)
    assert page.locator("input").count() == 0
    assert page.goto(f"{server.base}/enroll").status == 404
    add_patient(services, status="roster")
    old = invite_link(services)
    new = invite_link(services)
    assert page.goto(old).status == 410 and "replaced by a newer invitation" in alert(page)
    with services.transaction() as session:
        for inv in session.scalars(select(Invite).where(Invite.state == "live")):
            inv.expires_at = inv.created_at  # expired
    assert page.goto(new).status == 410 and "expired" in alert(page)


def test_five_wrong_account_numbers_void_the_link(services, server, page):
    add_patient(services, status="roster")
    link = invite_link(services)
    page.goto(link)
    for _ in range(4):
        fill(page, account="0000")
        assert "does not match" in alert(page)
    fill(page, account="0000")
    assert "entered too many times" in alert(page)
    fill_possible = page.locator("form").count()
    assert fill_possible == 0
    assert page.goto(link).status == 410
    assert patient(services).status == "roster"


def test_a_post_without_the_csrf_cookie_is_refused(services, server):
    add_patient(services, status="roster")
    token = invite_link(services).split("token=")[1]
    data = urllib.parse.urlencode({"token": token, "csrf": "x" * 43, "account": "1001",
                                   "password": PASSWORD, "confirm": PASSWORD, "agree": "yes",
                                   "terms_version": "2025-01"}).encode()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server.base}/enroll", data, timeout=10)
    assert e.value.code == 403
    assert patient(services).status == "invited"


def test_public_listener_serves_no_ops_endpoints(server):
    for path in ("/healthz", "/metrics"):  # they listen apart (tests/test_ops_http.py)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{server.base}{path}", timeout=10)
        assert e.value.code == 404
