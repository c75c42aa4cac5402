"""The durability promise under kill -9 (bench/soak.py, short version), on both databases:
every message that got 250 has exactly one staff copy and one acknowledgement, nothing is
delivered twice, the outbox ends empty."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PG_URL, ROOT


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_soak_under_kill_9(tmp_path, database, pg_available):
    if database == "postgresql" and not pg_available:
        pytest.skip("PostgreSQL not reachable (it is required with CI=true)")
    db = PG_URL if database == "postgresql" else ""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--messages", "200", "--kills", "4",
         "--patients", "3", "--clients", "8", "--min-gap", "0.8", "--max-gap", "2.5",
         "--lease", "5", "--resend", "0.05", "--db", db, "--workdir", str(tmp_path / "soak"),
         "--json"], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.stdout.strip(), proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["database"] == database
    assert result["acknowledged"] == result["sent"] == 200, result
    assert result["lost"] == 0 and result["doubled"] == 0, result
    assert result["unexpected_files"] == 0 and result["outbox_queued"] == 0, result
    assert result["kills"] >= 2, result
    assert result["serve_exit"] == 0, result
    assert proc.returncode == 0, result
    log = (tmp_path / "soak" / "serve.log").read_text()
    assert "Traceback" not in log
    assert "soak0@example.com" not in log and "SOAK" not in log  # ids only in logs
