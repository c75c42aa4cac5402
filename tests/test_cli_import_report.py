"""What `patients import` and `proxies import` print (one shared report): a rejected row as
FILE:LINE on stderr, the counts on stdout, exit 1 only when a row was rejected; a file
that is not UTF-8 is refused before anything is imported.  SQLite and PostgreSQL."""
from __future__ import annotations

import pytest

from gateway.cli import patients_cmd, proxies_cmd
from tests.helpers import add_patient
from tests.test_deadlines import run_cli

ROSTER = "account_number,first_name,last_name,email,state\n1001,Ana,Lopez,ana@example.com,CA\n"
PROXIES = ("patient_account,first_name,last_name,email,relation,scope\n"
           "1001,Maria,Lopez,mom@example.net,mother,\n")


def test_a_clean_import_exits_0_with_the_counts_both_commands(services, config, tmp_path):
    roster, proxy_csv = tmp_path / "roster.csv", tmp_path / "proxies.csv"
    roster.write_text(ROSTER, encoding="utf-8")
    proxy_csv.write_text(PROXIES, encoding="utf-8")
    done = run_cli(patients_cmd, config.path, "patients", "import", str(roster))
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip() == f"{roster}: 1 added, 0 updated, 0 unchanged, 0 rejected"
    done = run_cli(proxies_cmd, config.path, "proxies", "import", str(proxy_csv))
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip() == f"{proxy_csv}: 1 added, 0 updated, 0 unchanged, 0 rejected"
    again = run_cli(proxies_cmd, config.path, "proxies", "import", str(proxy_csv))
    assert again.stdout.strip().endswith("0 added, 0 updated, 1 unchanged, 0 rejected")


@pytest.mark.parametrize("module,words,text", [
    (patients_cmd, ("patients", "import"), ROSTER.replace("Lopez", "L\u00f3pez")),
    (proxies_cmd, ("proxies", "import"), PROXIES.replace("Lopez", "L\u00f3pez")),
])
def test_a_file_that_is_not_utf8_is_refused_by_name(services, config, tmp_path, module,
                                                    words, text):
    add_patient(services, account="1001", status="roster", email="pat@example.com")
    path = tmp_path / "latin1.csv"
    path.write_bytes(text.encode("latin-1"))
    done = run_cli(module, config.path, *words, str(path), check=False)
    assert done.returncode == 1 and f"{path}: cannot read:" in done.stderr
    assert "added" not in done.stdout
