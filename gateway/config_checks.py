"""Cross-field validation of the configuration (types and unknown keys are checked while
loading, in gateway.config).  Every error names the file, the section and the key."""
from __future__ import annotations

import ipaddress
from pathlib import Path

from gateway.config import (CATEGORIES, Config, ConfigError, ImapAccount, ImapFolder,
                            SmtpSection, build_section, is_loopback)

MAX_WORKERS = 64  # [gateway] workers: serve's processes at most


def validate(cfg: Config, fname: str) -> None:
    """Cross-field checks; raises one ConfigError listing every problem, each naming file
    and field."""
    problems: list[str] = []

    def err(section, key, msg):
        problems.append(f"{fname}: [{section}] {key}: {msg}")

    try:
        _validate_imap(cfg, fname)
    except ConfigError as e:
        problems.extend(e.problems)
    for check in (_delivery, _routing, _smtp, _policy_and_gateway, _security_and_http,
                  _practice, _notifications):
        check(cfg, err)
    if problems:
        raise ConfigError("\n".join(problems), problems)


def _delivery(cfg: Config, err) -> None:
    if cfg.delivery.mode not in ("maildir", "relay"):
        err("delivery", "mode", f"must be 'maildir' or 'relay', got {cfg.delivery.mode!r}")
    if bool(cfg.delivery.dkim_selector) != bool(cfg.delivery.dkim_key_file):
        err("delivery", "dkim_key_file", "dkim_selector and dkim_key_file go together")
    if cfg.delivery.dkim_key_file and not cfg.resolve(cfg.delivery.dkim_key_file).is_file():
        err("delivery", "dkim_key_file", f"no such file: {cfg.delivery.dkim_key_file}")
    if cfg.delivery.relay_tls not in ("starttls", "implicit", "none"):
        err("delivery", "relay_tls", "must be 'starttls', 'implicit' or 'none'")
    if cfg.delivery.relay_tls == "none" and not is_loopback(cfg.delivery.relay_host):
        err("delivery", "relay_tls", "'none' (plaintext) is allowed only for a loopback relay")
    if not 5 <= cfg.delivery.lease_seconds <= 86400:
        err("delivery", "lease_seconds", "must be between 5 and 86400")


def _routing(cfg: Config, err) -> None:
    for cat, teams in cfg.routing.categories.items():
        if cat not in CATEGORIES:
            err("routing.categories", cat, f"unknown category (known: {', '.join(CATEGORIES)})")
        if isinstance(teams, str):
            cfg.routing.categories[cat] = teams = [teams]
        if not isinstance(teams, list) or not all(
                isinstance(t, str) and ("@" in t or (t.lower().startswith("imap:")
                                                     and t[5:].lower() in cfg.imap.folders))
                for t in teams):
            err("routing.categories", cat, "expected a list of e-mail addresses "
                "or imap:NAME folders from [imap.folders]")
    for key in ("triage", "on_call", "supervisor", "security"):
        if "@" not in getattr(cfg.routing, key):
            err("routing", key, "expected an e-mail address")


def _notifications(cfg: Config, err) -> None:
    kinds = {k.lower() for k in cfg.notifications.kinds if isinstance(k, str)}
    mapping = cfg.notifications.categories
    if not isinstance(mapping, dict):
        err("notifications", "categories", "expected a table of kind = category")
        mapping = {}
    for kind, category in mapping.items():
        if kind.lower() not in kinds:
            err("notifications.categories", kind, "not one of [notifications] kinds")
        if category not in CATEGORIES:
            err("notifications.categories", kind,
                f"unknown category {category!r} (known: {', '.join(CATEGORIES)})")
    for kind in cfg.notifications.confidential_kinds:
        if not isinstance(kind, str) or kind.lower() not in kinds:
            err("notifications", "confidential_kinds", f"{kind!r} is not one of "
                "[notifications] kinds")


def _smtp(cfg: Config, err) -> None:
    if bool(cfg.smtp.tls_cert_file) != bool(cfg.smtp.tls_key_file):
        err("smtp", "tls_key_file", "tls_cert_file and tls_key_file go together")
    for user, hashed in cfg.smtp.submission_users.items():
        if not isinstance(hashed, str) or not hashed.startswith("$argon2"):
            err("smtp.submission_users", user, "expected an argon2 hash "
                "(portal-gateway hash-password)")
    if not is_loopback(cfg.smtp.submission_host) and not cfg.smtp.tls_cert_file:
        err("smtp", "submission_host", "AUTH needs TLS off loopback: set tls_cert_file")
    if cfg.smtp.max_message_bytes <= 0:
        err("smtp", "max_message_bytes", "must be positive")
    _validate_smtp_limits(cfg.smtp, lambda key, msg: err("smtp", key, msg))


def _practice(cfg: Config, err) -> None:
    for code, words in cfg.practice.office_hours_by_language.items():
        if not (len(code) == 2 and code.isascii() and code.isalpha() and code.islower()):
            err("practice", "office_hours_by_language",
                f"{code!r} is not a two-letter ISO 639-1 code such as \"es\"")
        if not isinstance(words, str) or not words.strip():
            err("practice", "office_hours_by_language", f"{code}: expected the office hours "
                "as text")


def _policy_and_gateway(cfg: Config, err) -> None:
    if cfg.policy.auth_mode not in ("off", "upstream", "verify"):
        err("policy", "auth_mode", "must be 'off', 'upstream' or 'verify'")
    if cfg.policy.auth_mode == "upstream" and not cfg.policy.trusted_authserv_ids:
        err("policy", "trusted_authserv_ids", "auth_mode 'upstream' needs the authserv-id(s) "
            "of the practice's own MTA")
    listeners = {"smtp.inbound_host": cfg.smtp.inbound_host,
                 "smtp.submission_host": cfg.smtp.submission_host, "http.host": cfg.http.host}
    exposed = [k for k, host in listeners.items() if not is_loopback(host)]
    if cfg.policy.auth_mode == "off" and exposed:
        err("policy", "auth_mode", f"'off' is only for a loopback quick start, but "
            f"{', '.join(exposed)} is not loopback: use 'verify' or 'upstream'")
    for server in cfg.policy.dns_servers:
        if not _dns_server_ok(server):
            err("policy", "dns_servers", f"{server!r} is not an IP address or IP:port")
    if not 0 < cfg.policy.dns_timeout_seconds <= 60:
        err("policy", "dns_timeout_seconds", "must be between 0 and 60 seconds")
    if cfg.delivery.bounce_token_days <= 0:
        err("delivery", "bounce_token_days", "must be positive")
    if cfg.policy.reply_within_hours <= 0:
        err("policy", "reply_within_hours", "must be positive")
    if cfg.policy.urgent_reply_minutes < 1 or 0 < cfg.policy.reply_within_hours * 60 < \
            cfg.policy.urgent_reply_minutes:  # a bad reply_within_hours is named on its own
        err("policy", "urgent_reply_minutes",
            "must be at least 1 and not longer than reply_within_hours")
    for key in ("drain_seconds", "retention_days", "outbox_stuck_minutes",
                "quarantine_max_bytes", "quarantine_days"):
        if getattr(cfg.gateway, key) < 0:
            err("gateway", key, "must not be negative")
    if not 1 <= cfg.gateway.workers <= MAX_WORKERS:
        err("gateway", "workers", f"must be between 1 and {MAX_WORKERS}")
    if len(cfg.gateway.separator) != 1:
        err("gateway", "separator", "must be a single character")
    if not all(isinstance(s, str) and len(s) == 2 for s in cfg.policy.allowed_states):
        err("policy", "allowed_states", "expected two-letter state codes")


def _dns_server_ok(server) -> bool:
    if not isinstance(server, str):
        return False
    host, port = server, "53"
    if server.count(":") == 1:
        host, port = server.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return port.isdigit() and 0 < int(port) < 65536


# [smtp] limits: key -> (lowest, highest) allowed value.
SMTP_LIMIT_RANGES = {
    "max_line_length": (1000, 1_000_000), "max_command_length": (512, 4096),
    "max_header_bytes": (4096, 10 * 1024 * 1024), "max_mime_depth": (2, 100),
    "max_mime_parts": (2, 100_000), "max_received_headers": (5, 500),
    "session_deadline_seconds": (1, 86400), "session_timeout_seconds": (1, 3600),
    "max_sessions": (1, 100_000), "max_sessions_per_ip": (1, 100_000),
    "max_sessions_per_network": (1, 100_000), "pre_mail_timeout_seconds": (1, 3600),
    "content_cpu_seconds": (0.1, 600),
    "max_noop_per_session": (1, 100_000), "max_rset_per_session": (1, 100_000),
    "max_command_repeats": (10, 1_000_000), "max_recipients": (1, 1000),
    "max_messages_per_patient_per_hour": (0, 1_000_000),
    "quarantine_after_crashes": (1, 100), "duplicate_window_hours": (0, 24 * 365),
}


def _validate_smtp_limits(smtp: SmtpSection, err) -> None:
    for key, (low, high) in SMTP_LIMIT_RANGES.items():
        value = getattr(smtp, key)
        if not low <= value <= high:
            err(key, f"must be between {low} and {high}, got {value}")
    if smtp.max_sessions_per_ip > smtp.max_sessions:
        err("max_sessions_per_ip", "must not exceed max_sessions")
    if smtp.require_starttls and not smtp.tls_cert_file:
        err("require_starttls", "needs tls_cert_file and tls_key_file")


def _validate_imap_account(cfg: Config, acct: ImapAccount, where: str) -> None:
    def err(key, msg):
        raise ConfigError(f"{where} {key}: {msg}")

    for key in ("name", "host", "username", "mailbox", "done_folder", "refused_folder",
                "error_folder"):
        if not getattr(acct, key):
            err(key, "must not be empty")
    if acct.tls not in ("implicit", "starttls", "none"):
        err("tls", "must be 'implicit', 'starttls' or 'none'")
    if acct.tls == "none" and not (acct.allow_plaintext_loopback and is_loopback(acct.host)):
        err("tls", "'none' needs allow_plaintext_loopback = true and a loopback host")
    acct.port = acct.port or (993 if acct.tls == "implicit" else 143)
    if not 0 < acct.port < 65536:
        err("port", "must be between 1 and 65535")
    for key in ("poll_seconds", "timeout_seconds", "idle_seconds"):
        if getattr(acct, key) <= 0:
            err(key, "must be positive")
    acct.rcpt = (acct.rcpt or f"portal@{cfg.gateway.domain}").lower()
    if acct.rcpt.rpartition("@")[2] != cfg.gateway.domain.lower():
        err("rcpt", f"must be one of the gateway's addresses (@{cfg.gateway.domain})")
    if acct.ca_file:
        acct.ca_file = str(cfg.resolve(acct.ca_file))
        if not Path(acct.ca_file).is_file():
            err("ca_file", f"file not found: {acct.ca_file}")


def _validate_imap(cfg: Config, fname: str) -> None:
    """[[imap.accounts]] tables -> ImapAccount, [imap.folders] entries -> ImapFolder."""
    accounts = []
    for i, raw in enumerate(cfg.imap.accounts, 1):
        label = raw.get("name") if isinstance(raw, dict) else None
        section = f"imap.accounts {label!r}" if isinstance(label, str) else f"imap.accounts #{i}"
        acct = build_section(section, ImapAccount, raw, fname)
        _validate_imap_account(cfg, acct, f"{fname}: [{section}]")
        if any(a.name == acct.name for a in accounts):
            raise ConfigError(f"{fname}: [{section}] name: duplicate account name")
        accounts.append(acct)
    cfg.imap.accounts = accounts
    folders = {}
    for name, raw in cfg.imap.folders.items():
        section = f"imap.folders.{name}"
        target = build_section(section, ImapFolder, raw, fname)
        if cfg.imap.account(target.account) is None:
            raise ConfigError(f"{fname}: [{section}] account: no [[imap.accounts]] named "
                              f"{target.account!r}")
        if not target.folder:
            raise ConfigError(f"{fname}: [{section}] folder: must not be empty")
        folders[name.lower()] = target
    cfg.imap.folders = folders


def _security_and_http(cfg: Config, err) -> None:
    from gateway.crypto import KeySourceError, parse_keys
    if cfg.security.keys and cfg.security.key_file:
        err("security", "keys", "set key_file or keys, not both")
    if cfg.security.keys:
        try:
            parse_keys(cfg.security.keys, "value")
        except KeySourceError as e:
            err("security", "keys", str(e))
    if not 0 <= cfg.http.ops_port <= 65535:
        err("http", "ops_port", "must be a port number (0-65535)")
    if cfg.http.ops_port and cfg.http.ops_port == cfg.http.port \
            and cfg.http.ops_host == cfg.http.host:
        err("http", "ops_port", "must differ from port (the ops endpoints listen apart)")
