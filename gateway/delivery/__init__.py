"""Delivery backends for the outbox: Maildir (embedded default) and SMTP relay."""
