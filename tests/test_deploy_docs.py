"""docs/deploy.md and docs/examples/: the files ops copy must stay true to the code."""
from __future__ import annotations

import argparse
import configparser
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from gateway.config import build_config
from tests.conftest import ROOT

EXAMPLES = ROOT / "docs" / "examples"
DEPLOY = ROOT / "docs" / "deploy.md"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((EXAMPLES / name).read_text())
    return parser


def parser_with_all_commands():
    from gateway.cli import audit_cmd, build_parser, purge_cmd
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, module in (("audit", audit_cmd), ("purge", purge_cmd)):
        if name not in sub.choices:
            module.register(sub)
    return parser, sub


_WORD = re.compile(r"^[a-z][a-z-]*$")
_STOP = {"|", "\\|", ">", ">>", "&&", ";", "\\"}


def snippets(path: Path) -> list[str]:
    """The code a reader would type: every line of an example file; in Markdown, the lines
    of fenced blocks and the inline `code` spans."""
    text = path.read_text()
    if path.suffix in (".yml", ".json"):  # alert texts and panel descriptions: `code` only
        return re.findall(r"`([^`\n]+)`", text)
    if path.suffix != ".md":
        return text.splitlines()
    out, prose, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            out.append(line)
        else:
            prose.append(line)
    return out + re.findall(r"`([^`\n]+)`", "\n".join(prose))


def gateway_commands(lines: list[str]) -> list[list[str]]:
    """Every `portal-gateway ...` invocation (shell lines and Containerfile CMD arrays):
    the program word (or a path ending in /portal-gateway) followed by --config or a
    command-like word."""
    found = []
    for line in lines:
        line = line.strip()
        if line.startswith("CMD ["):
            words = [w.strip().strip('"') for w in line[5:].rstrip("]").split(",")]
            if words[0] == "portal-gateway":
                found.append(words[1:])
            continue
        tokens = [t for t in re.split(r"[\s`]+", line) if t]
        starts = [i for i, t in enumerate(tokens[:-1])
                  if (t == "portal-gateway" or t.endswith("/portal-gateway"))
                  and (tokens[i + 1] == "--config" or _WORD.match(tokens[i + 1]))
                  and tokens[i + 1] != "portal-gateway"]  # `exec NAME portal-gateway ...`
        if not starts:
            continue
        argv = []
        for token in tokens[starts[-1] + 1:]:
            if token in _STOP or token.startswith("#") or token.startswith("("):
                break
            argv.append(token)
        found.append(argv)
    return found


def test_systemd_unit_parses_and_drains_on_sigterm():
    u = unit("portal-gateway.service")
    service = u["Service"]
    start = shlex.split(service["ExecStart"])
    assert start[0].endswith("/portal-gateway") and start[-1] == "serve"
    assert "--config" in start
    assert service["KillSignal"] == "SIGTERM"
    assert shlex.split(service["ExecReload"])[-2:] == ["-HUP", "$MAINPID"]
    drain = build_config({}, ROOT / "config.toml").gateway.drain_seconds
    assert float(service["TimeoutStopSec"]) > drain  # systemd never SIGKILLs a drain
    assert u["Install"]["WantedBy"] == "multi-user.target"
    assert service["User"] != "root"


def test_purge_timer_and_service():
    service = unit("portal-gateway-purge.service")["Service"]
    assert service["Type"] == "oneshot"
    assert shlex.split(service["ExecStart"])[-1] == "purge"
    timer = unit("portal-gateway-purge.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"


def test_every_documented_command_is_a_real_command():
    parser, _ = parser_with_all_commands()
    seen = 0
    for path in [DEPLOY, *EXAMPLES.iterdir()]:
        name = path.name
        for argv in gateway_commands(snippets(path)):
            try:
                parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{name}: `portal-gateway {' '.join(argv)}` does not parse")
            seen += 1
    assert seen >= 10


def test_container_runs_what_the_readme_and_scripts_run():
    text = (EXAMPLES / "Containerfile").read_text()
    [cmd] = gateway_commands(snippets(EXAMPLES / "Containerfile"))
    assert cmd[-1] == "serve" and cmd[:2] == ["--config", "/etc/portal-gateway/config.toml"]
    # scripts/serve runs the same command line: portal-gateway --config FILE serve
    serve_script = (ROOT / "scripts" / "serve").read_text()
    assert re.search(r"portal-gateway --config \S+ serve", serve_script)
    readme = (ROOT / "README.md").read_text()
    assert "`portal-gateway serve`" in readme and "libmagic" in (
        ROOT / "scripts" / "bootstrap").read_text()
    assert "libmagic1" in text  # what scripts/bootstrap installs on Debian
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    assert "/healthz" in text
    # every file it copies exists
    for src in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), path
    # the ports it exposes are the example config's defaults
    example = tomllib.loads((ROOT / "config.example.toml").read_text())
    exposed = set(re.search(r"^EXPOSE (.+)$", text, re.M).group(1).split())
    assert exposed == {str(example["smtp"]["inbound_port"]),
                       str(example["smtp"]["submission_port"]),
                       str(example["http"]["port"]), str(example["http"]["ops_port"])}


def test_production_config_is_valid_over_the_example(monkeypatch):
    monkeypatch.setenv("PORTAL_DATABASE_URL", "postgresql://portal@db.internal/portal")
    raw = tomllib.loads((ROOT / "config.example.toml").read_text())
    for section, values in tomllib.loads(
            (EXAMPLES / "config.production.toml").read_text()).items():
        raw.setdefault(section, {}).update(values)
    cfg = build_config(raw, Path("/etc/portal-gateway/config.toml"))
    assert cfg.database_url.startswith("postgresql://")
    assert cfg.gateway.drain_seconds < float(unit("portal-gateway.service")["Service"]
                                             ["TimeoutStopSec"])
    assert cfg.delivery.mode == "relay" and cfg.delivery.relay_port == 10025
    assert cfg.policy.auth_mode == "verify" and cfg.policy.require_aligned_auth


def test_postfix_snippets_proxy_before_queue_and_relay_on_loopback():
    master = (EXAMPLES / "postfix-master.cf").read_text()
    main = (EXAMPLES / "postfix-main.cf").read_text()
    assert "smtpd_proxy_filter=127.0.0.1:2525" in master
    assert re.search(r"^127\.0\.0\.1:10025 inet", master, re.M)
    assert not re.search(r"^\s*-o smtpd_proxy_options=.*speed_adjust", master, re.M)
    assert re.search(r"^message_size_limit = 26214400$", main, re.M)
    production = tomllib.loads((EXAMPLES / "config.production.toml").read_text())
    assert production["delivery"]["relay_port"] == 10025


def test_deploy_doc_names_every_example_and_topic():
    text = DEPLOY.read_text()
    for path in EXAMPLES.iterdir():
        assert path.name in text, path.name
    for topic in ("systemd", "Container", "Postfix", "TLS", "PostgreSQL", "Backups",
                  "Upgrading", "drain_seconds", "retention_days", "outbox_stuck_minutes"):
        assert topic in text, topic
