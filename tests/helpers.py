"""Test helpers: patients in the database, raw SMTP conversations."""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from gateway.models import Patient


def add_patient(services, account="1001", email="ana@example.com", state="CA",
                status="active", first="Ana", last="Lopez", language=None,
                birth_date=None) -> int:
    with services.transaction() as session:
        p = Patient(account_number=account, first_name=first, last_name=last,
                    email=email.lower(), state=state, status=status, language=language,
                    birth_date=birth_date)
        session.add(p)
        session.flush()
        return p.id


def patient_mail(sender="ana@example.com", to="portal@portal.example.org",
                 subject="Question", body="Can I move my appointment to next week?",
                 **headers) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.com")
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body)
    return msg


async def smtp_send(port: int, mail_from: str, rcpts: list[str], data: bytes):
    """One SMTP transaction; returns (stage, code, text) of the first refusal or of DATA."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
    await client.connect()
    try:
        await client.ehlo()
        code, text = await client.execute_command(f"MAIL FROM:<{mail_from}>".encode())
        if code >= 400:
            return ("MAIL", code, text)
        accepted = 0
        first_refusal = None
        for rcpt in rcpts:
            code, text = await client.execute_command(f"RCPT TO:<{rcpt}>".encode())
            if code >= 400:
                first_refusal = first_refusal or ("RCPT", code, text)
            else:
                accepted += 1
        if not accepted:
            return first_refusal
        try:
            resp = await client.data(data)
            return ("DATA", resp.code, resp.message)
        except aiosmtplib.SMTPResponseException as e:
            return ("DATA", e.code, e.message)
    finally:
        try:
            await client.quit()
        except Exception:
            client.close()


async def raw_smtp(port: int, chunks: list[bytes], timeout: float = 10.0) -> list[bytes]:
    """Write each chunk as it is and read one reply after it; returns the replies
    (the greeting first).  For tests of what a normal client would never send."""
    import asyncio
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        lines = []
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            lines.append(line)
            if not line or line[3:4] != b"-":
                return b"".join(lines)
    replies = [await reply()]
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            replies.append(await reply())
    finally:
        writer.close()
    return replies


def dkim_keypair(folder):
    """(path of a new RSA private key in PEM, its DKIM TXT record) made with openssl."""
    import base64
    import subprocess
    key = folder / "dkim.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True,
                   capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def load_eval():
    """bench/classify_eval.py as a module (its corpus loader and scoring)."""
    import importlib.util
    import sys
    from pathlib import Path
    if "classify_eval" in sys.modules:
        return sys.modules["classify_eval"]
    path = Path(__file__).resolve().parents[1] / "bench" / "classify_eval.py"
    spec = importlib.util.spec_from_file_location("classify_eval", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["classify_eval"] = module
    spec.loader.exec_module(module)
    return module


def add_proxy(services, patient_id: int, email="mom@example.net", status="active",
              first="Maria", last="Lopez", relation="mother", scope=None) -> int:
    from gateway.models import Proxy
    with services.transaction() as session:
        p = Proxy(patient_id=patient_id, first_name=first, last_name=last, email=email,
                  relation=relation, scope=scope, status=status)
        session.add(p)
        session.flush()
        return p.id
