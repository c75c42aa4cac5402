"""The labelled triage corpus: loading, the held-out split rule and the corpus hash.

A corpus file holds ``[[message]]`` tables (see tests/data/train/ and
docs/triage-model.md).  Every body goes through the gateway's own content steps, as
in production: it is wrapped in a mail (``text/html`` when ``html = true``), the
attachment/HTML step turns it into text, and the reply splitter sets quoted history
and signatures aside.

Held-out rule (fixed, shared by everybody who trains or writes rules): a message is
held out when ``int(sha256(text).hexdigest(), 16) % 5 == 0`` (text = the raw ``text``
value, UTF-8).  Held-out messages are never used for training or rule writing.
"""
from __future__ import annotations

import email.message
import email.policy
import hashlib
import pathlib
import tomllib
from dataclasses import dataclass

from gateway.classification import CATEGORIES, split_reply
from gateway.content.strip import strip_message

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
# Everything labelled that the model may learn from (held-out split excluded).
TRAINING_SOURCES = (DATA / "corpus", DATA / "holdout", DATA / "holdout2", DATA / "holdout3",
                    DATA / "train")
KINDS = {"emergency", "near_miss", "routine"}
KEYS = {"text", "subject", "context", "context_kind", "expected", "expect", "kind", "lang",
        "html"}


@dataclass(frozen=True)
class Sample:
    source: str
    text: str
    subject: str
    context: str | None
    expected: str
    kind: str | None = None
    lang: str | None = None
    html: bool = False

    @property
    def held_out(self) -> bool:
        return is_held_out(self.text)

    def new_text(self) -> str:
        """The patient's new text, exactly as the gateway would classify it."""
        return new_text_of(self.text, self.html)


def is_held_out(text: str) -> bool:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 5 == 0


def new_text_of(body: str, html: bool = False) -> str:
    msg = email.message.EmailMessage(policy=email.policy.default)
    msg.set_content(body, subtype="html" if html else "plain")
    return split_reply(strip_message(msg).text)[0]


def corpus_files(paths) -> list[pathlib.Path]:
    out: list[pathlib.Path] = []
    for p in paths:
        p = pathlib.Path(p)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted(p.rglob("*.toml")))
    return sorted(set(out))


def corpus_hash(files) -> str:
    """sha256 over the files sorted by path relative to the repository: name, then bytes."""
    h = hashlib.sha256()
    for path in sorted(files, key=_rel):
        h.update(_rel(path).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def _rel(path: pathlib.Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.name


def load_corpus(corpus) -> list[Sample]:
    """Read [[message]] tables from every *.toml under a directory, or from one file.

    Keys: text, subject?, context? (alias context_kind), expected? (alias expect), kind?,
    lang?, html?.  ``expected`` defaults to the file name when that is a category.
    Unknown keys are an error, so a misspelt key cannot silently drop a label.
    """
    paths = corpus_files([corpus])
    if not paths:
        raise ValueError(f"no *.toml corpus files in {corpus}")
    samples: list[Sample] = []
    for path in paths:
        samples.extend(_load_file(path))
    return samples


def _load_file(path: pathlib.Path) -> list[Sample]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    default = path.stem if path.stem in CATEGORIES else None
    out = []
    for i, msg in enumerate(data.get("message", []), 1):
        where = f"{path.name} #{i}"
        unknown = set(msg) - KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        expected = msg.get("expected", msg.get("expect", default))
        if expected not in CATEGORIES:
            raise ValueError(f"{where}: bad or missing expected category {expected!r}")
        if not isinstance(msg.get("text"), str):
            raise ValueError(f"{where}: missing text")
        kind = msg.get("kind")
        if kind is not None and kind not in KINDS:
            raise ValueError(f"{where}: bad kind {kind!r}")
        out.append(Sample(f"{path.name}#{i}", msg["text"], str(msg.get("subject", "")),
                          msg.get("context", msg.get("context_kind")), expected, kind,
                          msg.get("lang"), bool(msg.get("html", False))))
    return out


def training_corpus() -> tuple[list[Sample], list[Sample], str]:
    """(training split, held-out split, corpus hash) of every labelled file in the repo."""
    files = corpus_files(TRAINING_SOURCES)
    samples: list[Sample] = []
    seen: set[str] = set()
    for path in files:
        for s in _load_file(path):
            if s.text not in seen:  # the same text twice would leak across nothing, but skew
                seen.add(s.text)
                samples.append(s)
    train = [s for s in samples if not s.held_out]
    held = [s for s in samples if s.held_out]
    return train, held, corpus_hash(files)
