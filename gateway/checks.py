"""check-config: config, rules and templates, each problem naming its file and field."""
from __future__ import annotations


from gateway.notices import Notices, TemplateError, allowed_variables, is_patient_template

SAMPLE = {
    "patient_name": "Ana Sample", "portal_url": "https://portal.example.org",
    "practice_name": "Example Practice", "office_phone": "(555) 010-0100",
    "office_hours": "Mon-Fri 8-5", "after_hours_line": "(555) 010-0199",
    "after_hours_name": "Example Hospital", "due": "Wednesday at 10:00 AM",
    "removed_files": ["scan.pdf"], "enroll_link": "https://portal.example.org/enroll?token=x",
    "expires": "December 9", "suspend_reason": "sample reason",
    # staff-facing only
    "subject_prefix": "[Portal: other]", "subject": "Sample", "urgent": False,
    "patient_urgent": False, "decided_by": "model", "model_words": "sample",
    "category": "other", "text": "Sample text", "history": "", "account_number": "1001",
    "rules": "none", "bounces": 3, "answer": "Sample answer", "kind": "lab_result",
    "detail": "dmarc-reject", "sha256": "0" * 64, "source": "smtp", "refused": True,
}


def check_rules(cfg) -> list[str]:
    from gateway.classification import Classifier, RuleError
    try:
        Classifier.load(cfg.rules_dir)
    except RuleError as e:
        return [str(e)]
    except OSError as e:
        return [f"{cfg.rules_dir}: {e}"]
    return []


def check_templates(cfg) -> list[str]:
    notices = Notices(cfg.templates_dir)
    problems = []
    if not (cfg.templates_dir / "mail").is_dir():
        return [f"{cfg.templates_dir / 'mail'}: folder missing"]
    for name in notices.names():
        where = f"{cfg.templates_dir / 'mail' / name}.txt"
        if is_patient_template(name):
            extra = sorted(notices.variables(name) - allowed_variables(name))
            if extra:
                problems.append(f"{where}: patient-facing template uses variable(s) not "
                                f"allowed: {', '.join(extra)}")
                continue
        try:
            notices.render(name, **SAMPLE)
        except TemplateError as e:
            problems.append(f"{where}: {e}")
    return problems


def check_all(cfg) -> list[str]:
    return check_rules(cfg) + check_templates(cfg)
