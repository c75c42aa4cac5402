"""The deadline sweeper with an injected clock, on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from gateway.addresses import new_token
from gateway.deadlines import DeadlineSweeper, stages
from gateway.models import Outbox, Thread, ThreadNotice
from gateway.services import Services
from tests.helpers import add_patient

BASE = dt.datetime(2030, 3, 4, 9, 0, 0)
DUE = BASE + dt.timedelta(hours=72)
TEAM = "frontdesk@practice.example.org"
SUPERVISOR = "supervisor@practice.example.org"


class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def at(self, delta_to_due: dt.timedelta, due: dt.datetime = DUE) -> "Clock":
        self.now = due + delta_to_due
        return self


def add_thread(services, patient_id: int, due=DUE, state="open", team=TEAM,
               category="appointment", urgent=False) -> int:
    with services.transaction() as session:
        t = Thread(public_id=new_token(), patient_id=patient_id, category=category,
                   urgent=urgent, team=team, state=state, due_at=due, created_at=BASE)
        session.add(t)
        session.flush()
        return t.id


def notices(services, thread_id=None) -> list[tuple]:
    with services.factory() as session:
        q = select(Outbox.kind, Outbox.recipient, Outbox.thread_id).order_by(Outbox.id)
        if thread_id is not None:
            q = q.where(Outbox.thread_id == thread_id)
        return [tuple(r) for r in session.execute(q)]


H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def test_reminders_then_escalation_each_exactly_once(services):
    pid = add_patient(services)
    tid = add_thread(services, pid)
    clock = Clock(BASE)
    sweeper = DeadlineSweeper(services, clock=clock)
    assert sweeper.sweep_once() == 0
    assert sweeper.sweep_once() == 0 and notices(services) == []
    assert sweeper.sweep_once() == 0
    clock.at(-24 * H + M)
    assert sweeper.sweep_once() == 1
    assert notices(services) == [("reminder", TEAM, tid)]
    assert sweeper.sweep_once() == 0
    clock.at(-4 * H + M)
    assert sweeper.sweep_once() == 1
    clock.at(-3 * H)
    assert sweeper.sweep_once() == 0
    clock.at(M)
    assert sweeper.sweep_once() == 1
    for later in (2 * M, 5 * H, 100 * H):
        clock.at(later)
        assert sweeper.sweep_once() == 0
    assert notices(services) == [("reminder", TEAM, tid), ("reminder", TEAM, tid),
                                 ("escalation", SUPERVISOR, tid)]
    with services.factory() as session:
        raws = [r for r in session.scalars(select(Outbox.raw).order_by(Outbox.id))]
    assert b"X-Portal-Notice: reminder-24h" in raws[0]
    assert b"X-Portal-Notice: reminder-4h" in raws[1]
    assert b"X-Portal-Notice: escalation" in raws[2]
    assert all(b"Auto-Submitted: auto-generated" in r for r in raws)


def test_restart_sends_nothing_new(services, config):
    pid = add_patient(services)
    add_thread(services, pid)
    clock = Clock(BASE).at(-4 * H + M)
    assert DeadlineSweeper(services, clock=clock).sweep_once() == 1
    other = Services.create(config)  # a restarted process: new engine, new sweeper
    try:
        assert DeadlineSweeper(other, clock=clock).sweep_once() == 0
        clock.at(30 * M)
        assert DeadlineSweeper(other, clock=clock).sweep_once() == 1
        assert DeadlineSweeper(services, clock=clock).sweep_once() == 0
    finally:
        other.close()
    assert [k for k, _, _ in notices(services)] == ["reminder", "escalation"]


def test_closed_answered_and_undated_threads_get_nothing(services):
    pid = add_patient(services)
    add_thread(services, pid, state="closed")
    add_thread(services, pid, state="answered")
    add_thread(services, pid, due=None)
    live = add_thread(services, pid)
    clock = Clock(BASE)
    sweeper = DeadlineSweeper(services, clock=clock)
    for step in (-24 * H + M, -4 * H + M, M, 50 * H):
        clock.at(step)
        sweeper.sweep_once()
    assert {t for _, _, t in notices(services)} == {live}


def test_answer_stops_the_clock_and_a_new_due_time_starts_again(services):
    pid = add_patient(services)
    tid = add_thread(services, pid)
    clock = Clock(BASE).at(-24 * H + M)
    sweeper = DeadlineSweeper(services, clock=clock)
    assert sweeper.sweep_once() == 1
    with services.transaction() as session:
        session.get(Thread, tid).state = "answered"
    clock.at(M)
    assert sweeper.sweep_once() == 0
    new_due = DUE + 48 * H  # the patient wrote again: a new clock
    with services.transaction() as session:
        t = session.get(Thread, tid)
        t.state, t.due_at = "open", new_due
    clock.at(-24 * H + M, due=new_due)
    assert sweeper.sweep_once() == 1
    assert [k for k, _, _ in notices(services)] == ["reminder", "reminder"]


def test_clock_jump_sends_only_the_latest_stage_once(services):
    pid = add_patient(services)
    tid = add_thread(services, pid)
    clock = Clock(BASE)
    sweeper = DeadlineSweeper(services, clock=clock)
    sweeper.sweep_once()
    clock.at(10 * H)  # forward past every stage at once
    assert sweeper.sweep_once() == 1
    assert notices(services) == [("escalation", SUPERVISOR, tid)]
    with services.factory() as session:
        rows = session.execute(select(ThreadNotice.kind, ThreadNotice.offset_minutes,
                                      ThreadNotice.skipped)).all()
    assert sorted(rows) == [("escalation", 0, False), ("reminder", 240, True),
                            ("reminder", 1440, True)]
    for step in (-30 * H, -3 * H, 20 * H, -23 * H):  # back and forth
        clock.at(step)
        assert sweeper.sweep_once() == 0


def test_first_sweep_catches_up_and_urgent_team_list(services):
    pid = add_patient(services)
    tid = add_thread(services, pid, team="nurses@practice.example.org, oncall@practice.example.org",
                     urgent=True, category="emergency")
    clock = Clock(BASE).at(-29 * M)  # no sweep ever ran: the first one looks at everything
    assert DeadlineSweeper(services, clock=clock).sweep_once() == 2
    assert sorted(notices(services)) == [("reminder", "nurses@practice.example.org", tid),
                                         ("reminder", "oncall@practice.example.org", tid)]


def test_the_notice_key_is_unique(services):
    pid = add_patient(services)
    tid = add_thread(services, pid)
    with pytest.raises(IntegrityError):
        with services.transaction() as session:
            for _ in range(2):
                session.add(ThreadNotice(thread_id=tid, kind="reminder", offset_minutes=240,
                                         due_at=DUE))
                session.flush()


def _hammer(cfgs, clock, rounds: int, bypass_lock: bool) -> list[BaseException]:
    """Sweepers in threads, each with its own engine (like separate processes)."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(cfgs))

    def work(cfg):
        s = Services.create(cfg)
        sweeper = DeadlineSweeper(s, clock=clock, batch=7)
        try:
            for _ in range(rounds):
                barrier.wait()
                try:
                    sweeper._sweep() if bypass_lock else sweeper.sweep_once()
                except IntegrityError as e:  # the unique key refused a double
                    errors.append(e)
        finally:
            s.close()
    threads = [threading.Thread(target=work, args=(c,)) for c in cfgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def _assert_once(services, thread_ids) -> None:
    with services.factory() as session:
        counts = session.execute(select(Outbox.thread_id, Outbox.kind, func.count())
                                 .group_by(Outbox.thread_id, Outbox.kind)).all()
    by = {(t, k): n for t, k, n in counts}
    for tid in thread_ids:
        assert by.get((tid, "escalation")) == 1, (tid, by)
        assert (tid, "reminder") not in by  # skipped: it was overdue when first seen
    assert len(by) == len(thread_ids)


def test_concurrent_sweepers_still_once(services, config):
    pid = add_patient(services)
    ids = [add_thread(services, pid, due=DUE + i * M) for i in range(40)]
    clock = Clock(BASE).at(3 * H)
    assert _hammer([config] * 4, clock, rounds=5, bypass_lock=False) == []
    _assert_once(services, ids)


# Concurrent writers: PostgreSQL only (SQLite runs one sweeper per process).
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_without_the_lock_the_unique_key_still_prevents_doubles(services, config):
    pid = add_patient(services)
    ids = [add_thread(services, pid, due=DUE + i * M) for i in range(40)]
    clock = Clock(BASE).at(3 * H)
    _hammer([config] * 3, clock, rounds=4, bypass_lock=True)
    _assert_once(services, ids)


def test_sweep_query_uses_the_state_due_index(services):
    sweeper = DeadlineSweeper(services, clock=Clock(BASE))
    stage = [st for st in stages(services.cfg) if st.urgent is False][0]
    with services.factory() as session:
        q = sweeper._candidates_query(stage, BASE - H, BASE)
        sql = str(q.compile(session.bind, compile_kwargs={"literal_binds": True}))
        if services.engine.dialect.name == "sqlite":
            plan = " ".join(str(r) for r in session.execute(text("EXPLAIN QUERY PLAN " + sql)))
        else:
            session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(str(r) for r in session.execute(text("EXPLAIN " + sql)))
    assert "ix_threads_state_due" in plan, plan


def run_cli(module, config, *args, check=True):
    """A command module as `portal-gateway` runs it, without the top-level command list
    (so this works before the module is wired into gateway.cli)."""
    import argparse
    import contextlib
    import io
    import types
    from gateway.cli.common import CommandError
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([*args, "--config", str(config)])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = args.func(args) or 0
        except CommandError as e:
            print(f"portal-gateway: {e}", file=err)
            code = e.exit_code
    if check and code:
        raise AssertionError(f"{args} exited {code}: {err.getvalue()}")
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_threads_cli_list_and_close(services, config, tmp_path):
    from gateway.cli import threads_cmd

    def run(path, *args, check=True):
        return run_cli(threads_cmd, path, *args, check=check)
    pid = add_patient(services)
    overdue = add_thread(services, pid, due=dt.datetime(2001, 1, 1))
    add_thread(services, pid, due=dt.datetime(2999, 1, 1), category="billing", urgent=True)
    rows = [json.loads(x) for x in run(config.path, "threads", "list", "--json").stdout.split("\n") if x]
    assert [r["category"] for r in rows] == ["billing", "appointment"]  # urgent first
    rows.reverse()
    assert rows[0]["overdue"] is True and rows[1]["urgent"] is True
    assert rows[0]["due"] == "2001-01-01T00:00:00Z" and rows[0]["team"] == TEAM
    od = [json.loads(x) for x in run(config.path, "threads", "list", "--overdue", "--json")
          .stdout.split("\n") if x]
    assert [r["thread"] for r in od] == [rows[0]["thread"]]
    table = run(config.path, "threads", "list").stdout
    assert "THREAD" in table and "DUE" in table and "billing" in table
    assert "closed" in run(config.path, "threads", "close", rows[0]["thread"]).stdout
    with services.factory() as session:
        assert session.get(Thread, overdue).state == "closed"
    assert DeadlineSweeper(services, clock=Clock(dt.datetime(2030, 1, 1))).sweep_once() == 0
    missing = run(config.path, "threads", "close", "nosuchthread", check=False)
    assert missing.returncode == 1 and "no thread" in missing.stderr


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # its advisory lock
def test_sweep_lock_is_per_schema(services, db_url):
    """Two gateways in one PostgreSQL server but different schemas (two practices, or two
    test runs) never wait for each other's sweep; two in the same schema do."""
    from gateway.deadlines import LOCK_KEY
    pid = add_patient(services)
    add_thread(services, pid)
    clock = Clock(BASE).at(-4 * H + M)
    with services.engine.connect() as same:
        assert same.execute(text(f"select pg_try_advisory_lock({LOCK_KEY})")).scalar()
        assert DeadlineSweeper(services, clock=clock).sweep_once() == 0  # held here
        same.execute(text(f"select pg_advisory_unlock({LOCK_KEY})"))
    with services.engine.connect() as other:
        other.execute(text("create schema if not exists t_other_practice"))
        other.execute(text("set search_path to t_other_practice"))
        assert other.execute(text(f"select pg_try_advisory_lock({LOCK_KEY})")).scalar()
        try:
            assert DeadlineSweeper(services, clock=clock).sweep_once() == 1  # not ours
        finally:
            other.execute(text(f"select pg_advisory_unlock({LOCK_KEY})"))
            other.execute(text("drop schema t_other_practice cascade"))
            other.commit()


ONCALL = "oncall@practice.example.org"


def test_urgent_thread_runs_on_its_own_clock(services):
    """An emergency thread (due 60 min after the message): one reminder at half-time to its
    team and on-call, one escalation at due to the supervisor and on-call, nothing else."""
    pid = add_patient(services)
    due = BASE + 60 * M
    tid = add_thread(services, pid, due=due, team="nurses@practice.example.org",
                     category="emergency", urgent=True)
    routine = add_thread(services, pid, due=due)  # same due time, routine clock
    clock = Clock(BASE)
    sweeper = DeadlineSweeper(services, clock=clock)
    assert sweeper.sweep_once() == 1  # the routine thread's stale 4 h reminder, once
    assert notices(services, tid) == []
    clock.at(-31 * M, due)
    assert sweeper.sweep_once() == 0
    clock.at(-29 * M, due)
    assert sweeper.sweep_once() == 2
    assert sorted(notices(services, tid)) == [("reminder", "nurses@practice.example.org", tid),
                                              ("reminder", ONCALL, tid)]
    clock.at(-M, due)
    assert sweeper.sweep_once() == 0
    clock.at(M, due)
    assert sweeper.sweep_once() == 3  # urgent: supervisor + on-call; routine: supervisor
    for later in (2 * M, 5 * H, 100 * H):
        clock.at(later, due)
        assert sweeper.sweep_once() == 0
    assert sorted(notices(services, tid)) == [
        ("escalation", ONCALL, tid), ("escalation", SUPERVISOR, tid),
        ("reminder", "nurses@practice.example.org", tid), ("reminder", ONCALL, tid)]
    assert [k for k, *_ in notices(services, routine)] == ["reminder", "escalation"]
    with services.factory() as session:
        rows = session.execute(select(ThreadNotice.kind, ThreadNotice.offset_minutes)
                               .where(ThreadNotice.thread_id == tid)).all()
    assert sorted(map(tuple, rows)) == [("escalation", 0), ("reminder", 30)]
