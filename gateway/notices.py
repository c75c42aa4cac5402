"""Every mail the gateway writes, rendered from ``templates/mail/`` (Jinja2).

A mail template is a text file: a ``Subject:`` line, a blank line, then the body, one line
per paragraph (wrapping is the transport's job: the text goes out quoted-printable).
English lives in ``templates/mail/NAME.txt``; another language in
``templates/mail/<lang>/NAME.txt`` (ISO 639-1), with English as the fallback.  A
patient-facing mail gets an HTML alternative built from the same text (gateway.mail_html),
never a second hand-written template.  Datetime values are written in the mail's language
(Babel) in the practice's time zone.  Undefined variables are errors (StrictUndefined).
Patient-facing templates may use only ``PATIENT_VARIABLES``; ``check-config`` renders each
template with sample data and enforces that list, and that every locale has the same
templates with the same variables as English.
Header values never carry CR or LF, whatever the variables hold.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import io
import secrets
from email.generator import BytesGenerator
from email.message import EmailMessage
from pathlib import Path

import re
from email.policy import EmailPolicy

import jinja2
from jinja2 import meta

from gateway import mail_bytes, mail_html
from gateway.clock import human

# What a patient-facing mail may contain.
PATIENT_VARIABLES = frozenset({
    "patient_name", "portal_url", "practice_name", "office_phone", "office_hours",
    "after_hours_line", "after_hours_name", "due", "removed_files", "removed_more",
    "removed_count", "enroll_link",
    "expires", "suspend_reason",
})
# Templates whose mail goes to staff or ops.  Every other template is patient-facing
# (a new template is held to the allow-list unless it is named here).
STAFF_TEMPLATES = frozenset({
    "staff_copy", "undeliverable_staff", "reminder", "escalation", "security_alert",
    "abuse_alert", "held_answer",
})
# The staff answer relayed to a patient carries the staff member's own words.
EXTRA_VARIABLES = {"staff_answer": frozenset({"answer", "subject"}),
                   # the acknowledgement names the patient's own (sanitised) subject
                   "ack": frozenset({"subject", "message_ref"}),
                   "emergency": frozenset({"subject", "message_ref"}),
                   "ack_proxy_outside": frozenset({"subject", "message_ref"})}
# Context values the gateway itself wrote, turned into links in the HTML alternative.
LINK_VARIABLES = ("portal_url", "enroll_link")
BILINGUAL_JOIN = " / "


def is_patient_template(name: str) -> bool:
    return name not in STAFF_TEMPLATES


def allowed_variables(name: str) -> frozenset:
    return PATIENT_VARIABLES | EXTRA_VARIABLES.get(name, frozenset())


# Header values the gateway writes itself and only copies (ids, dates, our addresses,
# fixed words): printable ASCII, single spaces, no encoded words, short enough never to
# be folded.  Such a value is kept as the text it is; the serialised mail is byte-for-byte
# what a parsed header object would give, without building one.
_PLAIN_VALUE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*\Z")
_PARSED_ALWAYS = frozenset({"from", "to", "cc", "bcc", "sender", "subject"})


_MAX_COUNT: dict[str, int | None] = {}
_PARSED: dict[tuple[str, str], object] = {}  # header objects are immutable
_STORED: dict[tuple[str, str], tuple] = {}  # (name, value) -> (name, header object)
_PARSED_LIMIT = 4096


class CopiedHeaders(EmailPolicy):
    """``policy.default``, except that plain header values are stored as they are, and
    what the library asks again and again (a header's maximum count, the parsed form of
    a value such as ``text/plain; charset="utf-8"``) is worked out once."""

    def header_max_count(self, name):
        key = name.lower()
        if key not in _MAX_COUNT:  # the registry builds a new class on every look-up
            _MAX_COUNT[key] = super().header_max_count(name)
        return _MAX_COUNT[key]

    def header_fetch_parse(self, name, value):
        if not isinstance(value, str) or hasattr(value, "name") or "\n" in value \
                or "\r" in value:
            return super().header_fetch_parse(name, value)
        key = (name.lower(), value)
        found = _PARSED.get(key)
        if found is None or found.name != name:
            found = super().header_fetch_parse(name, value)
            if len(_PARSED) >= _PARSED_LIMIT:
                _PARSED.clear()
            _PARSED[key] = found
        return found

    def header_store_parse(self, name, value):
        if not isinstance(value, str) or hasattr(value, "name"):
            return super().header_store_parse(name, value)
        if ("=?" not in value and len(name) + 2 + len(value) <= 78
                and name.lower() not in _PARSED_ALWAYS and _PLAIN_VALUE.match(value)):
            return (name, value)
        key = (name, value)  # the same From or To again: the header object made before
        found = _STORED.get(key)
        if found is None:
            found = super().header_store_parse(name, value)
            if len(_STORED) >= _PARSED_LIMIT:
                _STORED.clear()
            _STORED[key] = found
        return found

    def fold_binary(self, name, value):
        """A header object (kept in the caches above, so From and To are the same object
        mail after mail) is folded once; its folded form is kept on it."""
        if self is not OUTBOUND or not hasattr(value, "name"):
            return super().fold_binary(name, value)
        folded = value.__dict__.get("_portal_folded")
        if folded is None or folded[0] != name:
            folded = (name, super().fold_binary(name, value))
            value.__dict__["_portal_folded"] = folded
        return folded[1]


OUTBOUND = CopiedHeaders()


class _Generator(BytesGenerator):
    """The library's generator, except for the multipart boundary: fifteen "=" and 20
    random digits, which no quoted-printable or base64 body can contain (an "=" in such
    a body is always "=3D" or padding), so the body needs no search for it (the library
    compiles a new regular expression for every boundary)."""

    @classmethod
    def _make_boundary(cls, text=None):
        return "=" * 15 + f"{secrets.randbits(64):020d}" + "=="


def as_bytes(msg: EmailMessage) -> bytes:
    """A mail built by `Notices.build` (quoted-printable parts only), serialised."""
    out = io.BytesIO()
    _Generator(out, mangle_from_=False, policy=msg.policy).flatten(msg, unixfrom=False)
    return out.getvalue()


class TemplateError(Exception):
    pass


def one_line(value: str) -> str:
    return " ".join(str(value).replace("\r", " ").replace("\n", " ").split())


class PerLanguage(dict):
    """A context value worded per language ({'en': ..., 'es': ...}); a language without
    its own words gets the English ones."""

    def in_language(self, lang: str) -> str:
        return self.get(lang) or self.get("en", "")

    def __str__(self) -> str:
        return self.in_language("en")


def localize(context: dict, lang: str, timezone: str) -> dict:
    """CONTEXT for a mail or page in LANG: datetimes in words, PerLanguage values chosen."""
    def one(v):
        if isinstance(v, dt.datetime):
            return human(v, timezone, lang)
        return v.in_language(lang) if isinstance(v, PerLanguage) else v
    return {k: one(v) for k, v in context.items()}


def _join_subjects(subjects: list[str]) -> str:
    """'A - Practice', 'B - Practice' -> 'A / B - Practice'."""
    subjects = list(dict.fromkeys(subjects))
    tails = {s.rpartition(" - ")[2] for s in subjects}
    if len(subjects) > 1 and len(tails) == 1 and all(" - " in s for s in subjects):
        tail = tails.pop()
        return BILINGUAL_JOIN.join(s.rpartition(" - ")[0] for s in subjects) + " - " + tail
    return BILINGUAL_JOIN.join(subjects)


class Notices:
    def __init__(self, templates_dir: Path, timezone: str = "UTC"):
        self.dir = Path(templates_dir)
        self.timezone = timezone
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.dir)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            auto_reload=False,  # compiled once; `reload` builds a new Notices
        )
        self._names: dict[tuple[str, str], str] = {}  # (name, lang) -> loader name

    def names(self, lang: str = "en") -> list[str]:
        folder = self.dir / "mail" if lang == "en" else self.dir / "mail" / lang
        return sorted(p.stem for p in folder.glob("*.txt"))

    def locales(self) -> list[str]:
        """Languages with their own folder under templates/mail/ (English not included)."""
        return sorted(p.name for p in (self.dir / "mail").iterdir()
                      if p.is_dir() and len(p.name) == 2)

    def _template_name(self, name: str, lang: str) -> str:
        """The loader's name of `path` (found once: templates change only by a reload,
        which makes a new Notices)."""
        key = (name, lang)
        rel = self._names.get(key)
        if rel is None:
            rel = self._names[key] = self.path(name, lang).relative_to(self.dir).as_posix()
        return rel

    def path(self, name: str, lang: str = "en") -> Path:
        """The template file for NAME in LANG, or the English one when LANG has none."""
        local = self.dir / "mail" / lang / f"{name}.txt"
        return local if lang != "en" and local.is_file() else self.dir / "mail" / f"{name}.txt"

    def variables(self, name: str, lang: str = "en") -> set[str]:
        ast = self.env.parse(self.path(name, lang).read_text(encoding="utf-8"))
        return set(meta.find_undeclared_variables(ast))

    def _localize(self, context: dict, lang: str) -> dict:
        return localize(context, lang, self.timezone)

    def render(self, name: str, lang: str = "en", **context) -> tuple[str, str, str | None]:
        """(subject, text, html or None) for template NAME in LANG."""
        rel = self._template_name(name, lang)
        try:
            text = self.env.get_template(rel).render(**self._localize(context, lang))
        except jinja2.TemplateError as e:
            raise TemplateError(f"templates/mail/{name} ({lang}): {e}") from e
        head, _, body = text.partition("\n\n")
        if not head.lower().startswith("subject:"):
            raise TemplateError(f"{rel}: first line must be 'Subject: ...'")
        html = (mail_html.document([(lang, body)], self._links(context))
                if is_patient_template(name) else None)
        return one_line(head[len("subject:"):]), body, html

    @staticmethod
    def _links(context: dict) -> list[str]:
        return [str(context[k]) for k in LINK_VARIABLES if context.get(k)]

    def render_many(self, name: str, languages: list[str], **context):
        """One mail in several languages, each complete, in the order given: subjects
        joined by ' / ', texts one after the other, one HTML document with a part each."""
        parts = [(lang, *self.render(name, lang, **context)[:2]) for lang in languages]
        subject = _join_subjects([p[1] for p in parts])
        text = "\n\n* * *\n\n".join(p[2].rstrip("\n") for p in parts) + "\n"
        html = (mail_html.document([(p[0], p[2]) for p in parts], self._links(context))
                if is_patient_template(name) else None)
        return subject, text, html

    def _render_for(self, name: str, lang: str | list[str], context: dict):
        """(languages, subject, text, html) of template NAME in LANG (one or several)."""
        languages = [lang] if isinstance(lang, str) else list(lang)
        subject, text, html = (self.render(name, languages[0], **context)
                               if len(languages) == 1
                               else self.render_many(name, languages, **context))
        return languages, subject, text, html

    def build(self, name: str, *, sender: str, to: str, domain: str,
              headers: dict | None = None, lang: str | list[str] = "en",
              **context) -> EmailMessage:
        return self._message(name, *self._render_for(name, lang, context), sender=sender,
                             to=to, domain=domain, headers=headers)

    def build_bytes(self, name: str, *, sender: str, to: str, domain: str,
                    headers: dict | None = None, lang: str | list[str] = "en",
                    **context) -> bytes:
        """``as_bytes(build(...))``, written without the message object where the mail
        has the usual shape (gateway.mail_bytes)."""
        rendered = self._render_for(name, lang, context)
        headers = headers or {}
        if mail_bytes.usable(headers):
            languages, subject, text, html = rendered
            top = [("From", sender), ("To", to), ("Subject", subject),
                   ("Date", email.utils.format_datetime(dt.datetime.now(dt.timezone.utc))),
                   ("Message-ID", email.utils.make_msgid(domain=domain)),
                   *((key, one_line(value)) for key, value in headers.items())]
            trailer = ([("Content-Language", ", ".join(languages))]
                       if is_patient_template(name) else [])
            try:
                return mail_bytes.serialise(OUTBOUND, top, text, html, trailer,
                                            _Generator._make_boundary)
            except Exception:  # the message object's way: the same bytes, or its error
                pass
        return as_bytes(self._message(name, *rendered, sender=sender, to=to,
                                      domain=domain, headers=headers))

    def _message(self, name: str, languages: list[str], subject: str, text: str,
                 html: str | None, *, sender: str, to: str, domain: str,
                 headers: dict | None) -> EmailMessage:
        msg = EmailMessage(policy=OUTBOUND)
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc))
        msg["Message-ID"] = email.utils.make_msgid(domain=domain)
        for key, value in (headers or {}).items():
            msg[key] = one_line(value)
        msg.set_content(text, cte="quoted-printable")
        if html is not None:
            msg.add_alternative(html, subtype="html", cte="quoted-printable")
        if is_patient_template(name):  # after the body: set_content drops Content-* headers
            msg["Content-Language"] = ", ".join(languages)
        return msg
