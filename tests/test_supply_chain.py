"""Supply chain: dependency floors past known advisories, and a lock file with hashes that
scripts/bootstrap installs from (pip then refuses any file whose hash differs)."""
from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

FLOORS = {"aiohttp": "3.14.3", "jinja2": "3.1.6", "aiosmtplib": "5.1.2",
          "cryptography": "44.0.1"}


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in
            project["dependencies"] + project["optional-dependencies"]["test"]]


def locked() -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) from requirements.lock."""
    text = (ROOT / "requirements.lock").read_text()
    out = {}
    for block in re.split(r"\n(?=[A-Za-z])", text):
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+) \\", block)
        if m:
            out[canonicalize_name(m.group(1))] = (Version(m.group(2)),
                                                  block.count("--hash=sha256:"))
    return out


def test_floors_are_past_known_advisories():
    floors = {canonicalize_name(r.name): r.specifier for r in declared()}
    for name, floor in FLOORS.items():
        assert Version(floor) in floors[name], name
        assert not any(Version(v) in floors[name] for v in _below(floor)), name


def _below(floor: str) -> list[str]:
    major, minor, patch = (int(x) for x in floor.split("."))
    return [f"{major}.{minor}.{patch - 1}"] if patch else [f"{major}.{minor - 1}.99"]


def test_every_dependency_is_locked_with_hashes_inside_its_range():
    pins = locked()
    for req in declared():
        version, hashes = pins[canonicalize_name(req.name)]
        assert version in req.specifier, (req.name, version)
        assert hashes >= 1, req.name
    assert all(h >= 1 for _, h in pins.values())
    assert "file://" not in (ROOT / "requirements.lock").read_text()


def test_bootstrap_installs_from_the_lock_file():
    text = (ROOT / "scripts" / "bootstrap").read_text()
    assert "--require-hashes -r requirements.lock" in text
    assert "requirements.lock" in text.split("stamp=", 1)[1].split("\n", 1)[0]
