"""check-config: config, rules and templates, each problem naming its file and field."""
from __future__ import annotations


from gateway.notices import Notices, TemplateError, allowed_variables, is_patient_template

SAMPLE = {
    "patient_name": "Ana Sample", "portal_url": "https://portal.example.org",
    "practice_name": "Example Practice", "office_phone": "(555) 010-0100",
    "office_hours": "Mon-Fri 8-5", "after_hours_line": "(555) 010-0199",
    "after_hours_name": "Example Hospital", "due": "Wednesday at 10:00 AM",
    "removed_files": ["scan.pdf"], "removed_more": 0, "removed_count": 1,
    "enroll_link": "https://portal.example.org/enroll?token=x",
    "expires": "December 9", "suspend_reason": "sample reason", "message_ref": "M-1",
    # staff-facing only
    "subject_prefix": "[Portal: other]", "subject": "Sample", "urgent": False,
    "patient_urgent": False, "decided_by": "model", "model_words": "sample",
    "category": "other", "text": "Sample text", "history": "", "account_number": "1001",
    "rules": "none", "bounces": 3, "answer": "Sample answer", "kind": "lab_result",
    "detail": "dmarc-reject", "sha256": "0" * 64, "source": "smtp", "refused": True,
    "proxy_line": "Sent by Maria Sample (mother), proxy for Ana Sample",
    "outside_scope": True, "scope_reasons": "confidential:pregnancy",
    "held_reason": "outside the proxy's scope", "patient_address": "yes",
}


def check_rules(cfg) -> list[str]:
    from gateway.classification import Classifier, RuleError
    from gateway.classification.redos import check_rule_patterns
    try:
        Classifier.load(cfg.rules_dir)
    except RuleError as e:
        return [str(e)]
    except OSError as e:
        return [f"{cfg.rules_dir}: {e}"]
    return check_rule_patterns(cfg.rules_dir)  # no pattern may backtrack super-linearly


def check_templates(cfg) -> list[str]:
    notices = Notices(cfg.templates_dir)
    problems = []
    if not (cfg.templates_dir / "mail").is_dir():
        return [f"{cfg.templates_dir / 'mail'}: folder missing"]
    problems += _check_names(notices, "en", notices.names())
    for lang in notices.locales():
        problems += check_locale(cfg, notices, lang)
    return problems


def check_locale(cfg, notices: Notices, lang: str) -> list[str]:
    """A locale has every patient-facing English template, with the same variables, and
    nothing English lacks; each of its templates renders."""
    folder = cfg.templates_dir / "mail" / lang
    english = set(notices.names())
    own = set(notices.names(lang))
    problems = [f"{folder / name}.txt: missing (English has templates/mail/{name}.txt)"
                for name in sorted(english - own) if is_patient_template(name)]
    problems += [f"{folder / name}.txt: no English template templates/mail/{name}.txt"
                 for name in sorted(own - english)]
    for name in sorted(own & english):
        en_vars, own_vars = notices.variables(name), notices.variables(name, lang)
        if en_vars != own_vars:
            diff = sorted(en_vars ^ own_vars)
            problems.append(f"{folder / name}.txt: variables differ from English: "
                            f"{', '.join(diff)}")
    return problems + _check_names(notices, lang, sorted(own & english))


def _check_names(notices: Notices, lang: str, names) -> list[str]:
    problems = []
    for name in names:
        where = str(notices.path(name, lang))
        if is_patient_template(name):
            extra = sorted(notices.variables(name, lang) - allowed_variables(name))
            if extra:
                problems.append(f"{where}: patient-facing template uses variable(s) not "
                                f"allowed: {', '.join(extra)}")
                continue
        try:
            notices.render(name, lang, **SAMPLE)
        except TemplateError as e:
            problems.append(f"{where}: {e}")
    return problems


# Pages that serve every language from the one template (their words are in
# gateway.enrollment.wording.PAGE_TEXT); a language folder may still hold its own copy.
ONE_TEMPLATE_PAGES = {"enroll.html"}


def check_pages(cfg) -> list[str]:
    """Each language folder under templates/pages/ has every English page (but those
    worded from PAGE_TEXT, which must know the language), nothing more, and terms with the
    same version as the English terms."""
    import jinja2

    from gateway.enrollment.wording import PAGE_TEXT
    pages = cfg.templates_dir / "pages"
    english = {p.name for p in pages.glob("*.html")} - {"base.html"}
    problems = []
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(cfg.templates_dir)))
    version = _terms_version(env, "pages/terms.html", problems)
    for folder in sorted(p for p in pages.iterdir() if p.is_dir()) if pages.is_dir() else ():
        own = {p.name for p in folder.glob("*.html")}
        worded = ONE_TEMPLATE_PAGES if folder.name in PAGE_TEXT else set()
        problems += [f"{folder / n}: missing (English has templates/pages/{n})"
                     for n in sorted(english - own - worded)]
        problems += [f"{folder / n}: no English page templates/pages/{n}"
                     for n in sorted(own - english - {"base.html"})]
        if "terms.html" in own:
            rel = f"pages/{folder.name}/terms.html"
            theirs = _terms_version(env, rel, problems)
            if theirs != version:
                problems.append(f"{cfg.templates_dir / rel}: terms_version {theirs!r} differs "
                                f"from the English terms ({version!r})")
    return problems


def _terms_version(env, rel: str, problems: list) -> str | None:
    try:
        module = env.get_template(rel).make_module(
            {k: v for k, v in SAMPLE.items()})
        return str(getattr(module, "terms_version", None))
    except Exception as e:  # a broken page is reported, not raised
        problems.append(f"{rel}: {e}")
        return None


def check_all(cfg) -> list[str]:
    return check_rules(cfg) + check_templates(cfg) + check_pages(cfg)
