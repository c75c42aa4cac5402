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
    """A problem with the configuration, naming file and field.  `problems` lists every
    problem found (check-config shows them all at once); the message joins them."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


def _collect(problems: list[str], fn, *args):
    """fn(*args), or None with its ConfigError's problems added to PROBLEMS."""
    try:
        return fn(*args)
    except ConfigError as e:
        problems.extend(e.problems)
        return None


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
    quarantine_max_bytes: int = 256 * 1024 * 1024  # raw bytes held in the quarantine at most
    quarantine_days: int = 30  # held messages' raw bytes are dropped this long after
    workers: int = 1  # serve: processes sharing the SMTP listeners (gateway.workers)


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
    max_mime_parts: int = 1000
    content_cpu_seconds: float = 5.0  # CPU for one message's content steps; more: 554 5.6.0
    max_received_headers: int = 30  # more: a mail loop (554 5.4.6)
    session_deadline_seconds: float = 1200.0  # whole session, however busy
    max_sessions: int = 100  # concurrent sessions per listener
    max_sessions_per_ip: int = 20
    max_sessions_per_network: int = 30  # per IPv4 /24 or IPv6 /64
    pre_mail_timeout_seconds: float = 30.0  # idle before the first MAIL: 421
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
    ops_host: str = "127.0.0.1"  # /healthz and /metrics listen apart from /enroll
    ops_port: int = 8026


@dataclass
class SecuritySection:
    key_file: str = ""  # empty: portal-gateway.key beside the data dir (SQLite: made on start)
    keys: str = ""  # or the keys themselves, "env:NAME" (base64, comma-separated, last current)


@dataclass
class DeliverySection:
    mode: str = "maildir"  # maildir | relay
    maildir_dir: str = ""  # empty: <data dir>/maildir
    poll_seconds: float = 1.0
    max_age_hours: float = 72.0
    retry_base_seconds: float = 60.0
    lease_seconds: float = 30.0  # a dead worker's claim is retried after this
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
    bounce_token_days: float = 14.0  # a VERP bounces+TOKEN address is refused after this


@dataclass
class PracticeSection:
    name: str = "Example Women's Health"
    office_phone: str = "(555) 010-0100"
    office_hours: str = "Monday to Friday, 8 a.m. to 5 p.m."
    # office_hours in other languages (ISO 639-1 code -> words); English words otherwise
    office_hours_by_language: dict = field(default_factory=dict)
    after_hours_line: str = "(555) 010-0199"
    after_hours_name: str = "Example Community Hospital"
    timezone: str = "America/Los_Angeles"


@dataclass
class PolicySection:
    allowed_states: list = field(default_factory=lambda: ["CA"])
    reply_within_hours: float = 72.0
    urgent_reply_minutes: float = 60.0  # an emergency thread is due this soon
    reminder_offsets_hours: list = field(default_factory=lambda: [24, 4])
    auth_mode: str = "off"  # off | upstream | verify
    require_aligned_auth: bool = False
    trusted_authserv_ids: list = field(default_factory=list)
    trusted_received_hosts: list = field(default_factory=list)  # empty: trusted_authserv_ids
    dns_servers: list = field(default_factory=list)  # empty: the system's resolvers
    dns_timeout_seconds: float = 5.0
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
    # the category of each kind, for proxies: a proxy gets a copy of a notification whose
    # kind maps to a category within its scope (an unmapped kind goes to no proxy)
    categories: dict = field(default_factory=lambda: {
        "lab_result": "results", "radiology_result": "results",
        "appointment_reminder": "appointment", "statement": "billing",
        "surgery_scheduling": "surgery"})
    # kinds about confidential care: never to a proxy of a patient aged 12-17
    confidential_kinds: list = field(default_factory=list)


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
    "notifications": NotificationsSection, "imap": ImapSection, "security": SecuritySection,
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
    security: SecuritySection

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

    @property
    def key_file(self) -> Path:
        if self.security.key_file:
            return self.resolve(self.security.key_file)
        return self.data_dir.parent / "portal-gateway.key"

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


def build_section(name: str, cls, raw: dict, fname: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{fname}: [{name}]: expected a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values, problems = {}, []
    for key, value in raw.items():
        where = f"{fname}: [{name}] {key}"
        if key not in known:
            problems.append(f"{where}: unknown key (known: {', '.join(sorted(known))})")
            continue
        try:
            values[key] = _coerce(value, hints[key], where)
        except ConfigError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError("\n".join(problems), problems)
    return cls(**values)


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
    problems = [f"{fname}: [{section}]: unknown section (known: {', '.join(SECTIONS)})"
                for section in raw if section not in SECTIONS]
    built = {}
    for name, cls in SECTIONS.items():  # a bad section counts as defaults, to go on checking
        built[name] = _collect(problems, build_section, name, cls, raw.get(name, {}),
                               fname) or cls()
    cfg = Config(path=path, **built)
    from gateway.config_checks import validate  # the checks need the classes above
    _collect(problems, validate, cfg, fname)
    if problems:
        error = ConfigError("\n".join(problems), problems)
        error.config = cfg  # what could be read, so check-config can go on to rules
        raise error
    return cfg
