"""Where the encryption keys come from, and their rotation (`portal-gateway keys rotate`).

``[security] keys = "env:NAME"`` holds the keys themselves; otherwise ``[security]
key_file`` (default ``portal-gateway.key`` beside the data dir).  The embedded SQLite
default creates that file (0600, one fresh key) on first start and logs that it did; on
PostgreSQL a missing key is an error, because every instance must share the same keys.
"""
from __future__ import annotations

import logging

from gateway import crypto
from gateway.config import Config

log = logging.getLogger("gateway.keys")


class KeysUnavailable(Exception):
    pass


def _read(cfg: Config) -> crypto.Keyring:
    if cfg.security.keys:
        return crypto.Keyring(crypto.parse_keys(cfg.security.keys, "[security] keys"),
                              source="[security] keys")
    path = cfg.key_file
    try:
        text = path.read_text()
    except OSError as e:
        raise KeysUnavailable(f"{cfg.path}: [security] key_file: cannot read {path}: "
                              f"{e.strerror}") from None
    try:
        return crypto.Keyring(crypto.parse_keys(text, str(path)), source=str(path))
    except crypto.KeySourceError as e:
        raise KeysUnavailable(f"{cfg.path}: [security] key_file: {e}") from None


def load(cfg: Config) -> crypto.Keyring:
    """The keyring for `cfg`, creating the key file for a SQLite database that has none."""
    if not cfg.security.keys and not cfg.key_file.exists():
        if not cfg.database_url.startswith("sqlite"):
            raise KeysUnavailable(
                f"{cfg.path}: [security] key_file: {cfg.key_file} does not exist; with "
                "PostgreSQL every instance needs the same keys: create it once with "
                "'portal-gateway keys init' and copy it to each")
        crypto.write_key_file(cfg.key_file)
        log.warning("created a new encryption key file; back it up apart from the database "
                    "(without it the data cannot be read)", extra={"path": str(cfg.key_file)})
    return _read(cfg)


def install(cfg: Config) -> crypto.Keyring:
    """Load the keys and make them the ones every encrypted column uses."""
    ring = load(cfg)
    crypto.install(ring, reload=lambda: _read(cfg))
    return ring


def reload(cfg: Config) -> crypto.Keyring:
    """Re-read the keys (SIGHUP): refused, keeping the old ring, if a key in use is gone."""
    fresh = _read(cfg)
    missing = set(crypto.ring().ids) - set(fresh.ids)
    if missing:
        raise KeysUnavailable(f"{fresh.source}: lacks key(s) {', '.join(sorted(missing))} "
                              "that stored values may use; keys not reloaded")
    crypto.install(fresh, reload=lambda: _read(cfg))
    return fresh
