"""IMAP: pull patient mail from a hosted mailbox into `pipeline.ingest` (pull.py), and
deliver staff copies by APPEND (gateway.delivery.imap_append)."""
from gateway.imap.pull import ImapPoller, start_imap

__all__ = ["ImapPoller", "start_imap"]
