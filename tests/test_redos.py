"""No regular expression on message content backtracks super-linearly.

Every pattern written in the content path's source (found by reading the source, so a new
one is covered the day it is written) and every compiled term of rules/*.toml scans
adversarial inputs of tens of kilobytes within a fixed, generous bound (a guard, not a
benchmark: a linear pattern needs milliseconds, a cubic one minutes).  The old CSS
``url(...)`` pattern of the HTML converter fails this guard.
"""
from __future__ import annotations

import ast
import importlib
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

from gateway.classification import Classifier
from gateway.classification.redos import check_rule_patterns, rule_patterns, vet
from tests.conftest import ROOT

CONTENT_SOURCES = ["gateway/content", "gateway/classification", "gateway/steps",
                   "gateway/auth", "gateway/smtp", "gateway/addresses.py",
                   "gateway/notifications.py", "gateway/imap/envelope.py"]
RE_FUNCS = {"compile", "search", "match", "fullmatch", "finditer", "findall", "sub",
            "subn", "split"}


def vet_in_parallel(patterns: list[tuple], size: int, seconds: float) -> list[int]:
    """`vet` on every pattern, the list dealt over one child process per core (each child
    still times each input on its own); indexes into PATTERNS, sorted."""
    ways = max(1, min(4, os.cpu_count() or 1))
    shares = [patterns[i::ways] for i in range(ways)]
    with ThreadPoolExecutor(ways) as pool:
        results = list(pool.map(lambda share: vet(share, size=size, seconds=seconds), shares))
    return sorted(i * ways + k for k, slow in enumerate(results) for i in slow)


def _files():
    for name in CONTENT_SOURCES:
        path = ROOT / name
        yield from sorted(path.glob("*.py")) if path.is_dir() else [path]


def source_patterns() -> list[tuple[str, str, int, bool]]:
    """(where, pattern, flags, is_bytes) for every literal pattern given to `re`."""
    found = []
    for path in _files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                    and node.func.attr in RE_FUNCS and node.args):
                continue
            try:
                value = ast.literal_eval(node.args[0])
            except ValueError:
                continue  # built at run time (rule terms are checked below)
            flags = 0
            flag_node = next((k.value for k in node.keywords if k.arg == "flags"), None)
            if flag_node is None and node.func.attr in ("compile",) and len(node.args) > 1:
                flag_node = node.args[1]
            if flag_node is not None:  # evaluated in the module (flags may be constants)
                module = importlib.import_module(
                    ".".join(path.relative_to(ROOT).with_suffix("").parts))
                flags = int(eval(compile(ast.Expression(flag_node), "flags", "eval"),
                                 dict(vars(module))))
            is_bytes = isinstance(value, bytes)
            text = value.decode("latin-1") if is_bytes else value
            found.append((f"{path.relative_to(ROOT)}:{node.lineno}", text, flags, is_bytes))
    return found


def test_the_source_scan_finds_the_content_patterns():
    wheres = {w.split(":")[0] for w, *_ in source_patterns()}
    assert {"gateway/content/htmltext.py", "gateway/content/inline.py",
            "gateway/content/mime.py", "gateway/classification/trim.py"} <= wheres
    assert len(source_patterns()) > 40


def test_every_content_pattern_scans_100_kb_of_adversarial_text_quickly():
    found = source_patterns()
    slow = vet_in_parallel([(p, f, b) for _, p, f, b in found], size=100_000, seconds=3.0)
    assert [found[i][:2] for i in slow] == []


def test_the_guard_catches_the_old_css_url_pattern():
    old_css = r"url\(\s*(['\"]?)([^)'\"]*)\1\s*\)"
    patterns = [("url", 0, False), ("a", 0, False), ("data", 0, False),
                (old_css, re.IGNORECASE, False), ("b", 0, False)]
    assert vet_in_parallel(patterns, size=20_000, seconds=2.0) == [3]


def test_every_rule_term_scans_adversarial_text_quickly():
    classifier = Classifier.load(ROOT / "rules")
    terms = {}
    for rule in classifier.rules:
        for termset in (rule.terms, rule.requires, rule.excepts):
            for term in (termset.terms if termset else ()):
                terms.setdefault((term.regex.pattern, term.regex.flags), rule.id)
    assert len(terms) > 500
    items = list(terms)
    slow = vet_in_parallel([(p, f & ~re.UNICODE, False) for p, f in items], size=10_000,
                           seconds=3.0)
    assert [(terms[items[i]], items[i][0]) for i in slow] == []


def test_check_config_rejects_a_rule_pattern_that_backtracks(tmp_path):
    """Among real rule files (patterns before and after it), the careless one is named and
    the rest are still checked.  That the shipped rules pass is test_cli's
    test_example_config_passes_check_config (check-config on the whole rules/)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("billing.toml", "demographics.toml", "other.toml", "results.toml",
                 "surgery.toml"):
        shutil.copy(ROOT / "rules" / name, rules / name)
    with (rules / "other.toml").open("a") as fh:
        fh.write('\n[[rule]]\nid = "slow-pattern"\ncategory = "other"\nweight = 1\n'
                 'reason = "a pattern written carelessly"\n'
                 "patterns = ['pain\\s*\\s*\\s*x']\n")
    assert len(rule_patterns(rules)) >= 6
    problems = check_rule_patterns(rules, seconds=2.0)
    assert len(problems) == 1
    assert "other.toml" in problems[0] and "slow-pattern" in problems[0]
