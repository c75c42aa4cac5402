"""Every mail the gateway writes, rendered from ``templates/mail/`` (Jinja2).

A mail template is a text file: a ``Subject:`` line, a blank line, then the body.  An optional
``NAME.html`` beside ``NAME.txt`` adds an HTML alternative (autoescaped).  Undefined variables
are errors (StrictUndefined).  Patient-facing templates may use only ``PATIENT_VARIABLES``;
``check-config`` renders each template with sample data and enforces that list.
Header values never carry CR or LF, whatever the variables hold.
"""
from __future__ import annotations

import datetime as dt
import email.utils
from email.message import EmailMessage
from pathlib import Path

import jinja2
from jinja2 import meta

# What a patient-facing mail may contain.
PATIENT_VARIABLES = frozenset({
    "patient_name", "portal_url", "practice_name", "office_phone", "office_hours",
    "after_hours_line", "after_hours_name", "due", "removed_files", "enroll_link",
    "expires", "suspend_reason",
})
# Templates whose mail goes to staff or ops.  Every other template is patient-facing
# (a new template is held to the allow-list unless it is named here).
STAFF_TEMPLATES = frozenset({
    "staff_copy", "undeliverable_staff", "reminder", "escalation", "security_alert",
    "abuse_alert",
})
# The staff answer relayed to a patient carries the staff member's own words.
EXTRA_VARIABLES = {"staff_answer": frozenset({"answer", "subject"})}


def is_patient_template(name: str) -> bool:
    return name not in STAFF_TEMPLATES


def allowed_variables(name: str) -> frozenset:
    return PATIENT_VARIABLES | EXTRA_VARIABLES.get(name, frozenset())


class TemplateError(Exception):
    pass


def one_line(value: str) -> str:
    return " ".join(str(value).replace("\r", " ").replace("\n", " ").split())


class Notices:
    def __init__(self, templates_dir: Path):
        self.dir = Path(templates_dir)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.dir)),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
            keep_trailing_newline=True,
        )

    def names(self) -> list[str]:
        return sorted(p.stem for p in (self.dir / "mail").glob("*.txt"))

    def variables(self, name: str) -> set[str]:
        found: set[str] = set()
        for ext in ("txt", "html"):
            path = self.dir / "mail" / f"{name}.{ext}"
            if path.exists():
                ast = self.env.parse(path.read_text(encoding="utf-8"))
                found |= meta.find_undeclared_variables(ast)
        return found

    def render(self, name: str, **context) -> tuple[str, str, str | None]:
        """(subject, text, html or None) for template NAME."""
        try:
            text = self.env.get_template(f"mail/{name}.txt").render(**context)
            html_path = self.dir / "mail" / f"{name}.html"
            html = (self.env.get_template(f"mail/{name}.html").render(**context)
                    if html_path.exists() else None)
        except jinja2.TemplateError as e:
            raise TemplateError(f"templates/mail/{name}: {e}") from e
        head, _, body = text.partition("\n\n")
        if not head.lower().startswith("subject:"):
            raise TemplateError(f"templates/mail/{name}.txt: first line must be 'Subject: ...'")
        return one_line(head[len("subject:"):]), body, html

    def build(self, name: str, *, sender: str, to: str, domain: str,
              headers: dict | None = None, **context) -> EmailMessage:
        subject, text, html = self.render(name, **context)
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc))
        msg["Message-ID"] = email.utils.make_msgid(domain=domain)
        for key, value in (headers or {}).items():
            msg[key] = one_line(value)
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        return msg
