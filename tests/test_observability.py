"""What an operator watches: the accepted-message log line says category and urgency, every
refusal is in the audit trail with its reason code, and the shipped Prometheus alert rules
and Grafana dashboard are valid and use only metrics the gateway exports."""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess

import pytest
from sqlalchemy import select

from gateway import metrics
from gateway.logs import JsonFormatter
from gateway.models import Audit
from tests.conftest import IN_CI, ROOT
from tests.helpers import add_patient, patient_mail, raw_smtp, smtp_send

RULES = ROOT / "docs" / "examples" / "prometheus-alerts.yml"
DASHBOARD = ROOT / "docs" / "examples" / "grafana-dashboard.json"
PORTAL = "portal@portal.example.org"


@pytest.fixture
def promtool():
    path = shutil.which("promtool")
    if path is None:
        message = "promtool (Debian package prometheus) is missing; scripts/test installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


async def test_accepted_log_line_names_category_and_urgency(services, gateway, caplog):
    add_patient(services)
    msg = patient_mail(subject="Lopez bleeding", body="I am 30 weeks pregnant and I have "
                       "heavy bleeding and cramping since this morning.")
    with caplog.at_level(logging.INFO, logger="gateway.smtp"):
        result = await smtp_send(gateway.inbound_port, "ana@example.com", [PORTAL],
                                 msg.as_bytes())
    assert result[:2] == ("DATA", 250)
    [record] = [r for r in caplog.records if r.getMessage() == "message accepted"]
    line = json.loads(JsonFormatter().format(record))
    assert line["category"] == "emergency" and line["urgent"] is True
    assert line["messages"] and all(isinstance(i, int) for i in line["messages"])
    text = json.dumps(line)
    for phi in ("ana@example.com", "Lopez", "bleeding", "pregnant"):
        assert phi not in text


async def test_smtp_time_refusals_are_audited_with_reason_codes(services, gateway):
    add_patient(services)
    stranger = "someone.else@example.net"
    result = await smtp_send(gateway.inbound_port, stranger,
                             ["nobody@portal.example.org"], b"")
    assert result[:2] == ("RCPT", 550)
    replies = await raw_smtp(gateway.inbound_port, [
        b"EHLO test\r\n", b"MAIL FROM:<ana@example.com>\r\n", f"RCPT TO:<{PORTAL}>\r\n".encode(),
        b"DATA\r\n", b"From: ana@example.com\r\nSubject: x\r\n\r\nbare\nLF\r\n.\r\n"])
    assert replies[-1].startswith(b"550 5.5.2")
    with services.factory() as session:
        rows = session.scalars(select(Audit).where(Audit.action == "message.refused")
                               .order_by(Audit.id)).all()
    assert [(r.actor, r.object_type, r.detail["reason"], r.detail["reply"]) for r in rows] == [
        ("smtp", "session", "rcpt-unknown-recipient", "550 5.1.1"),
        ("smtp", "session", "bare-line-ending", "550 5.5.2")]
    assert all(r.object_id and r.patient_id is None for r in rows)
    assert stranger not in json.dumps([r.detail for r in rows])


def test_alert_rules_pass_promtool(promtool, tmp_path):
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    cases = tmp_path / "alerts-test.yml"
    cases.write_text((ROOT / "tests" / "data" / "prometheus-alerts-test.yml").read_text()
                     .replace("RULES", str(RULES)))
    tested = subprocess.run([promtool, "test", "rules", str(cases)], capture_output=True,
                            text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    rules = tmp_path / "dashboard-as-rules.yml"
    rules.write_text("groups:\n  - name: dashboard\n    rules:\n" + "".join(
        f"      - record: panel:{i}\n        expr: {json.dumps(e)}\n"
        for i, e in enumerate(exprs)))
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rules_and_dashboard_use_only_exported_metrics(services):
    body = metrics.render(services).decode()
    exported = set(re.findall(r"^# HELP (\S+)", body, re.M))
    used = set(re.findall(r"\bportal_[a-z_]+", RULES.read_text() + DASHBOARD.read_text()))
    used.discard("portal_gateway")  # the scrape job's name
    assert used and used <= exported, used - exported
    for name in ("portal_urgent_threads_overdue", "portal_urgent_threads_due_soon",
                 "portal_quarantine_held", "portal_auth_failures_total"):
        assert name in used, name


def test_urgent_thread_gauges_count_open_urgent_threads(services):
    import datetime as dt

    from prometheus_client.parser import text_string_to_metric_families

    from gateway.models import Thread, utcnow
    patient = add_patient(services)
    now = utcnow()
    with services.transaction() as session:
        for n, (urgent, due, state) in enumerate([
                (True, now - dt.timedelta(minutes=1), "open"),    # past due
                (True, now + dt.timedelta(minutes=5), "open"),    # due soon
                (True, now + dt.timedelta(minutes=50), "open"),   # not yet
                (True, now - dt.timedelta(hours=1), "answered"),  # clock stopped
                (False, now - dt.timedelta(hours=1), "open")]):   # not urgent
            session.add(Thread(public_id=f"t{n}", patient_id=patient, urgent=urgent,
                               due_at=due, state=state, category="emergency"))
    found = {f.name: f.samples[0].value for f in
             text_string_to_metric_families(metrics.render(services).decode())
             if f.samples}
    assert found["portal_urgent_threads_overdue"] == 1
    assert found["portal_urgent_threads_due_soon"] == 1
    assert found["portal_threads_overdue"] == 2
    assert found["portal_quarantine_held"] == 0


async def test_submission_refusals_are_audited_and_bad_logins_counted(submission_gw):
    import aiosmtplib

    from tests.test_submission import notification, submit
    gw = submission_gw
    add_patient(gw.s)
    before = metrics.AUTH_FAILURES.labels("submission")._value.get()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await submit(gw, notification(), ["ana@example.com"], login=("portal_app", "wrong"))
    assert metrics.AUTH_FAILURES.labels("submission")._value.get() > before
    with pytest.raises(aiosmtplib.SMTPDataError):
        await submit(gw, notification("newsletter"), ["ana@example.com"])
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await submit(gw, notification(), ["not-a-patient@example.org"])
    with gw.s.factory() as session:
        rows = session.scalars(select(Audit).where(Audit.action == "message.refused")
                               .order_by(Audit.id)).all()
    assert [(r.actor, r.detail["reason"], r.detail["reply"]) for r in rows] == [
        ("submission", "kind", "550 5.7.1"),
        ("submission", "rcpt-not-active-patient", "550 5.1.1")]
    assert "not-a-patient" not in json.dumps([r.detail for r in rows])


@pytest.fixture
async def submission_gw(tmp_path, db_url, config):
    from tests.test_submission import gw as make
    async for gateway in make.__wrapped__(tmp_path, db_url, config):
        yield gateway
