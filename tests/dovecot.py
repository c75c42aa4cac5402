"""A throwaway Dovecot for tests and benchmarks: its own config, user, Maildir and
self-signed certificate under a temporary directory, on free loopback ports.

Never the system instance: ``dovecot -F -c <tmp>/dovecot.conf`` runs in the foreground with
base_dir, state and logs inside the temporary directory, and is stopped by its pid.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ports import free_ports

USER = "practice"
PASSWORD = "s3cret-imap-pass"

CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = portal-test-{port}
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
mail_uid = {mail_uid}
mail_gid = {mail_gid}
{ssl_settings}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
{imaps}}}
service anvil {{
  chroot =
}}
protocol imap {{
  mail_max_userip_connections = 200
{capability}}}
"""
SSL_ON = """ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem"""
IMAPS = """  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
"""


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)


def mail_ids() -> tuple[int, int]:
    """Dovecot refuses uid 0 for mail processes: as root, mail belongs to `nobody`."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    import pwd
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def _die_with_parent() -> None:
    """Linux: SIGTERM the Dovecot master when the test process dies (a killed run leaves
    no Dovecot behind)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass




def make_cert(root: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem"),
         "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)


class Dovecot:
    """start() / stop() / restart(); `port` is plain IMAP (STARTTLS offered unless ssl is
    off), `ssl_port` implicit TLS; `cert` is the CA file a client must trust."""

    def __init__(self, root: Path | None = None, ssl: bool = True, capability: str = "",
                 cert_from: Path | None = None):
        # Not under pytest's 0700 tmp dirs: Dovecot's unprivileged processes must get in.
        self.root = Path(root or tempfile.mkdtemp(prefix="portal-dovecot-"))
        self.root.chmod(0o755)
        if cert_from is not None:
            for name in ("cert.pem", "key.pem"):
                shutil.copy(Path(cert_from) / name, self.root / name)
        self.ssl = ssl
        self.capability = capability
        self.port, self.ssl_port = free_ports(2)
        self.proc: subprocess.Popen | None = None

    @property
    def cert(self) -> Path:
        return self.root / "cert.pem"

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / USER

    def _write_config(self) -> Path:
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        if not self.cert.exists():
            make_cert(self.root)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        uid, gid = mail_ids()
        mail = self.root / "mail"
        os.chown(mail, uid, gid)
        conf = self.root / "dovecot.conf"
        me = os.environ.get("USER", "nobody")
        conf.write_text(CONF.format(
            root=self.root, port=self.port, mail_uid=uid, mail_gid=gid,
            internal="dovecot" if uid == 0 else me, login="dovenull" if uid == 0 else me,
            ssl_settings=(SSL_ON if self.ssl else "ssl = no").format(root=self.root),
            imaps=IMAPS.format(port=self.ssl_port) if self.ssl else "",
            capability=f"  imap_capability = {self.capability}\n" if self.capability else ""))
        return conf

    def start(self, timeout: float = 15.0) -> None:
        binary = dovecot_binary()
        if binary is None:
            raise RuntimeError("dovecot is not installed (apt-get install dovecot-imapd)")
        conf = self._write_config()
        self.proc = subprocess.Popen([binary, "-F", "-c", str(conf)], start_new_session=True,
                                     preexec_fn=_die_with_parent,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.proc.stderr.read().decode()}"
                                   f"{self.log_tail()}")
            if self._answers(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on {self.port}{self.log_tail()}")

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                return s.recv(100).startswith(b"* OK")
        except OSError:
            return False

    def log_tail(self) -> str:
        log = self.root / "dovecot.log"
        return "\n" + "\n".join(log.read_text().splitlines()[-20:]) if log.exists() else ""

    def stop(self) -> None:
        """Stop the master, then end what is left of its process group at once (left
        alone, Dovecot's imap processes say BYE about ten seconds later)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Mailbox:
    """A blocking imaplib session to the test Dovecot, for putting mail in and looking."""

    def __init__(self, server: Dovecot):
        import imaplib
        import ssl
        if server.ssl:
            ctx = ssl.create_default_context(cafile=str(server.cert))
            self.imap = imaplib.IMAP4_SSL("127.0.0.1", server.ssl_port, ssl_context=ctx,
                                          timeout=30)
        else:
            self.imap = imaplib.IMAP4("127.0.0.1", server.port, timeout=30)
        self.imap.login(USER, PASSWORD)

    def append(self, folder: str, raw: bytes) -> None:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        typ, data = self.imap.append(f'"{folder}"', None, None, raw)
        assert typ == "OK", data

    def create(self, folder: str) -> None:
        self.imap.create(f'"{folder}"')

    def delete(self, folder: str) -> None:
        if self.imap.state == "SELECTED":
            self.imap.unselect()  # Dovecot drops a session whose selected box goes away
        typ, data = self.imap.delete(f'"{folder}"')
        assert typ == "OK", data

    def uids(self, folder: str) -> list[int]:
        typ, data = self.imap.select(f'"{folder}"', readonly=True)
        if typ != "OK":
            return []
        typ, data = self.imap.uid("SEARCH", None, "ALL")
        return [int(u) for u in data[0].split()]

    def count(self, folder: str) -> int:
        return len(self.uids(folder))

    def messages(self, folder: str) -> list[bytes]:
        out = []
        for uid in self.uids(folder):
            typ, data = self.imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
            out.append(data[0][1])
        return out

    def uidvalidity(self, folder: str) -> int:
        self.imap.select(f'"{folder}"', readonly=True)
        return int(self.imap.untagged_responses["UIDVALIDITY"][0])

    def close(self) -> None:
        try:
            self.imap.logout()
        except Exception:
            pass


# -- pytest fixtures (imported by the IMAP test modules) -------------------------------------

IN_CI = os.environ.get("CI") == "true"


def _require_dovecot():
    import pytest
    if dovecot_binary() is None:
        if IN_CI:
            pytest.fail("dovecot is required in CI (scripts/test installs dovecot-imapd)")
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd)")


def make_server(cert_dir: Path, **kw) -> Dovecot:
    _require_dovecot()
    server = Dovecot(cert_from=cert_dir, **kw)
    server.start()
    return server


def account_toml(server: Dovecot, name: str = "practice", **kw) -> str:
    """An [[imap.accounts]] table for `server` (implicit TLS trusting its certificate)."""
    values = {"name": name, "host": "127.0.0.1", "port": server.ssl_port, "tls": "implicit",
              "ca_file": str(server.cert), "username": USER, "password": PASSWORD,
              "poll_seconds": 0.2, "timeout_seconds": 5.0, "idle_seconds": 30.0}
    values.update(kw)

    def toml(v):
        return ("true" if v else "false") if isinstance(v, bool) else \
            (repr(v) if isinstance(v, (int, float)) else '"' + str(v) + '"')
    return "\n[[imap.accounts]]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in values.items())
