"""`portal-gateway serve` as real processes for tests: a config on free ports, stderr read
line by line (JSON logs), many SMTP sessions at once, and what ended up stored and sent."""
from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlalchemy import select

from gateway.models import Message, Outbox
from tests.conftest import ROOT, migrate, write_config
from tests.helpers import patient_mail
from tests.ports import free_port, free_ports
from tests.relay import RelayHandler

CLI = str(Path(sys.executable).parent / "portal-gateway")
PATIENT = "ana@example.com"
PORTAL = "portal@portal.example.org"




def gateway_config(tmp_path: Path, db_url: str, name: str = "config.toml",
                   workers: int = 1, drain_seconds: float = 15,
                   relay_port: int | None = None,
                   ops_port: int | None = None) -> tuple[Path, int]:
    """A test config (tests.conftest) with its own SMTP port; every config written into one
    TMP_PATH shares the data dir (key file, Maildir).  With RELAY_PORT mail goes to that
    smarthost instead of Maildir.  Returns (path, inbound port)."""
    base = write_config(tmp_path, db_url)
    port, free_ops = free_ports(2)
    text = base.read_text().replace("inbound_port = 0", f"inbound_port = {port}")
    text = text.replace("[gateway]\n", f"[gateway]\nworkers = {workers}\n"
                        f"drain_seconds = {drain_seconds}\n")
    text = text.replace("[smtp]\n", "[smtp]\nmax_messages_per_patient_per_hour = 0\n")
    text = text.replace("ops_port = 0\n", "")  # the conftest's; a fixed port of its own
    text = text.replace("[http]\n", f"[http]\nops_port = {ops_port or free_ops}\n")
    if relay_port is not None:
        text = text.replace("[delivery]\n", f'[delivery]\nmode = "relay"\nrelay_host = '
                            f'"127.0.0.1"\nrelay_port = {relay_port}\nrelay_tls = "none"\n')
    path = tmp_path / name
    path.write_text(text)
    return path, port


def prepare_database(db_url: str, config: Path) -> None:
    """Migrate (PostgreSQL is never migrated by serve), then one active patient (ana)."""
    from gateway.config import load_config
    from gateway.services import Services
    from tests.helpers import add_patient
    migrate(db_url)
    services = Services.create(load_config(config))
    add_patient(services)
    services.close()


class Serve:
    """One `serve` process (a parent with workers when the config says so)."""

    def __init__(self, config: Path, port: int):
        self.config, self.port = config, port
        self.lines: list[str] = []
        self.proc = subprocess.Popen([CLI, "--config", str(config), "serve"], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def logs(self, event: str) -> list[dict]:
        found = []
        for line in list(self.lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event:
                found.append(entry)
        return found

    def problems(self) -> str:
        """Warnings and errors the processes logged (for an assertion's message)."""
        return "\n".join(line for line in self.lines
                         if '"level": "error"' in line or ('"level": "warning"' in line
                                                          and "auth_mode" not in line))

    def wait_logs(self, event: str, count: int = 1, timeout: float = 30, **match) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.logs(event)
                     if all(e.get(k) == v for k, v in match.items())]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"expected {count} {event!r} {match}:\n" + "\n".join(self.lines))

    def stop(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(5)

    def kill(self) -> None:
        """Whatever is left, workers included (a test that failed must not leave any)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for entry in self.logs("listening"):
            if "worker" in entry:
                try:
                    os.kill(entry["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass


class Senders:
    """SESSIONS concurrent SMTP sessions, each sending up to PER messages from ana, in
    threads; `acked` holds the Message-ID of every message answered 250."""

    def __init__(self, ports: list[int], sessions: int, per: int):
        self.acked: list[str] = []
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._session,
                                         args=(ports[i % len(ports)], i, per), daemon=True)
                        for i in range(sessions)]
        for t in self.threads:
            t.start()

    def _session(self, port: int, n: int, per: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                for i in range(per):
                    msg = patient_mail(subject=f"Question {n}.{i}")
                    client.send_message(msg, PATIENT, [PORTAL])
                    with self._lock:
                        self.acked.append(msg["Message-ID"])
        except (smtplib.SMTPException, OSError) as e:  # a drain: 421, or the session closed
            with self._lock:
                self.refused.append(type(e).__name__)

    def wait_acked(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.acked) >= count, f"only {len(self.acked)} of {count} answered 250"

    def join(self, timeout: float = 120) -> None:
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), "an SMTP session hung"


def stored(db_url: str, config: Path) -> tuple[list[str], list[tuple[int, str, str]]]:
    """(Message-IDs of stored patient messages, (id, kind, state) of every outbox row)."""
    from gateway.config import load_config
    from gateway.services import Services
    services = Services.create(load_config(config), migrate=False)
    try:
        with services.factory() as session:
            ids = list(session.scalars(select(Message.message_id)
                                       .where(Message.direction == "patient")))
            rows = [tuple(r) for r in session.execute(
                select(Outbox.id, Outbox.kind, Outbox.state))]
    finally:
        services.close()
    return ids, rows


class Relay:
    """A real smarthost (aiosmtpd in a thread) that counts what each outbox row sent."""

    def __init__(self):
        self.handler = RelayHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def sent(self) -> Counter:
        """outbox id -> how many times that mail reached the relay."""
        return Counter(int(i) for i in self.handler.outbox_ids())

    def stop(self) -> None:
        self.controller.stop()
