"""Column types that encrypt on the way in and decrypt on the way out (gateway.crypto).

``EncryptedText("messages.body")`` stores ``enc1:<kid>:<base64>`` in a TEXT column;
``EncryptedBytes("outbox.raw")`` stores the sealed bytes in a binary column.  The name
given is the associated data, so each value is bound to its column.  Code above the ORM
keeps reading and writing plain values; equality on these columns means nothing (every
value has a fresh nonce), so address look-ups go through a blind-index column instead.
"""
from __future__ import annotations

from sqlalchemy import LargeBinary, Text
from sqlalchemy.types import TypeDecorator

from gateway import crypto


class EncryptedText(TypeDecorator):
    impl = Text
    cache_ok = True

    def __init__(self, aad: str):
        super().__init__()
        self.aad = aad

    def process_bind_param(self, value, dialect):
        if value is None or value == "":
            return value
        return crypto.encrypt_text(value, self.aad)

    def process_result_value(self, value, dialect):
        if not value or not value.startswith(crypto.PREFIX):
            return value  # empty, or written before encryption (sealed by `keys rotate`)
        return crypto.decrypt_text(value, self.aad)


class EncryptedBytes(TypeDecorator):
    impl = LargeBinary
    cache_ok = True

    def __init__(self, aad: str):
        super().__init__()
        self.aad = aad

    def process_bind_param(self, value, dialect):
        if value is None or len(value) == 0:
            return value
        return crypto.encrypt_bytes(bytes(value), self.aad)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        value = bytes(value)
        if not value.startswith(crypto.BPREFIX):
            return value
        return crypto.decrypt_bytes(value, self.aad)
