"""Shutdown delivers what it can: on SIGTERM the outbox worker keeps sending due mail,
urgent first, until [gateway] drain_seconds runs out (a real `serve` process, a real relay)."""
from __future__ import annotations

import asyncio
import json
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

from aiosmtpd.controller import Controller

from gateway import outbox, patients
from gateway.delivery.worker import OutboxWorker
from gateway.models import Thread
from tests.conftest import ROOT, write_config
from tests.helpers import patient_mail

CLI = str(Path(sys.executable).parent / "portal-gateway")


class SlowRelay:
    """A smarthost that takes its time with every message, so mail is still queued when
    the gateway is told to stop."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.received: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.seconds)
        self.received.append(envelope.original_content)
        return "250 OK"


def test_sigterm_keeps_sending_due_mail_until_drain_seconds(tmp_path, db_url):
    relay = SlowRelay(0.25)
    relay_port = _free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=relay_port)
    controller.start()
    cfg = write_config(tmp_path, db_url)
    port = _free_port()
    text = cfg.read_text().replace("inbound_port = 0", f"inbound_port = {port}")
    text = text.replace("[delivery]\n", f'[delivery]\nmode = "relay"\nrelay_host = '
                        f'"127.0.0.1"\nrelay_port = {relay_port}\nrelay_tls = "none"\n')
    cfg.write_text(text.replace("[gateway]\n", "[gateway]\ndrain_seconds = 30\n"))
    _cli(cfg, "db", "upgrade")
    roster = tmp_path / "roster.csv"
    roster.write_text("account_number,first_name,last_name,email,state\n"
                      "1001,Ana,Lopez,ana@example.com,CA\n")
    _cli(cfg, "patients", "import", str(roster))
    _cli(cfg, "patients", "activate", "1001")
    server = subprocess.Popen([CLI, "--config", str(cfg), "serve"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = _connect(port)
        with client:
            for i in range(5):  # each: a staff copy and an acknowledgement
                client.send_message(patient_mail(subject=f"Question {i}"), "ana@example.com",
                                    ["portal@portal.example.org"])
        server.send_signal(signal.SIGTERM)  # 10 mails queued, about 2.5 s of relay work
        _, err = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
        controller.stop()
    assert server.returncode == 0, err
    rows = [json.loads(line) for line in _cli(cfg, "outbox", "list", "--json")
            .stdout.splitlines()]
    assert len(rows) == 10
    assert {r["state"] for r in rows} == {"sent"}, rows
    assert len(relay.received) == 10


def test_urgent_mail_is_claimed_first(services):
    """A backlog of ordinary mail never holds back an emergency thread's mail."""
    with services.transaction() as session:
        patients.import_roster(session, "account_number,first_name,last_name,email,state\n"
                                        "1001,Ana,Lopez,ana@example.com,CA\n")
        patient = patients.by_account(session, "1001")
        calm = Thread(public_id="calm", patient_id=patient.id, category="billing",
                      urgent=False, team="billing@practice.example.org", state="open")
        urgent = Thread(public_id="urgent", patient_id=patient.id, category="emergency",
                        urgent=True, team="nurses@practice.example.org", state="open")
        session.add_all([calm, urgent])
        session.flush()
        ids = {}
        for name, thread_id in (("loose", None), ("calm", calm.id), ("urgent", urgent.id)):
            for n in range(3):
                row = outbox.enqueue(session, services.addresses, patient_mail(),
                                     "staff@practice.example.org", "staff_copy", thread_id,
                                     patient.id)
                ids.setdefault(name, []).append(row.id)
    worker = OutboxWorker(services, batch=4)
    first = [c.id for c in worker.claim()]
    assert first[:3] == ids["urgent"] and first[3] == ids["loose"][0]


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(cfg: Path, *args):
    proc = subprocess.run([CLI, "--config", str(cfg), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def _connect(port: int) -> smtplib.SMTP:
    for _ in range(200):
        try:
            return smtplib.SMTP("127.0.0.1", port, timeout=10)
        except OSError:
            time.sleep(0.1)
    raise AssertionError("serve did not listen")
