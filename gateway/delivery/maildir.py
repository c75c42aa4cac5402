"""Maildir delivery: ``<root>/<recipient address>/{tmp,new,cur}``.

The file name is derived from the outbox row, so a delivery repeated after a crash
(written, but not yet marked sent) finds its own earlier file and does not double.
Each file is fsynced before it is renamed into ``new/``; the directories a batch wrote
into are fsynced once, by `flush`, which the worker awaits before it marks the batch sent.
"""
from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path


from gateway.delivery.errors import PermanentFailure


def folder_for(root: Path, recipient: str) -> Path:
    name = recipient.strip().lower().replace("/", "%2F")
    if not name or name.startswith("."):
        raise PermanentFailure("recipient cannot name a Maildir folder")
    return root / name


def _ensure(folder: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MaildirDelivery:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.host = socket.gethostname().replace("/", "_").replace(":", "_") or "localhost"
        self._unsynced: set[Path] = set()  # directories written since the last flush
        self._made: set[Path] = set()  # folders whose tmp/new/cur exist (made or seen)

    async def deliver(self, outbox_id: int, created_epoch: int, mail_from: str,
                      recipient: str, raw: bytes) -> Path:
        return await asyncio.to_thread(self.write, outbox_id, created_epoch, recipient, raw,
                                       False)

    async def flush(self) -> None:
        """Make every file delivered since the last flush durable (one fsync per folder)."""
        folders, self._unsynced = self._unsynced, set()
        if folders:
            await asyncio.to_thread(_fsync_all, folders)

    async def close(self) -> None:
        await self.flush()

    def write(self, outbox_id: int, created_epoch: int, recipient: str, raw: bytes,
              sync_dir: bool = True) -> Path:
        """Deliver one file; with SYNC_DIR false its directory waits for `flush`."""
        folder = folder_for(self.root, recipient)
        if folder not in self._made or not (folder / "tmp").is_dir():
            _ensure(folder)  # three mkdirs once per folder, not per file
            self._made.add(folder)
        try:
            return self._write(folder, f"{created_epoch}.Q{outbox_id}.{self.host}", raw,
                               sync_dir)
        except OSError:
            self._made.discard(folder)  # made again on the retry, should it be gone
            raise

    def _write(self, folder: Path, base: str, raw: bytes, sync_dir: bool) -> Path:
        existing = _earlier(folder, base)
        if existing is not None:  # its directory may not be synced yet (a crash)
            self._synced(existing.parent, sync_dir)
            return existing
        tmp = folder / "tmp" / base
        with open(tmp, "wb") as fh:
            fh.write(raw.replace(b"\r\n", b"\n"))
            fh.flush()
            os.fsync(fh.fileno())
        final = folder / "new" / base
        os.replace(tmp, final)
        self._synced(folder / "new", sync_dir)
        return final

    def _synced(self, directory: Path, now: bool) -> None:
        if now:
            _fsync_dir(directory)
        else:
            self._unsynced.add(directory)


def _earlier(folder: Path, base: str) -> Path | None:
    """The file an earlier attempt delivered: ``new/BASE``, or ``cur/BASE:<flags>`` once a
    mail client has seen it.  A plain prefix test, not ``Path.glob``, which compiles a
    new regular expression for every (unique) file name."""
    fresh = folder / "new" / base
    if fresh.exists():
        return fresh
    prefix = base + ":"
    try:
        with os.scandir(folder / "cur") as entries:
            for entry in entries:
                if entry.name.startswith(prefix):
                    return Path(entry.path)
    except FileNotFoundError:
        pass
    return None


def _fsync_all(folders) -> None:
    for folder in sorted(folders):
        _fsync_dir(folder)
