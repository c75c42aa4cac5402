"""Encryption at rest: AES-256-GCM for every PHI column, a keyed blind index for addresses.

A keyring is one or more 32-byte keys (base64, one a line, in ``[security] key_file`` or in
an ``env:NAME`` variable); the last one is current and encrypts, every one decrypts.  A
key's id is derived from the key itself, so ids never clash and are safe to show.

Stored forms (the key id is readable in each, the rest is nonce + ciphertext + tag):
  text  ``enc1:<kid>:<base64>``      bytes  ``b"enc1:<kid>:" + nonce + ciphertext``
The associated data is ``table.column``: a value moved to another column does not decrypt.
Empty values stay empty (nothing to hide but emptiness); a value without the prefix is a
row written before encryption existed and is read as it is until ``keys rotate`` seals it.

The blind index is HMAC-SHA-256 of a normalised address under a key derived from the
*first* key of the ring (so it survives rotation): equality look-ups stay one indexed query.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger("gateway.crypto")

PREFIX = "enc1:"
BPREFIX = PREFIX.encode()
KEY_BYTES = 32
NONCE_BYTES = 12


class KeySourceError(Exception):
    """A key source is missing or malformed (the message names it, never a key)."""


class DecryptError(Exception):
    """A stored value does not decrypt: unknown key id, wrong column, or tampering."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"portal-gateway key id\0" + key).hexdigest()[:8]


def _derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


@dataclass
class Keyring:
    keys: list[bytes]
    source: str = ""  # where the keys came from, for messages (a path or env:NAME)
    _aead: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not self.keys:
            raise KeySourceError(f"{self.source}: no key")
        self._aead = {key_id(k): AESGCM(k) for k in self.keys}
        self.index_key = _derive(self.keys[0], b"portal-gateway blind index v1")

    @property
    def current(self) -> str:
        return key_id(self.keys[-1])

    @property
    def ids(self) -> list[str]:
        return [key_id(k) for k in self.keys]

    def seal(self, data: bytes, aad: str) -> tuple[str, bytes]:
        kid = self.current
        nonce = os.urandom(NONCE_BYTES)
        return kid, nonce + self._aead[kid].encrypt(nonce, data, aad.encode())

    def open(self, kid: str, blob: bytes, aad: str) -> bytes:
        aead = self._aead.get(kid)
        if aead is None:
            raise DecryptError(f"{aad}: unknown key id {kid}")
        try:
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad.encode())
        except Exception:
            raise DecryptError(f"{aad}: value does not decrypt with key {kid}") from None

    def mac_key(self, purpose: str) -> bytes:
        """A key for one purpose (e.g. signing form values), derived from the first key."""
        return _derive(self.keys[0], b"portal-gateway mac " + purpose.encode())

    def blind_index(self, normalized: str) -> str:
        return hmac.new(self.index_key, normalized.encode(), hashlib.sha256).hexdigest()


def parse_keys(text: str, source: str) -> list[bytes]:
    keys = []
    for n, line in enumerate(text.replace(",", "\n").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except binascii.Error:
            raise KeySourceError(f"{source}: line {n}: not base64") from None
        if len(key) != KEY_BYTES:
            raise KeySourceError(f"{source}: line {n}: a key must be {KEY_BYTES} bytes, "
                            f"got {len(key)}")
        keys.append(key)
    if not keys:
        raise KeySourceError(f"{source}: holds no key")
    return keys


def new_key_line() -> str:
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def write_key_file(path: Path) -> None:
    """Create a key file with one fresh key, mode 0600, never overwriting one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# portal-gateway encryption keys: the last one is current; keep them all\n")
        f.write(new_key_line() + "\n")


def append_key(path: Path) -> str:
    """Add a fresh key to a key file (it becomes current); returns its id."""
    line = new_key_line()
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    return key_id(base64.b64decode(line))


# --- the process-wide keyring the column types use -----------------------------------------

_ring: Keyring | None = None
_reload = None  # callable returning a fresh Keyring (a key added by `keys rotate`)


def install(ring: Keyring, reload=None) -> None:
    global _ring, _reload
    _ring, _reload = ring, reload


def ring() -> Keyring:
    if _ring is None:
        raise KeySourceError("no encryption key loaded (Services.create loads it)")
    return _ring


def _ring_for(kid: str) -> Keyring:
    """The keyring, re-read once when a value names a key added since it was loaded."""
    global _ring
    current = ring()
    if kid not in current._aead and _reload is not None:
        try:
            fresh = _reload()
        except Exception:
            return current  # the value then fails to decrypt, saying which key it names
        if kid in fresh._aead and set(current._aead) <= set(fresh._aead):
            log.info("key file re-read: a new key is current", extra={"key_id": fresh.current})
            _ring = current = fresh
    return current


def encrypt_text(value: str, aad: str) -> str:
    kid, blob = ring().seal(value.encode("utf-8"), aad)
    return f"{PREFIX}{kid}:{base64.b64encode(blob).decode()}"


def decrypt_text(value: str, aad: str) -> str:
    kid, _, b64 = value[len(PREFIX):].partition(":")
    return _ring_for(kid).open(kid, base64.b64decode(b64), aad).decode("utf-8")


def encrypt_bytes(value: bytes, aad: str) -> bytes:
    kid, blob = ring().seal(value, aad)
    return BPREFIX + kid.encode() + b":" + blob


def decrypt_bytes(value: bytes, aad: str) -> bytes:
    kid = value[len(BPREFIX):len(BPREFIX) + 8].decode("ascii", "replace")
    return _ring_for(kid).open(kid, value[len(BPREFIX) + 9:], aad)


def stored_key_id(value) -> str | None:
    """The key id a stored value was sealed with; None for empty or pre-encryption values."""
    if isinstance(value, (bytes, memoryview)):
        value = bytes(value[:len(BPREFIX) + 8]).decode("ascii", "replace")
    if not value or not value.startswith(PREFIX):
        return None
    return value[len(PREFIX):len(PREFIX) + 8]


def blind_index(normalized: str | None) -> str | None:
    return ring().blind_index(normalized) if normalized else None
