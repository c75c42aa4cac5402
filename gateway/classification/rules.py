"""Loading and validating the rule files (``rules/*.toml``)."""
from __future__ import annotations

import dataclasses
import pathlib
import re
import tomllib

from .model import CATEGORIES, FLAGS, Rule, RuleError, Settings
from .text import Term, TermSet, pattern_terms, phrase_term

RULE_KEYS = {"id", "category", "weight", "reason", "phrases", "patterns",
             "requires", "requires_patterns", "except", "negatable", "subject", "situation",
             "pin", "flag", "second_opinion", "child_counts"}
SITUATION_KEYS = {"description", "phrases", "patterns"}
REQUIRED_KEYS = ("id", "category", "weight", "reason")
TOP_KEYS = {"rule", "settings", "context", "situation", "translation"}
TRANSLATION_KEYS = {"rule", "situation", "lang", "phrases", "requires"}
LANG_RE = re.compile(r"^[a-z]{2,3}$")
SETTING_KEYS = {f.name for f in dataclasses.fields(Settings)} - {"context"}
BOOL_SETTINGS = {"model", "unread_language_urgent"}
ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_WEIGHT = 100.0


def load_rules(rules_dir: pathlib.Path) -> tuple[list[Rule], Settings]:
    """Read every ``*.toml`` in *rules_dir* (sorted by name) and validate it."""
    rules_dir = pathlib.Path(rules_dir)
    if not rules_dir.is_dir():
        raise RuleError(str(rules_dir), "rules directory not found")
    # confidential.toml holds markers, unread.toml danger words, not category rules
    # (classification.confidential, classification.danger)
    files = sorted(p for p in rules_dir.glob("*.toml")
                   if p.name not in ("confidential.toml", "unread.toml"))
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    overrides: dict = {}
    context: dict = {}
    situations: dict = {}
    translations: list = []
    for path in files:
        data = _read_toml(path)
        name = str(path)
        unknown = set(data) - TOP_KEYS
        if unknown:
            raise RuleError(name, f"unknown top-level key(s): {', '.join(sorted(unknown))} "
                            "(expected [[rule]], [settings], [context], [situation.NAME], "
                            "[[translation]])")
        translations.extend(_translation_tables(name, data.get("translation", [])))
        situations.update(_situation_tables(name, data.get("situation", {}), situations))
        overrides.update(_settings_table(name, data.get("settings", {}), overrides))
        context.update(_context_table(name, data.get("context", {}), context))
        for rule in _rule_tables(name, data.get("rule", [])):
            if rule.id in seen:
                raise RuleError(name, f"duplicate rule id (already defined in {seen[rule.id]})",
                                rule.id)
            seen[rule.id] = name
            rules.append(rule)
    rules = _translated(rules, situations, translations)
    shared: dict = {}
    rules = [_with_situation(rule, situations, shared) for rule in rules]
    if not rules:
        raise RuleError(str(rules_dir), "no rules found (expected *.toml files with [[rule]])")
    settings = Settings(**overrides)
    if context:
        settings = dataclasses.replace(settings, context={**settings.context, **context})
    return rules, settings


def _read_toml(path: pathlib.Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(str(path), f"not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(str(path), f"cannot read: {exc}") from None


def _settings_table(name: str, table, already: dict) -> dict:
    if not isinstance(table, dict):
        raise RuleError(name, "[settings] must be a table")
    out = {}
    for key, value in table.items():
        if key not in SETTING_KEYS:
            raise RuleError(name, f"[settings]: unknown key {key!r} "
                            f"(known: {', '.join(sorted(SETTING_KEYS))})")
        if key in already:
            raise RuleError(name, f"[settings]: {key!r} is set in more than one file")
        if key in BOOL_SETTINGS:
            if not isinstance(value, bool):
                raise RuleError(name, f"[settings]: {key!r} must be true or false")
            out[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise RuleError(name, f"[settings]: {key!r} must be a number >= 0")
        out[key] = float(value)
    return out


def _situation_tables(name: str, tables, already: dict) -> dict:
    """``[situation.pregnancy]`` tables: named lists of phrases/patterns rules can require."""
    if not isinstance(tables, dict):
        raise RuleError(name, "[situation.NAME] must be tables")
    out = {}
    for key, table in tables.items():
        label = f"[situation.{key}]"

        def fail(msg: str, label=label):
            raise RuleError(name, f"{label}: {msg}")

        if key in already:
            fail("is defined in more than one file")
        if not ID_RE.match(key) or not isinstance(table, dict):
            fail("must be a table named in lower-case kebab-case")
        unknown = set(table) - SITUATION_KEYS
        if unknown:
            fail(f"unknown field(s): {', '.join(sorted(unknown))} "
                 f"(known: {', '.join(sorted(SITUATION_KEYS))})")
        terms = _compile_terms(table, ("phrases", "patterns"), fail)
        if terms is None:
            fail("needs at least one entry in 'phrases' or 'patterns'")
        out[key] = (name, terms)
    return out


def _translation_tables(name: str, tables) -> list[tuple]:
    """``[[translation]]`` tables: more phrases, in another language, for a rule or a
    situation defined elsewhere (e.g. rules/lang-pt.toml, owned by a translator)."""
    if not isinstance(tables, list):
        raise RuleError(name, "'translation' must be written as [[translation]] tables")
    out = []
    for i, table in enumerate(tables, 1):
        def fail(msg: str, i=i):
            raise RuleError(name, f"[[translation]] #{i}: {msg}")

        if not isinstance(table, dict):
            fail("is not a table")
        unknown = set(table) - TRANSLATION_KEYS
        if unknown:
            fail(f"unknown field(s): {', '.join(sorted(unknown))} "
                 f"(known: {', '.join(sorted(TRANSLATION_KEYS))})")
        if ("rule" in table) == ("situation" in table):
            fail("names either a 'rule' or a 'situation' (one of the two)")
        if not isinstance(table.get("lang"), str) or not LANG_RE.match(table["lang"]):
            fail("'lang' must be a language code such as \"pt\"")
        if "requires" in table and "rule" not in table:
            fail("'requires' is only for a rule")
        phrases = _compile_terms(table, ("phrases",), fail)
        if phrases is None:
            fail("needs at least one entry in 'phrases'")
        requires = _compile_terms(table, ("requires",), fail)
        target = ("rule", table["rule"]) if "rule" in table else ("situation", table["situation"])
        out.append((name, i, target, phrases.terms, requires.terms if requires else ()))
    return out


def _translated(rules: list[Rule], situations: dict, translations: list) -> list[Rule]:
    """Rules and situations with the phrases of their translations added."""
    by_id = {rule.id: rule for rule in rules}
    for name, i, (kind, key), phrases, requires in translations:
        if kind == "situation":
            if key not in situations:
                raise RuleError(name, f"[[translation]] #{i}: unknown situation {key!r}")
            source, terms = situations[key]
            situations[key] = (source, TermSet(terms.terms + tuple(phrases)))
            continue
        rule = by_id.get(key)
        if rule is None:
            raise RuleError(name, f"[[translation]] #{i}: unknown rule {key!r}")
        more_requires = rule.requires
        if requires:
            if rule.requires is None:
                raise RuleError(name, f"[[translation]] #{i}: rule {key!r} has no 'requires'")
            more_requires = TermSet(rule.requires.terms + tuple(requires))
        by_id[key] = dataclasses.replace(rule, terms=TermSet(rule.terms.terms + tuple(phrases)),
                                         requires=more_requires)
    return [by_id[rule.id] for rule in rules]


def _with_situation(rule: Rule, situations: dict, shared: dict) -> Rule:
    if not rule.situation_names:
        return rule
    if rule.situation_names in shared:  # one TermSet per list of names: matched once per text
        return dataclasses.replace(rule, situation=shared[rule.situation_names])
    terms = []
    for key in rule.situation_names:
        if key not in situations:
            known = ", ".join(sorted(situations)) or "none defined"
            raise RuleError(rule.source, f"unknown situation {key!r} (known: {known})", rule.id)
        terms.extend(situations[key][1].terms)
    shared[rule.situation_names] = TermSet(terms)
    return dataclasses.replace(rule, situation=shared[rule.situation_names])


def _context_table(name: str, table, already: dict) -> dict:
    if not isinstance(table, dict):
        raise RuleError(name, "[context] must be a table of notification kind = category")
    for kind, category in table.items():
        if kind in already:
            raise RuleError(name, f"[context]: kind {kind!r} is set in more than one file")
        if category not in CATEGORIES:
            raise RuleError(name, f"[context]: kind {kind!r}: unknown category {category!r}")
    return dict(table)


def _rule_tables(name: str, tables) -> list[Rule]:
    if not isinstance(tables, list):
        raise RuleError(name, "'rule' must be written as [[rule]] tables")
    return [_build_rule(name, i, t) for i, t in enumerate(tables, 1)]


def _build_rule(name: str, index: int, table) -> Rule:
    if not isinstance(table, dict):
        raise RuleError(name, f"rule #{index} is not a table")
    rid = table.get("id")
    label = rid if isinstance(rid, str) and rid else f"#{index}"

    def fail(msg: str):
        raise RuleError(name, msg, label)

    for key in REQUIRED_KEYS:
        if key not in table:
            fail(f"missing required field {key!r}")
    unknown = set(table) - RULE_KEYS
    if unknown:
        fail(f"unknown field(s): {', '.join(sorted(unknown))} "
             f"(known: {', '.join(sorted(RULE_KEYS))})")
    if not isinstance(rid, str) or not ID_RE.match(rid):
        fail("id must be lower-case kebab-case, e.g. 'emergency-heavy-bleeding'")
    if table["category"] not in CATEGORIES:
        fail(f"unknown category {table['category']!r} (known: {', '.join(CATEGORIES)})")
    weight = table["weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
            or not 0 < weight <= MAX_WEIGHT:
        fail(f"weight must be a number above 0 and at most {MAX_WEIGHT:g}, got {weight!r}")
    if not isinstance(table["reason"], str) or not table["reason"].strip():
        fail("reason must be a non-empty text")
    for key in ("negatable", "subject", "pin", "second_opinion", "child_counts"):
        if key in table and not isinstance(table[key], bool):
            fail(f"{key!r} must be true or false")
    situation = table.get("situation", [])
    if isinstance(situation, str):
        situation = [situation]
    if not isinstance(situation, list) or not all(isinstance(x, str) for x in situation):
        fail("'situation' must be a name or a list of names of [situation.NAME] tables")
    flag = table.get("flag")
    if flag is not None and flag not in FLAGS:
        fail(f"unknown flag {flag!r} (known: {', '.join(FLAGS)})")
    if flag is not None and table.get("pin"):
        fail("a rule is either a flag or a pin, not both")
    if table.get("second_opinion") is False and (table["category"] != "emergency" or flag):
        fail("'second_opinion = false' is only for red-flag rules (category emergency, no flag)")
    matcher = _compile_terms(table, ("phrases", "patterns"), fail)
    if matcher is None:
        fail("needs at least one entry in 'phrases' or 'patterns'")
    return Rule(
        id=rid, category=table["category"], weight=float(weight),
        reason=table["reason"].strip(), source=name, terms=matcher,
        requires=_compile_terms(table, ("requires", "requires_patterns"), fail),
        excepts=_compile_terms(table, ("except",), fail),
        negatable=table.get("negatable", table["category"] == "emergency"),
        subject=table.get("subject", True), situation_names=tuple(situation),
        pin=table.get("pin", False), flag=flag,
        second_opinion=table.get("second_opinion", True),
        child_counts=table.get("child_counts", False),
    )


def _compile_terms(table: dict, keys: tuple[str, ...], fail) -> TermSet | None:
    terms: list[Term] = []
    for key in keys:
        items = table.get(key, [])
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            fail(f"{key!r} must be a list of texts")
        for item in items:
            terms.extend(_terms(key, item, fail))
    return TermSet(terms) if terms else None


def _terms(key: str, item: str, fail) -> list[Term]:
    if not key.endswith("patterns"):
        try:
            return [phrase_term(item)]
        except ValueError as exc:
            fail(f"{key!r}: {exc}")
    if not item.strip():
        fail(f"{key!r}: empty regular expression")
    try:
        compiled = re.compile(item)
    except re.error as exc:
        fail(f"bad regular expression {item!r} in {key!r}: {exc}")
    if compiled.search(""):
        fail(f"regular expression {item!r} in {key!r} matches empty text")
    return pattern_terms(item)
