"""config.toml -> validated, typed settings.

Every error names the file and the field (``config.toml: [smtp] inbound_port: ...``).
A string value of the form ``"env:NAME"`` is read from the environment variable NAME,
so secrets need not sit in the file.  Relative paths are relative to the config file.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = "config.toml"
ENV_CONFIG = "PORTAL_GATEWAY_CONFIG"
CATEGORIES = ("appointment", "medical_question", "results", "billing", "surgery",
              "demographics", "emergency", "other")


class ConfigError(Exception):
    """A problem with the configuration, naming file and field."""


@dataclass
class GatewaySection:
    domain: str = "portal.example.org"
    data_dir: str = "var"
    separator: str = "+"
    hostname: str = "portal.example.org"
    rules_dir: str = "rules"
    templates_dir: str = "templates"
    portal_url: str = "https://portal.example.org"
    log_level: str = "INFO"
    drain_seconds: float = 30.0  # SIGTERM: in-flight sessions and sends get this long
    retention_days: int = 365  # message text purged this long after a thread ends; 0: never
    outbox_stuck_minutes: float = 15.0  # /healthz 503 when due mail waits longer; 0: off


@dataclass
class DatabaseSection:
    url: str = ""  # empty: SQLite file under the data dir


@dataclass
class SmtpSection:
    inbound_host: str = "127.0.0.1"
    inbound_port: int = 2525
    submission_host: str = "127.0.0.1"
    submission_port: int = 2587
    max_message_bytes: int = 25 * 1024 * 1024
    max_recipients: int = 20
    session_timeout_seconds: float = 300.0
    tls_cert_file: str = ""  # both listeners offer STARTTLS when a certificate is set
    tls_key_file: str = ""
    submission_users: dict = field(default_factory=dict)  # user -> argon2id hash
    # Protocol defence (gateway/smtp/limits.py); every value is validated below.
    require_starttls: bool = False  # MX: MAIL before STARTTLS gets 530 (needs a cert)
    max_line_length: int = 1000  # octets per line, CRLF included (RFC 5321)
    max_command_length: int = 512  # octets per command line (RFC 5321)
    max_header_bytes: int = 100 * 1024  # the header block of a message
    max_mime_depth: int = 20
    max_mime_parts: int = 500
    max_received_headers: int = 30  # more: a mail loop (554 5.4.6)
    session_deadline_seconds: float = 1200.0  # whole session, however busy
    max_sessions: int = 100  # concurrent sessions per listener
    max_sessions_per_ip: int = 20
    max_noop_per_session: int = 20
    max_rset_per_session: int = 100
    max_command_repeats: int = 1000  # any other single command per session
    max_messages_per_patient_per_hour: int = 20  # 0: no limit; more get 451 4.7.1
    quarantine_after_crashes: int = 3  # a message that crashes a step this often is set aside
    duplicate_window_hours: float = 168.0  # identical resends within this get 250, stored once


@dataclass
class HttpSection:
    host: str = "127.0.0.1"
    port: int = 8025
    public_url: str = "http://127.0.0.1:8025"  # base of enrollment links in invite mail


@dataclass
class DeliverySection:
    mode: str = "maildir"  # maildir | relay
    maildir_dir: str = ""  # empty: <data dir>/maildir
    poll_seconds: float = 1.0
    max_age_hours: float = 72.0
    retry_base_seconds: float = 60.0
    lease_seconds: float = 300.0  # a claimed row is retried after this if its worker died
    relay_host: str = "127.0.0.1"
    relay_port: int = 25
    relay_tls: str = "starttls"  # starttls | implicit | none (loopback relay only)
    relay_ca_file: str = ""  # extra CA certificate(s) to trust; empty: the system's
    relay_timeout_seconds: float = 60.0
    relay_username: str = ""
    dkim_selector: str = ""  # DKIM signing when selector and key file are set
    dkim_key_file: str = ""
    dkim_domain: str = ""  # empty: the gateway domain
    relay_password: str = ""


@dataclass
class PracticeSection:
    name: str = "Example Women's Health"
    office_phone: str = "(555) 010-0100"
    office_hours: str = "Monday to Friday, 8 a.m. to 5 p.m."
    after_hours_line: str = "(555) 010-0199"
    after_hours_name: str = "Example Community Hospital"
    timezone: str = "America/Los_Angeles"


@dataclass
class PolicySection:
    allowed_states: list = field(default_factory=lambda: ["CA"])
    reply_within_hours: float = 72.0
    reminder_offsets_hours: list = field(default_factory=lambda: [24, 4])
    auth_mode: str = "off"  # off | upstream | verify
    require_aligned_auth: bool = False
    trusted_authserv_ids: list = field(default_factory=list)
    invite_lifetime_days: float = 7.0


@dataclass
class RoutingSection:
    triage: str = "triage@practice.example.org"
    on_call: str = "oncall@practice.example.org"
    supervisor: str = "supervisor@practice.example.org"
    security: str = "security@practice.example.org"
    subject_prefix: str = "[Portal: {category}]"
    urgent_subject_prefix: str = "[URGENT Portal: {category}]"
    categories: dict = field(default_factory=dict)


@dataclass
class StaffSection:
    addresses: list = field(default_factory=list)
    domains: list = field(default_factory=list)
    trim_quoted: bool = True


@dataclass
class NotificationsSection:
    kinds: list = field(default_factory=lambda: ["lab_result", "radiology_result",
                                                 "appointment_reminder", "statement",
                                                 "surgery_scheduling", "message"])


@dataclass
class ImapAccount:
    """One ``[[imap.accounts]]`` table: a mailbox the gateway pulls patient mail from."""
    name: str = ""
    host: str = ""
    port: int = 0  # 0: 993 for implicit TLS, 143 otherwise
    username: str = ""
    password: str = ""
    mailbox: str = "INBOX"
    tls: str = "implicit"  # implicit | starttls | none (loopback only)
    ca_file: str = ""  # extra CA certificate(s) to trust; empty: the system's
    allow_plaintext_loopback: bool = False
    done_folder: str = "Portal/Done"
    refused_folder: str = "Portal/Refused"
    error_folder: str = "Portal/Error"
    rcpt: str = ""  # empty: portal@DOMAIN
    use_idle: bool = True
    idle_seconds: float = 300.0
    poll_seconds: float = 30.0
    timeout_seconds: float = 30.0


@dataclass
class ImapFolder:
    """One ``[imap.folders]`` entry: a delivery target ``imap:NAME`` (IMAP APPEND)."""
    account: str = ""
    folder: str = ""


@dataclass
class ImapSection:
    accounts: list = field(default_factory=list)  # of ImapAccount after validation
    folders: dict = field(default_factory=dict)  # NAME -> ImapFolder after validation

    def account(self, name: str) -> ImapAccount | None:
        return next((a for a in self.accounts if a.name == name), None)


SECTIONS = {
    "gateway": GatewaySection, "database": DatabaseSection, "smtp": SmtpSection,
    "http": HttpSection, "delivery": DeliverySection, "practice": PracticeSection,
    "policy": PolicySection, "routing": RoutingSection, "staff": StaffSection,
    "notifications": NotificationsSection, "imap": ImapSection,
}


@dataclass
class Config:
    path: Path
    gateway: GatewaySection
    database: DatabaseSection
    smtp: SmtpSection
    http: HttpSection
    delivery: DeliverySection
    practice: PracticeSection
    policy: PolicySection
    routing: RoutingSection
    staff: StaffSection
    notifications: NotificationsSection
    imap: ImapSection

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def data_dir(self) -> Path:
        return self.resolve(self.gateway.data_dir)

    @property
    def maildir_root(self) -> Path:
        return self.resolve(self.delivery.maildir_dir) if self.delivery.maildir_dir \
            else self.data_dir / "maildir"

    @property
    def rules_dir(self) -> Path:
        return self.resolve(self.gateway.rules_dir)

    @property
    def templates_dir(self) -> Path:
        return self.resolve(self.gateway.templates_dir)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'gateway.sqlite3'}"

    def team_for(self, category: str) -> list[str]:
        teams = self.routing.categories.get(category) or []
        return list(teams) or [self.routing.triage]


def is_loopback(host: str) -> bool:
    import ipaddress
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _type_name(tp) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(tp, str(tp))


def _coerce(value, tp, where: str):
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        value = os.environ[name]
        if tp is int:
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"{where}: {name} must hold an integer") from None
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build_section(name: str, cls, raw: dict, fname: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{fname}: [{name}]: expected a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        where = f"{fname}: [{name}] {key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
        values[key] = _coerce(value, hints[key], where)
    return cls(**values)


def _validate(cfg: Config, fname: str) -> None:
    def err(section, key, msg):
        raise ConfigError(f"{fname}: [{section}] {key}: {msg}")

    _validate_imap(cfg, fname)

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
    if not 5 <= cfg.delivery.lease_seconds <= 86400:
        err("delivery", "lease_seconds", "must be between 5 and 86400")
    if cfg.policy.auth_mode not in ("off", "upstream", "verify"):
        err("policy", "auth_mode", "must be 'off', 'upstream' or 'verify'")
    if cfg.policy.auth_mode == "upstream" and not cfg.policy.trusted_authserv_ids:
        err("policy", "trusted_authserv_ids", "auth_mode 'upstream' needs the authserv-id(s) "
            "of the practice's own MTA")
    if cfg.policy.reply_within_hours <= 0:
        err("policy", "reply_within_hours", "must be positive")
    for key in ("drain_seconds", "retention_days", "outbox_stuck_minutes"):
        if getattr(cfg.gateway, key) < 0:
            err("gateway", key, "must not be negative")
    if len(cfg.gateway.separator) != 1:
        err("gateway", "separator", "must be a single character")
    if not all(isinstance(s, str) and len(s) == 2 for s in cfg.policy.allowed_states):
        err("policy", "allowed_states", "expected two-letter state codes")


# [smtp] limits: key -> (lowest, highest) allowed value.
SMTP_LIMIT_RANGES = {
    "max_line_length": (1000, 1_000_000), "max_command_length": (512, 4096),
    "max_header_bytes": (4096, 10 * 1024 * 1024), "max_mime_depth": (2, 100),
    "max_mime_parts": (2, 100_000), "max_received_headers": (5, 500),
    "session_deadline_seconds": (1, 86400), "session_timeout_seconds": (1, 3600),
    "max_sessions": (1, 100_000), "max_sessions_per_ip": (1, 100_000),
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
        acct = _build_section(section, ImapAccount, raw, fname)
        _validate_imap_account(cfg, acct, f"{fname}: [{section}]")
        if any(a.name == acct.name for a in accounts):
            raise ConfigError(f"{fname}: [{section}] name: duplicate account name")
        accounts.append(acct)
    cfg.imap.accounts = accounts
    folders = {}
    for name, raw in cfg.imap.folders.items():
        section = f"imap.folders.{name}"
        target = _build_section(section, ImapFolder, raw, fname)
        if cfg.imap.account(target.account) is None:
            raise ConfigError(f"{fname}: [{section}] account: no [[imap.accounts]] named "
                              f"{target.account!r}")
        if not target.folder:
            raise ConfigError(f"{fname}: [{section}] folder: must not be empty")
        folders[name.lower()] = target
    cfg.imap.folders = folders


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG).absolute()


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Read and validate a config file; `overrides` (section -> dict) is merged on top."""
    p = config_path(str(path) if path else None)
    fname = str(p)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{fname}: file not found (copy config.example.toml)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{fname}: {e}") from None
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    return build_config(raw, p)


def build_config(raw: dict, path: Path) -> Config:
    """Validate parsed TOML; `path` is where it came from (relative paths start there)."""
    fname = str(path)
    for section in raw:
        if section not in SECTIONS:
            raise ConfigError(f"{fname}: [{section}]: unknown section "
                              f"(known: {', '.join(SECTIONS)})")
    built = {name: _build_section(name, cls, raw.get(name, {}), fname)
             for name, cls in SECTIONS.items()}
    cfg = Config(path=path, **built)
    _validate(cfg, fname)
    return cfg
