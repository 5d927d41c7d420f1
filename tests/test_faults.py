"""Faults (notes/security.md Part 2, tests 7 and 12), on SQLite (a file) and PostgreSQL.

* ``kill -9`` of a real ``python -m surveillance recompute --full`` process in
  the middle of its run: every batch is all-or-nothing, so the snapshots it
  rewrote are exactly a committed prefix of batches and every other snapshot
  is untouched; ``job_run`` counts exactly those batches; the dead run's lease
  is taken over at once by the next run on this host (its pid is gone), which
  marks the dead run failed ("aborted") and completes.
* a lease-free re-score (trigger ``service``) left ``running`` by a dead app
  process is marked failed once older than the lease TTL, never before.
* the database unavailable: the pages show a plain error with a reference id,
  no traceback, and the stale-data banner (AppTest).

"Mid-run" is read from the ``job_run`` row, and the process is frozen with
SIGSTOP before its state is inspected, so the test never races the run's end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from surveillance import jobs, pipeline
from surveillance.calendar import clinical_day
from surveillance.demo import generate_demo

ROOT = Path(__file__).parents[1]
PATIENTS = 4000
BATCH = 100
STALE = "stale-before-kill"


def cli(db_url: str, *args: str, log: Path | None = None, wait: bool = True):
    env = dict(os.environ, DATABASE_URL=db_url, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "surveillance", *args]
    if not wait:
        with open(log, "wb") as handle:
            return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=handle)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def wait_for(read, condition, *, timeout: float = 120.0, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if condition(value):
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; last seen: {value!r}")


def test_kill_9_mid_recompute_leaves_whole_batches_and_the_next_run_recovers(db_url, engine, tmp_path):
    now = datetime.now(UTC)
    generate_demo(engine, patients=PATIENTS, seed=11, today=clinical_day(now))
    before = pipeline.recompute(engine, full=True, now=now, trigger="cli")
    ids = [r[0] for r in rows(engine, "SELECT id FROM patient ORDER BY id")]
    assert len(ids) == PATIENTS
    assert rows(engine, "SELECT COUNT(*) FROM risk_snapshot")[0][0] == PATIENTS
    # Every snapshot must be rewritten by the next run (its stored content hash no longer
    # matches), so the snapshots a run has committed are exactly those carrying its id.
    with engine.begin() as conn:
        conn.execute(text("UPDATE risk_snapshot SET content_hash = :s"), {"s": STALE})
    history_before = rows(engine, "SELECT COUNT(*) FROM risk_snapshot_history")[0][0]

    proc = cli(db_url, "recompute", "--full", "--batch-size", str(BATCH), log=tmp_path / "killed.log", wait=False)
    try:
        running = wait_for(
            lambda: rows(
                engine, "SELECT id, batches, patients FROM job_run WHERE status = 'running' AND trigger = 'cli'"
            ),
            lambda found: bool(found) and found[0].batches >= 2,
            what="the recompute to commit two batches",
        )
        os.kill(proc.pid, signal.SIGSTOP)  # frozen mid-run: it can neither finish nor record anything
        run_id = running[0].id
        killed = rows(engine, "SELECT status, batches, patients, owner FROM job_run WHERE id = :i", i=run_id)[0]
        assert killed.status == "running"
        assert 2 <= killed.batches < PATIENTS // BATCH, "the process must be stopped mid-run"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    # The dead run's committed work: whole batches, a prefix of the patients, counted in job_run.
    written = rows(engine, "SELECT patient_id FROM risk_snapshot WHERE run_id = :r ORDER BY patient_id", r=run_id)
    written_ids = [r[0] for r in written]
    assert len(written_ids) % BATCH == 0, "a half-written batch is visible"
    assert written_ids == ids[: len(written_ids)], "the rewritten snapshots are not a prefix of committed batches"
    assert len(written_ids) >= killed.patients, "a batch counted in job_run is missing"
    after_kill = rows(engine, "SELECT status, batches, patients FROM job_run WHERE id = :i", i=run_id)[0]
    assert after_kill.status == "running"  # nothing could record the kill
    assert after_kill.patients == len(written_ids) == after_kill.batches * BATCH
    # Every other patient keeps its previous snapshot untouched; none is missing.
    assert rows(engine, "SELECT COUNT(*) FROM risk_snapshot")[0][0] == PATIENTS
    untouched = rows(
        engine, "SELECT COUNT(*) FROM risk_snapshot WHERE run_id = :b AND content_hash = :s", b=before.run_id, s=STALE
    )[0][0]
    assert untouched == PATIENTS - len(written_ids)
    history = rows(engine, "SELECT COUNT(*) FROM risk_snapshot_history WHERE run_id = :r", r=run_id)[0][0]
    assert history == len(written_ids)
    assert rows(engine, "SELECT COUNT(*) FROM risk_snapshot_history")[0][0] == history_before + history
    duplicates = rows(
        engine,
        "SELECT patient_id, rule_id FROM alert WHERE status IN ('open', 'acknowledged', 'snoozed') "
        "GROUP BY patient_id, rule_id HAVING COUNT(*) > 1",
    )
    assert duplicates == []

    # The dead process still "holds" the lease, unexpired; it was a process of this host that is
    # gone, so the next run takes the lease over at once instead of waiting out the TTL.
    lease = jobs.lease_state(engine)
    assert lease.owner == killed.owner
    until = datetime.fromisoformat(lease.until) if isinstance(lease.until, str) else lease.until
    assert (until if until.tzinfo else until.replace(tzinfo=UTC)) > datetime.now(UTC) + timedelta(seconds=60)
    recovered = cli(db_url, "recompute", "--full", "--json")
    assert recovered.returncode == 0, recovered.stderr
    dead = rows(engine, "SELECT status, finished_at, message FROM job_run WHERE id = :i", i=run_id)[0]
    assert dead.status == "failed"
    assert dead.finished_at is not None
    assert dead.message.startswith("aborted:")
    latest = rows(engine, "SELECT id, status, patients FROM job_run WHERE trigger = 'cli' ORDER BY id DESC LIMIT 1")[0]
    assert latest.status == "success" and latest.patients == PATIENTS
    assert rows(engine, "SELECT COUNT(*) FROM job_run WHERE status = 'running'")[0][0] == 0
    # Every snapshot is current again; the dead run's prefix already held the same content, so the
    # new run rewrote exactly the rest.
    assert rows(engine, "SELECT COUNT(*) FROM risk_snapshot WHERE content_hash = :s", s=STALE)[0][0] == 0
    rewritten = [r[0] for r in rows(engine, "SELECT patient_id FROM risk_snapshot WHERE run_id = :r", r=latest.id)]
    assert sorted(rewritten) == ids[len(written_ids) :]
    assert jobs.lease_state(engine).owner is None


def test_a_dead_rescore_is_marked_aborted_only_after_the_lease_ttl(engine):
    t0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for trigger, owner in (("service", None), ("scheduler", "host:1:dead")):
            conn.execute(
                text(
                    "INSERT INTO job_run (kind, trigger, started_at, status, patients, snapshots_written, "
                    "alerts_opened, alerts_resolved, batches, owner) "
                    "VALUES ('incremental', :t, :s, 'running', 0, 0, 0, 0, 0, :o)"
                ),
                {"t": trigger, "s": t0, "o": owner},
            )
    statuses = lambda: dict(rows(engine, "SELECT trigger, status FROM job_run"))  # noqa: E731
    # 5 minutes on: the owned run's holder is gone (we hold the lease), the re-score may still be running.
    marked = jobs.mark_abandoned_runs(engine, "me:2:live", now=t0 + timedelta(minutes=5), lease_seconds=600)
    assert len(marked) == 1
    assert statuses() == {"service": "running", "scheduler": "failed"}
    # Past the TTL the re-score is abandoned too; our own run is never touched.
    jobs.mark_abandoned_runs(engine, "me:2:live", now=t0 + timedelta(minutes=11), lease_seconds=600)
    assert statuses() == {"service": "failed", "scheduler": "failed"}
    messages = [r[0] for r in rows(engine, "SELECT message FROM job_run")]
    assert all(m.startswith("aborted:") for m in messages)


def test_run_recompute_marks_a_dead_run_before_it_runs(engine):
    from tests.factories import add_patients

    add_patients(engine, 5)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO job_run (kind, trigger, started_at, status, patients, snapshots_written, "
                "alerts_opened, alerts_resolved, batches, owner) "
                "VALUES ('full', 'scheduler', :s, 'running', 0, 0, 0, 0, 3, 'host:1:dead')"
            ),
            {"s": datetime.now(UTC) - timedelta(hours=1)},
        )
    result = jobs.run_recompute(engine, full=True)
    assert result is not None and result.status == "success" and result.patients == 5
    runs = rows(engine, "SELECT id, status, message FROM job_run ORDER BY id")
    assert [(r.status, r.id == result.run_id) for r in runs] == [("failed", False), ("success", True)]
    assert runs[0].message.startswith("aborted:")


def test_a_lease_is_taken_over_from_a_dead_process_of_this_host_only(engine):
    """Only an expired lease, or one whose holder is a process of this host that no longer exists, is free."""
    import socket

    now = datetime.now(UTC)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)  # reaped: its pid names no process now
    host = socket.gethostname()[:80]
    dead = f"{host}:{child.pid}:deadbeef"
    alive = f"{host}:{os.getpid()}:0f0f0f0f"
    elsewhere = f"another-host-{host}:{child.pid}:cafecafe"
    assert jobs.dead_here(dead) and not jobs.dead_here(alive) and not jobs.dead_here(elsewhere)
    assert not jobs.dead_here("garbage") and not jobs.dead_here(None)
    for holder, free in ((alive, False), (elsewhere, False), (dead, True)):
        jobs.release_lease(engine, "me", now=now)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM job_lease"))
        assert jobs.acquire_lease(engine, holder, now=now, lease_seconds=600)
        assert jobs.acquire_lease(engine, "me:1:x", now=now, lease_seconds=600) is free, holder
        assert jobs.lease_state(engine).owner == ("me:1:x" if free else holder)
    # An expired lease is free whoever held it.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM job_lease"))
    assert jobs.acquire_lease(engine, elsewhere, now=now - timedelta(seconds=700), lease_seconds=600)
    assert jobs.acquire_lease(engine, "me:1:x", now=now, lease_seconds=600)
