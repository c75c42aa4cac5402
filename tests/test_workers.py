"""`[gateway] workers = N`: N real processes share the SMTP port; every message answered
250 is stored once and its acknowledgement and staff copy go out once; SIGTERM to the
parent drains every worker; SIGHUP reloads every worker; a worker that dies is restarted."""
from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import ConfigError, load_config

from tests.helpers import patient_mail
from tests.processes import (CLI, PATIENT, PORTAL, Relay, Senders, Serve,
                             gateway_config, prepare_database, stored)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'db' / 'gateway.sqlite3'}"


def test_two_workers_store_and_acknowledge_each_message_once_and_drain(tmp_path, db_url):
    relay = Relay()
    config, port = gateway_config(tmp_path, db_url, workers=2, relay_port=relay.port)
    prepare_database(db_url, config)
    serve = Serve(config, port)
    try:
        pids = {e["worker"]: e["pid"] for e in serve.wait_logs("listening", count=2)}
        assert sorted(pids) == [0, 1] and len(set(pids.values())) == 2
        senders = Senders([port], sessions=16, per=6)
        senders.wait_acked(40)
        assert serve.stop() == 0  # SIGTERM to the parent while sessions are still sending
        for pid in pids.values():  # no worker outlives the parent
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        senders.join()
    finally:
        serve.kill()
        relay.stop()
    assert {e.get("worker") for e in serve.logs("stopped")} == {0, 1, None}, serve.problems()
    # the kernel spread the sessions over both workers
    assert {e.get("worker") for e in serve.logs("message accepted")} == {0, 1}
    ids, outbox = stored(db_url, config)
    assert len(ids) == len(set(ids)), "a message was stored twice"
    assert sorted(ids) == sorted(senders.acked), serve.problems()  # stored = answered 250
    assert len(outbox) == 2 * len(ids)  # an acknowledgement and a staff copy each
    assert {state for _, _, state in outbox} == {"sent"}, serve.problems()  # drained
    sent = relay.sent()
    assert sorted(sent) == sorted(row_id for row_id, _, _ in outbox), serve.problems()
    assert set(sent.values()) == {1}, "a mail was sent twice"


def test_a_worker_that_dies_is_restarted_and_workers_outlive_no_parent(tmp_path, sqlite_url):
    config, port = gateway_config(tmp_path, sqlite_url, workers=2)
    prepare_database(sqlite_url, config)
    serve = Serve(config, port)
    try:
        first = serve.wait_logs("listening", count=1, worker=1)[0]["pid"]
        serve.wait_logs("listening", count=1, worker=0)
        os.kill(first, signal.SIGKILL)
        died = serve.wait_logs("worker died, restarting", worker=1)[0]
        assert (died["worker_pid"], died["signal"]) == (first, "SIGKILL")
        again = serve.wait_logs("listening", count=2, worker=1)[1]["pid"]
        assert again != first
        for _ in range(6):  # the restarted worker answers its share of the port again
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.send_message(patient_mail(), PATIENT, [PORTAL])
        serve.proc.kill()  # the parent itself dies: its workers drain and exit
        serve.wait_logs("stopped", count=2, timeout=30)
    finally:
        serve.kill()
    assert {e.get("worker") for e in serve.logs("stopped")} == {0, 1}
    assert len(stored(sqlite_url, config)[0]) == 6


def test_sighup_reloads_every_worker_and_metrics_count_every_worker(tmp_path, sqlite_url):
    config, port = gateway_config(tmp_path, sqlite_url, workers=2)
    prepare_database(sqlite_url, config)
    serve = Serve(config, port)
    try:
        ops = serve.wait_logs("listening", worker=0)[0]["ops"]
        serve.wait_logs("listening", worker=1)
        assert not serve.logs("reloaded rules and templates")
        serve.proc.send_signal(signal.SIGHUP)
        reloaded = serve.wait_logs("reloaded rules and templates", count=2)
        assert {e["worker"] for e in reloaded} == {0, 1}
        senders = Senders([port], sessions=12, per=2)
        senders.join()
        assert len(senders.acked) == 24
        by_worker = Counter(e["worker"] for e in serve.logs("message accepted"))
        page = urllib.request.urlopen(f"http://{ops}/metrics", timeout=30).read().decode()
        assert serve.stop() == 0
    finally:
        serve.kill()
    assert set(by_worker) == {0, 1}  # both workers took sessions ...
    accepted = sum(sample.value for family in text_string_to_metric_families(page)
                   for sample in family.samples
                   if sample.name == "portal_messages_accepted_total")
    assert accepted == 24  # ... and worker 0's /metrics counts the messages of both
    reloads = sum(sample.value for family in text_string_to_metric_families(page)
                  for sample in family.samples if sample.name == "portal_reloads_total")
    assert reloads == 2


def test_a_second_gateway_on_the_same_port_is_refused(tmp_path, sqlite_url):
    """SO_REUSEPORT shares the port among one gateway's workers, never with another one."""
    config, port = gateway_config(tmp_path, sqlite_url, workers=2)
    prepare_database(sqlite_url, config)
    serve = Serve(config, port)
    try:
        serve.wait_logs("listening", count=2)
        second = subprocess.run([CLI, "--config", str(config), "serve"], capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 1
        assert "cannot listen" in second.stderr
        assert serve.stop() == 0
    finally:
        serve.kill()


@pytest.mark.parametrize("value", ["0", "65", "-1", '"2"', "2.5", "true"])
def test_a_bad_workers_value_is_named(tmp_path, sqlite_url, value):
    config, _ = gateway_config(tmp_path, sqlite_url, workers=2)
    config.write_text(config.read_text().replace("workers = 2", f"workers = {value}"))
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert any("[gateway] workers" in p for p in caught.value.problems)


def test_check_config_names_a_bad_workers_value_and_accepts_a_good_one(tmp_path, sqlite_url):
    config, _ = gateway_config(tmp_path, sqlite_url, workers=2)
    good = subprocess.run([CLI, "--config", str(config), "check-config"],
                          capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    config.write_text(config.read_text().replace("workers = 2", "workers = 0"))
    bad = subprocess.run([CLI, "--config", str(config), "check-config"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert "[gateway] workers: must be between 1 and 64" in bad.stderr
