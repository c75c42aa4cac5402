"""The repository explains itself: docs in its own words, linked from the README, and no
reference to files or contract sections that live outside the repository."""
from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT

# Built from parts so that this file does not match itself.
OUTSIDE = [re.compile(p) for p in (
    "\u00a7",                       # section numbers of an outside document
    r"\bSPEC(\.md)?\b",             # the product contract's file
    r"shared" + r" folder", r"\.\./shared\b", r"/work/" + r"shared",
)]


def tracked_text_files():
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        path = ROOT / name
        if not path.is_file():
            continue
        try:
            yield name, path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (the dashboard picture)


def test_nothing_refers_to_files_outside_the_repository():
    found = [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
             for name, text in tracked_text_files() for pattern in OUTSIDE
             for m in pattern.finditer(text)]
    assert not found, "\n".join(found)


def test_readme_links_to_the_behaviour_docs_and_every_link_resolves():
    readme = (ROOT / "README.md").read_text()
    for doc in ("docs/behaviour.md", "docs/operations.md", "docs/deploy.md"):
        assert f"]({doc})" in readme, doc
    behaviour = (ROOT / "docs" / "behaviour.md").read_text()
    headings = set(re.findall(r"^## (.+)$", behaviour, re.M))
    assert headings >= {"Addresses", "SMTP replies", "Categories", "Deadlines",
                        "Notifications", "Enrollment"}, headings
    for name in ("README.md", "docs/behaviour.md", "docs/operations.md", "docs/deploy.md"):
        text = (ROOT / name).read_text()
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if not target.startswith("http"):
                assert ((ROOT / name).parent / target).exists(), f"{name}: {target}"


def test_every_smtp_reply_text_in_the_docs_is_the_real_one():
    """docs/behaviour.md quotes the replies; they must be what the gateway says."""
    from gateway import decisions, notifications
    from gateway.smtp import limits
    behaviour = " ".join((ROOT / "docs" / "behaviour.md").read_text().split())
    for reply in (decisions.REFUSED_SENDER, decisions.REFUSED_STAFF,
                  decisions.UNKNOWN_RECIPIENT, decisions.TOO_BIG, decisions.BARE_LINE_ENDING,
                  decisions.TEMPFAIL, decisions.ACCEPTED, notifications.NOT_TRANSACTIONAL):
        assert reply in behaviour, reply
    assert limits.NUL_BYTES[:9] in behaviour


def test_quick_start_leaves_nothing_in_the_repository():
    """The README's first conversation writes its files in a scratch folder."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("### A first conversation", 1)[1].split("```sh", 1)[1]
    block = block.split("```", 1)[0]
    targets = re.findall(r"(?<![<>])>\s*(\S+)", block)
    assert targets and all(t.startswith('"$work/') for t in targets), targets
    assert "mktemp -d" in block and "kill %1" in block
