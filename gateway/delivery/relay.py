"""SMTP relay (smarthost) delivery with aiosmtplib.

One connection is reused across a batch.  TLS is required: STARTTLS (the relay must offer
it, or nothing is sent) or implicit TLS, with certificate verification; plaintext only for a
loopback relay when config says ``relay_tls = "none"``.  Optional AUTH.
"""
from __future__ import annotations

import ssl

import aiosmtplib

from gateway.delivery.errors import PermanentFailure, TemporaryFailure


def tls_context(ca_file: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


class RelayDelivery:
    def __init__(self, cfg):
        d = cfg.delivery
        self.d = d
        self.ca_file = str(cfg.resolve(d.relay_ca_file)) if d.relay_ca_file else ""
        self.client: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        d = self.d
        implicit = d.relay_tls == "implicit"
        client = aiosmtplib.SMTP(hostname=d.relay_host, port=d.relay_port,
                                 timeout=d.relay_timeout_seconds, use_tls=implicit,
                                 start_tls=False,
                                 tls_context=tls_context(self.ca_file) if implicit else None)
        await client.connect()
        await client.ehlo()
        if d.relay_tls == "starttls":
            if not client.supports_extension("starttls"):
                client.close()
                raise TemporaryFailure("relay does not offer STARTTLS; nothing sent")
            await client.starttls(tls_context=tls_context(self.ca_file))
            await client.ehlo()
        if d.relay_username:
            await client.login(d.relay_username, d.relay_password)
        return client

    async def _ensure(self) -> aiosmtplib.SMTP:
        if self.client is None or not self.client.is_connected:
            self.client = await self._connect()
        return self.client

    async def deliver(self, outbox_id: int, created_epoch: int, mail_from: str,
                      recipient: str, raw: bytes) -> None:
        try:
            client = await self._ensure()
            await client.sendmail(mail_from, [recipient], raw)
        except aiosmtplib.SMTPRecipientsRefused as e:
            self._drop()
            codes = [r.code for r in e.recipients]
            raise (PermanentFailure if all(c >= 500 for c in codes) else TemporaryFailure)(
                f"recipient refused: {codes}") from None
        except aiosmtplib.SMTPResponseException as e:
            self._drop()
            kind = PermanentFailure if 500 <= e.code < 600 else TemporaryFailure
            raise kind(f"relay answered {e.code}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as e:
            self._drop()
            if isinstance(e, TemporaryFailure):
                raise
            raise TemporaryFailure(f"{type(e).__name__}") from None

    def _drop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    async def close(self) -> None:
        if self.client is not None and self.client.is_connected:
            try:
                await self.client.quit()
            except Exception:
                self.client.close()
        self.client = None
