"""Enrollment form guards over real HTTP: common passwords refused, CSRF values that we did
not sign refused, posts limited per client address."""
from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from gateway.enrollment.passwords import weakness
from gateway.models import Patient
from tests.helpers import add_patient
from tests.test_enrollment_browser import Server, invite_link


@pytest.fixture
def server(services):
    with Server(services) as srv:
        services.cfg.http.public_url = srv.base
        yield srv


def call(url: str, data: dict | None = None, cookie: str = "", headers=None):
    req = urllib.request.Request(url, urllib.parse.urlencode(data).encode() if data else None,
                                 headers={**({"Cookie": cookie} if cookie else {}),
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def open_form(link: str) -> tuple[str, str, str]:
    """(token, csrf cookie, csrf field) of a freshly opened form."""
    status, html, headers = call(link)
    assert status == 200
    cookie = re.search(r"enroll_csrf=([^;]+)", headers["Set-Cookie"]).group(1)
    field = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    return urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0], cookie, field


def form(token: str, csrf: str, password: str) -> dict:
    return {"token": token, "csrf": csrf, "account": "1001", "password": password,
            "confirm": password, "agree": "yes", "terms_version": "2025-01"}


def status_of(services, account: str = "1001") -> str:
    with services.factory() as session:
        return session.query(Patient).filter_by(account_number=account).one().status


@pytest.mark.parametrize("password", ["aaaaaaaaaaaa", "Password2024!", "p@ssw0rd1234",
                                      "123456789012", "abcabcabcabc", "qwertyuiopas",
                                      "iloveyou1234", "    football    "])
def test_common_and_patterned_passwords_are_refused(password):
    assert weakness(password) is not None


@pytest.mark.parametrize("password", ["violet tractor 42 lantern", "mango-violin-42-river",
                                      "Wintersun2024 harbour"])
def test_ordinary_good_passwords_pass(password):
    assert weakness(password) is None


def test_weak_password_gets_a_clear_message_over_http(services, server):
    add_patient(services, status="roster")
    token, cookie, field = open_form(invite_link(services))
    status, html, _ = call(f"{server.base}/enroll", form(token, field, "aaaaaaaaaaaa"),
                           f"enroll_csrf={cookie}")
    assert status == 400 and "too easy to guess" in html
    assert status_of(services) == "invited"


def test_csrf_values_we_did_not_sign_are_refused(services, server):
    add_patient(services, status="roster")
    add_patient(services, account="1002", email="eve@example.com", status="roster")
    token, cookie, field = open_form(invite_link(services))
    _, other_cookie, _ = open_form(invite_link(services, "1002", "eve@example.com"))
    good = "violet tractor 42 lantern"
    for planted in ("x" * 43, other_cookie, cookie[:-1] + ("0" if cookie[-1] != "0" else "1"),
                    cookie.split(".")[0], "." + cookie.split(".")[1], "é" * 30):
        status, _, _ = call(f"{server.base}/enroll", form(token, planted, good),
                            f"enroll_csrf={urllib.parse.quote(planted)}")
        assert status == 403, planted
    assert status_of(services) == "invited"
    status, html, _ = call(f"{server.base}/enroll", form(token, field, good),
                           f"enroll_csrf={cookie}")
    assert status == 200 and "enrolled" in html.lower()


def test_posts_are_limited_per_client_address(services, server):
    url = f"{server.base}/enroll"
    proxy = {"X-Forwarded-For": "198.51.100.7"}
    for i in range(10):
        spoofed = {"X-Forwarded-For": f"203.0.113.{i}, 198.51.100.7"}  # client-written first
        assert call(url, {"token": "t", "csrf": "c"}, headers=spoofed)[0] == 403
    status, text, headers = call(url, {"token": "t", "csrf": "c"}, headers=proxy)
    assert status == 429 and int(headers["Retry-After"]) > 60 and "call the office" in text
    assert call(url, {"token": "t", "csrf": "c"},
                headers={"X-Forwarded-For": "198.51.100.8"})[0] == 403  # another client
