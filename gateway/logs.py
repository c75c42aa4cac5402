"""Structured logs: one JSON object a line, ids only (never bodies, subjects, names)."""
from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, fields: dict | None = None):
        super().__init__()
        self.fields = dict(fields or {})  # on every line (a worker's index and pid)

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name,
                 "event": record.getMessage(), **self.fields}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def setup(level: str = "INFO", stream=None, fields: dict | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(fields))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosmtpd's own logger writes client addresses (and at DEBUG, content) even in its
    # warnings; our handlers log every refusal and error with ids instead.
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    for noisy in ("aiosmtpd", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
