"""The scheduler and its jobs, on SQLite and PostgreSQL.

* the lease: acquire, deny, renew, expire and release with an injected clock,
  and one winner out of many racing threads;
* ``run_recompute``: skipped under another owner's lease or for a tick another
  scheduler already ran; a failing run recorded as failed with the lease freed;
* two real scheduler processes on one database: runs never overlap, all
  succeed, each tick runs once, and SIGTERM stops both cleanly;
* a restart keeps the stored jobs and their ``next_run_time``: a tick missed
  beyond the grace time is recorded as ``missed``, one within it is caught up
  by a single coalesced run;
* the in-process (demo) scheduler, settings validation and the schema check.

No assertion is on a duration: processes run for a window and runs are counted
with a generous tolerance.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, update

from db.engine import get_engine, write_session, writer
from db.models import JobRun, Patient, PerformanceStatus, RecomputeQueue, SpinalLesion
from surveillance import jobs, pipeline
from surveillance.scheduler import (
    FULL_JOB_ID,
    INCREMENTAL_JOB_ID,
    JOB_TABLE,
    SchedulerSettings,
    SchedulerSettingsError,
    load_settings,
    run_scheduler,
    start_in_process,
)
from surveillance.state import refresh_patient_state

ROOT = Path(__file__).parents[1]
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RUN = JobRun.__table__


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def add_patients(engine, count: int = 6) -> list[int]:
    """Demo-like patients with a lesion and an ECOG, their state, and queued for recompute."""
    sites = ["breast", "prostate", "lung_nsclc", "kidney", "thyroid", "colon"]
    with write_session(engine) as session:
        patients = [
            Patient(
                mrn=f"SCHED-{i:03d}",
                family_name=f"Family{i}",
                given_name=f"Given{i}",
                birth_date=date(1950 + i, 1, 1),
                primary_site=sites[i % len(sites)],
                registered_on=date(2025, 6, 1),
            )
            for i in range(count)
        ]
        session.add_all(patients)
        session.flush()
        ids = [p.id for p in patients]
        for i, pid in enumerate(ids):
            session.add(
                SpinalLesion(
                    patient_id=pid,
                    level=f"T{4 + i % 8}",
                    first_seen_on=date(2025, 7, 1),
                    pain="mechanical",
                    lesion_type="lytic",
                    alignment="normal",
                    collapse="lt50",
                    posterolateral="unilateral",
                    bilsky_escc="1b",
                    assessed_on=date(2025, 7, 1),
                )
            )
            session.add(PerformanceStatus(patient_id=pid, recorded_on=date(2025, 7, 1), ecog=i % 4))
            session.add(RecomputeQueue(patient_id=pid))
        session.flush()
        refresh_patient_state(session, ids)
    return ids


def runs(engine, *, status: str | None = None) -> list:
    query = select(RUN).order_by(RUN.c.id)
    if status is not None:
        query = query.where(RUN.c.status == status)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        conn.rollback()
    return rows


def executed(engine) -> list:
    return [r for r in runs(engine) if r.status != "missed"]


def finished(engine) -> list:
    return [r for r in executed(engine) if r.finished_at is not None]


def _job_table():
    from sqlalchemy import Column, Float, LargeBinary, MetaData, Table, Unicode

    return Table(
        JOB_TABLE,
        MetaData(),
        Column("id", Unicode(191), primary_key=True),
        Column("next_run_time", Float(25)),
        Column("job_state", LargeBinary),
    )


def stored_jobs(engine) -> dict[str, tuple[float | None, dict]]:
    """job id -> (next_run_time column, unpickled job state) from the persistent job store."""
    if JOB_TABLE not in inspect(engine).get_table_names():
        return {}
    table = _job_table()
    with engine.connect() as conn:
        rows = conn.execute(select(table)).all()
        conn.rollback()
    assert len(rows) == len({r.id for r in rows}), "duplicate job rows"
    return {r.id: (r.next_run_time, pickle.loads(r.job_state)) for r in rows}


def simulate_downtime(engine, job_id: str, next_run_time: datetime) -> None:
    """Leave the stored job exactly as a scheduler that stopped before ``next_run_time`` would have.

    Rewriting the stored state stands in for hours of real downtime, so the test
    needs no sleeping and does not depend on how fast the machine restarts.
    """
    table = _job_table()
    with writer(engine).begin() as conn:
        state = pickle.loads(conn.execute(select(table.c.job_state).where(table.c.id == job_id)).scalar_one())
        state["next_run_time"] = next_run_time.astimezone(state["next_run_time"].tzinfo)
        conn.execute(
            update(table)
            .where(table.c.id == job_id)
            .values(next_run_time=next_run_time.timestamp(), job_state=pickle.dumps(state))
        )


def wait_for(condition, *, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def far_full_at() -> str:
    """A daily full-run time twelve hours away, so it never fires during a test."""
    at = datetime.now(UTC) + timedelta(hours=12)
    return f"{at.hour:02d}:{at.minute:02d}"


def assert_no_overlap(rows) -> None:
    ordered = sorted(rows, key=lambda r: r.started_at)
    for before, after in zip(ordered, ordered[1:], strict=False):
        assert before.finished_at is not None
        assert before.finished_at <= after.started_at, f"runs {before.id} and {after.id} overlap"


# ---------------------------------------------------------------------------
# 1. The lease
# ---------------------------------------------------------------------------


def test_lease_acquire_deny_renew_expire_release(engine):
    assert jobs.lease_state(engine) is None
    assert jobs.acquire_lease(engine, "a", now=T0, lease_seconds=60)
    state = jobs.lease_state(engine)
    assert (state.owner, state.until, state.heartbeat_at) == ("a", T0 + timedelta(seconds=60), T0)

    assert not jobs.acquire_lease(engine, "b", now=T0 + timedelta(seconds=10), lease_seconds=60)
    assert not jobs.renew_lease(engine, "b", now=T0 + timedelta(seconds=10), lease_seconds=60)
    assert jobs.acquire_lease(engine, "a", now=T0 + timedelta(seconds=5), lease_seconds=60), "the holder re-enters"

    assert jobs.renew_lease(engine, "a", now=T0 + timedelta(seconds=30), lease_seconds=60)
    assert jobs.lease_state(engine).until == T0 + timedelta(seconds=90)
    # Without the renewal this would have succeeded (60 s had passed).
    assert not jobs.acquire_lease(engine, "b", now=T0 + timedelta(seconds=80), lease_seconds=60)

    # Expired: anyone may take it, and the old holder can no longer renew or release it.
    assert jobs.acquire_lease(engine, "b", now=T0 + timedelta(seconds=91), lease_seconds=60)
    assert not jobs.renew_lease(engine, "a", now=T0 + timedelta(seconds=92), lease_seconds=60)
    assert not jobs.release_lease(engine, "a", now=T0 + timedelta(seconds=92))
    assert jobs.lease_state(engine).owner == "b"

    assert jobs.release_lease(engine, "b", now=T0 + timedelta(seconds=95))
    state = jobs.lease_state(engine)
    assert (state.owner, state.until) == (None, None)
    assert jobs.acquire_lease(engine, "a", now=T0 + timedelta(seconds=96), lease_seconds=60), "free after release"


def test_lease_race_has_exactly_one_winner(engine):
    def race(now: datetime, tag: str, contenders: int = 8) -> list[str]:
        barrier = threading.Barrier(contenders)
        winners: list[str] = []
        errors: list[BaseException] = []

        def contend(i: int) -> None:
            owner = f"{tag}-{i}"
            try:
                barrier.wait()
                if jobs.acquire_lease(engine, owner, now=now, lease_seconds=60):
                    winners.append(owner)
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        return winners

    # First round: the row does not exist yet, so the insert races too.
    first = race(T0, "first")
    assert len(first) == 1 and jobs.lease_state(engine).owner == first[0]
    assert race(T0 + timedelta(seconds=30), "held") == []
    # After expiry: again exactly one of many takes it.
    second = race(T0 + timedelta(seconds=61), "second")
    assert len(second) == 1 and jobs.lease_state(engine).owner == second[0]


# ---------------------------------------------------------------------------
# run_recompute: lease, once per tick, failures
# ---------------------------------------------------------------------------


def test_run_recompute_skips_while_another_owner_holds_the_lease(engine):
    add_patients(engine, 3)
    assert jobs.acquire_lease(engine, "other-host:1:abcd", now=jobs.utc_now(), lease_seconds=600)
    assert jobs.run_recompute(engine, full=False) is None
    assert runs(engine) == []
    assert jobs.lease_state(engine).owner == "other-host:1:abcd", "a skipped run never frees someone else's lease"

    assert jobs.release_lease(engine, "other-host:1:abcd", now=jobs.utc_now())
    result = jobs.run_recompute(engine, full=False)
    assert result is not None and result.status == "success" and result.patients == 3
    (row,) = runs(engine)
    assert row.status == "success" and row.trigger == "scheduler"
    host, pid, suffix = row.owner.split(":")
    assert pid == str(os.getpid()) and len(suffix) == 8
    assert jobs.lease_state(engine).owner is None, "released after the run"


def test_a_second_copy_of_the_same_tick_is_skipped(engine):
    base = datetime.now(UTC)
    clock = iter(
        [
            base,
            base,
            base,
            base + timedelta(seconds=30),
            base + timedelta(seconds=30),
            base + timedelta(seconds=30),
            base + timedelta(hours=2),
            base + timedelta(hours=2),
            base + timedelta(hours=2),
            base + timedelta(hours=2),
        ]
    )
    tick = lambda: next(clock)  # noqa: E731
    assert jobs.run_recompute(engine, full=False, min_gap_seconds=450, clock=tick) is not None
    # Another scheduler firing the same tick 30 s later: nothing to do.
    assert jobs.run_recompute(engine, full=False, min_gap_seconds=450, clock=tick) is None
    # The next tick runs.
    assert jobs.run_recompute(engine, full=False, min_gap_seconds=450, clock=tick) is not None
    assert [r.status for r in runs(engine)] == ["success", "success"]
    # A manual run is never suppressed by scheduled ones.
    assert jobs.run_recompute(engine, full=False, trigger="cli") is not None


def test_a_failing_run_is_recorded_and_frees_the_lease(engine, monkeypatch):
    add_patients(engine, 4)

    def boom(*args, **kwargs):
        raise RuntimeError("boom: disk on fire")

    monkeypatch.setattr(pipeline, "apply_batch", boom)
    with pytest.raises(RuntimeError, match="boom"):
        jobs.run_recompute(engine, full=True)
    (failed,) = runs(engine)
    assert failed.status == "failed" and "boom" in failed.message and failed.finished_at is not None
    assert jobs.lease_state(engine).owner is None

    monkeypatch.undo()
    result = jobs.run_recompute(engine, full=True)
    assert result.status == "success" and result.patients == 4
    assert [r.status for r in runs(engine)] == ["failed", "success"]


def test_a_run_that_loses_its_lease_stops_and_is_recorded_failed(engine, monkeypatch):
    add_patients(engine, 2)
    monkeypatch.setattr(jobs, "renew_lease", lambda *a, **k: False)
    with pytest.raises(jobs.LeaseLost):
        jobs.run_recompute(engine, full=True)
    (row,) = runs(engine)
    assert row.status == "failed" and "LeaseLost" in row.message
    assert jobs.lease_state(engine).owner is None


def test_record_missed_run_once_per_tick(engine):
    due = T0 + timedelta(hours=1)
    assert jobs.record_missed_run(engine, "incremental", due, detected_at=due + timedelta(minutes=20))
    assert not jobs.record_missed_run(engine, "incremental", due), "a second scheduler's report is not a new miss"
    (row,) = runs(engine)
    assert (row.kind, row.status, row.started_at, row.finished_at) == ("incremental", "missed", due, due)
    assert "1200 s late" in row.message
    with pytest.raises(ValueError, match="timezone"):
        jobs.record_missed_run(engine, "full", datetime(2026, 1, 1))


# ---------------------------------------------------------------------------
# 2. Two real scheduler processes on one database
# ---------------------------------------------------------------------------

SCHEDULER_MAIN = "import sys; from surveillance.scheduler import main; sys.exit(main())"


def spawn_scheduler(db_url: str, log_path: Path, interval: int, full_at: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    env.update(
        DATABASE_URL=db_url,
        SCHEDULER_INCREMENTAL_SECONDS=str(interval),
        SCHEDULER_FULL_AT=full_at or far_full_at(),
        PYTHONUNBUFFERED="1",
    )
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-c", SCHEDULER_MAIN], cwd=ROOT, env=env, stdout=log, stderr=log)


def test_two_scheduler_processes_never_double_run(db_url, engine, tmp_path):
    add_patients(engine, 6)
    interval = 2
    logs = [tmp_path / "scheduler-a.log", tmp_path / "scheduler-b.log"]
    # One daily time for both: computed per process, two starts either side of a minute
    # boundary got different times, and the second process rightly replaced the job.
    full_at = far_full_at()
    launched = time.monotonic()
    procs = [spawn_scheduler(db_url, logs[0], interval, full_at)]
    try:
        wait_for(lambda: "scheduler running" in logs[0].read_text(), what="the first scheduler")
        # The second one is "started by mistake" on the same database and job store.
        procs.append(spawn_scheduler(db_url, logs[1], interval, full_at))
        wait_for(lambda: "scheduler running" in logs[1].read_text(), what="the second scheduler")
        time.sleep(12)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc in procs]
    elapsed = time.monotonic() - launched
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    for text in texts:
        assert "Traceback" not in text, text
        assert "scheduler stopped" in text
    # The second process found the jobs and kept them (one row each, schedule untouched).
    assert f"job {INCREMENTAL_JOB_ID} kept" in texts[1] and f"job {FULL_JOB_ID} kept" in texts[1]
    assert set(stored_jobs(engine)) == {INCREMENTAL_JOB_ID, FULL_JOB_ID}

    done = executed(engine)
    assert runs(engine, status="missed") == []
    assert all(r.status == "success" and r.finished_at is not None for r in done), done
    assert all(r.kind == "incremental" and r.trigger == "scheduler" for r in done)
    assert_no_overlap(done)
    # One execution per tick: about elapsed/interval runs, never about twice that.
    assert 3 <= len(done) <= elapsed / interval + 2, (len(done), elapsed)
    assert done[0].patients == 6, "the first run scored every queued patient"
    assert jobs.lease_state(engine).owner is None


# ---------------------------------------------------------------------------
# 3. Restart: the job and its next_run_time survive; missed and coalesced runs
# ---------------------------------------------------------------------------


def run_in_thread(engine, settings: SchedulerSettings, caplog):
    """run_scheduler in a thread (no signal handlers there); returns a function that stops it."""
    stop = threading.Event()
    errors: list[BaseException] = []
    ready = len(log_messages(caplog, "scheduler running"))

    def target() -> None:
        try:
            run_scheduler(engine, stop=stop, settings=settings)
        except BaseException as err:  # noqa: BLE001 - reported by the caller
            errors.append(err)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_for(lambda: len(log_messages(caplog, "scheduler running")) > ready or errors, what="the scheduler")

    def halt() -> None:
        stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive() and errors == []

    return halt


def log_messages(caplog, prefix: str) -> list[str]:
    return [r.getMessage() for r in list(caplog.records) if r.getMessage().startswith(prefix)]


def job_actions(caplog) -> dict[str, str]:
    """What the latest start did with each job ("added", "kept", "modified", "replaced")."""
    actions = {}
    for message in log_messages(caplog, "job surveillance-"):
        job_id, action = message.split()[1:3]
        actions[job_id] = action.rstrip(";")
    return actions


def scheduled_times(caplog) -> list[float]:
    """The tick each executed job was run for, from APScheduler's "Running job" log."""
    return [
        r.args[1].timestamp()
        for r in list(caplog.records)
        if r.name == "apscheduler.executors.default" and str(r.msg).startswith("Running job")
    ]


def test_restart_keeps_the_schedule_records_a_missed_run_and_coalesces(engine, caplog):
    caplog.set_level(logging.INFO)
    hour = 3600
    tight = SchedulerSettings(incremental_seconds=hour, full_at=far_full_at(), misfire_grace_seconds=1)

    halt = run_in_thread(engine, tight, caplog)
    halt()
    assert job_actions(caplog) == {INCREMENTAL_JOB_ID: "added", FULL_JOB_ID: "added"}
    first_due, state = stored_jobs(engine)[INCREMENTAL_JOB_ID]
    assert state["misfire_grace_time"] == 1 and state["coalesce"] and state["max_instances"] == 1

    # A plain restart keeps both jobs, one row each, and the stored next_run_time
    # (a replaced job would be due an hour after this restart instead).
    caplog.clear()
    halt = run_in_thread(engine, tight, caplog)
    halt()
    assert job_actions(caplog) == {INCREMENTAL_JOB_ID: "kept", FULL_JOB_ID: "kept"}
    assert set(stored_jobs(engine)) == {INCREMENTAL_JOB_ID, FULL_JOB_ID}
    assert stored_jobs(engine)[INCREMENTAL_JOB_ID][0] == first_due

    # Down 30 minutes past a tick, with a 1 s grace: the tick is recorded as missed, not run.
    now = datetime.now(UTC)
    due = (now - timedelta(minutes=30)).replace(microsecond=0)
    simulate_downtime(engine, INCREMENTAL_JOB_ID, due)
    caplog.clear()
    halt = run_in_thread(engine, tight, caplog)
    missed = wait_for(lambda: runs(engine, status="missed"), what="the missed run to be recorded")
    halt()
    assert len(missed) == 1 and missed[0].kind == "incremental" and missed[0].trigger == "scheduler"
    assert missed[0].started_at == due, "the missed tick is exactly the stored one"
    assert executed(engine) == [] and scheduled_times(caplog) == []
    assert stored_jobs(engine)[INCREMENTAL_JOB_ID][0] == pytest.approx((due + timedelta(hours=1)).timestamp())

    # Down for three ticks with a generous grace: ONE coalesced run, for the latest tick.
    # Changing the grace modifies the stored job in place, so its next_run_time survives.
    now = datetime.now(UTC)
    oldest = (now - timedelta(hours=3) + timedelta(minutes=1)).replace(microsecond=0)
    simulate_downtime(engine, INCREMENTAL_JOB_ID, oldest)
    generous = tight.model_copy(update={"misfire_grace_seconds": 2 * hour})
    caplog.clear()
    halt = run_in_thread(engine, generous, caplog)
    caught_up = wait_for(lambda: finished(engine), what="the catch-up run")
    halt()
    assert job_actions(caplog) == {INCREMENTAL_JOB_ID: "modified", FULL_JOB_ID: "modified"}
    assert len(caught_up) == 1 and caught_up[0].status == "success"
    assert scheduled_times(caplog) == [pytest.approx((oldest + timedelta(hours=2)).timestamp())]
    assert len(runs(engine, status="missed")) == 1
    next_due, state = stored_jobs(engine)[INCREMENTAL_JOB_ID]
    assert state["misfire_grace_time"] == 2 * hour
    assert next_due == pytest.approx((oldest + timedelta(hours=3)).timestamp())


# ---------------------------------------------------------------------------
# The demo scheduler, settings and the schema check
# ---------------------------------------------------------------------------


def test_in_process_scheduler_runs_the_jobs_from_memory(engine):
    add_patients(engine, 2)
    scheduler = start_in_process(engine, SchedulerSettings(incremental_seconds=1, full_at=far_full_at()))
    try:
        assert scheduler.running
        assert {job.id for job in scheduler.get_jobs()} == {INCREMENTAL_JOB_ID, FULL_JOB_ID}
        done = wait_for(lambda: finished(engine), what="an in-process run")
    finally:
        scheduler.shutdown(wait=True)
    assert done[0].status == "success" and done[0].patients == 2
    assert JOB_TABLE not in inspect(engine).get_table_names(), "the demo scheduler stores nothing"
    assert jobs.lease_state(engine).owner is None


def test_settings_come_from_the_environment_and_bad_values_are_named(monkeypatch):
    for name in list(os.environ):
        if name.startswith("SCHEDULER_"):
            monkeypatch.delenv(name)
    defaults = load_settings()
    assert (defaults.incremental_seconds, defaults.full_at, defaults.lease_seconds) == (900, "02:30", 600)
    assert defaults.misfire_grace_seconds == 6 * 3600

    monkeypatch.setenv("SCHEDULER_INCREMENTAL_SECONDS", "60")
    monkeypatch.setenv("SCHEDULER_FULL_AT", "23:05")
    settings = load_settings()
    assert (settings.incremental_seconds, settings.full_hour, settings.full_minute) == (60, 23, 5)

    monkeypatch.setenv("SCHEDULER_FULL_AT", "2:30am")
    monkeypatch.setenv("SCHEDULER_INCREMENTAL_SECONDS", "0")
    with pytest.raises(SchedulerSettingsError) as err:
        load_settings()
    message = str(err.value)
    assert "SCHEDULER_FULL_AT='2:30am'" in message and "HH:MM" in message
    assert "SCHEDULER_INCREMENTAL_SECONDS='0'" in message


def test_scheduler_refuses_an_out_of_date_schema(tmp_path, monkeypatch, capsys):
    from db.schema import SchemaOutOfDate
    from surveillance.scheduler import main

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(SchemaOutOfDate):
        run_scheduler(get_engine(url), stop=threading.Event(), settings=SchedulerSettings())
    with pytest.raises(SchemaOutOfDate):
        start_in_process(get_engine(url), SchedulerSettings())
    monkeypatch.setenv("DATABASE_URL", url)
    assert main() == 2
    assert "python -m surveillance db upgrade" in capsys.readouterr().err
