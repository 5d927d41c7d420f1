"""The recompute: facts → scores, the imaging clock, alerts and a snapshot per patient.

Set-based, as ``shared/design.md`` requires: patients are processed in batches.
Each batch is *prepared* by :func:`surveillance.prepare.prepare_batch` — read
with a handful of queries (the patient row, its ``patient_state``, its active
lesions), scored by :class:`surveillance.batch.BatchScorer` with the scoring
core's own functions, judged by the pure rule engine, its alerts planned — and
written here in **one transaction per batch** with bulk statements
(:func:`apply_batch`).  A full run of many patients prepares its batches in
worker processes (:mod:`surveillance.workers`); incremental runs prepare each
batch inside its own write transaction.  A crash leaves every batch either fully written
or untouched, so the previous snapshot stays current for every patient whose
batch did not commit; the run is recorded in ``job_run`` as failed.  ``job_run``
counts the committed batches in each batch's own transaction, and a run whose
process was killed outright (so it could record nothing) is marked failed as
abandoned by the next run (:func:`surveillance.jobs.mark_abandoned_runs`).

* **Full** runs visit every patient; **incremental** runs visit the patients
  whose facts changed (``recompute_queue``), whose clock crossed a date
  (``risk_snapshot.recheck_on``), whose snooze expired or whose alert is due to
  escalate.  Both produce the same snapshot for the same data.
* Snapshots are rewritten only when their content changed (a 64-bit content
  hash), and each change is appended to ``risk_snapshot_history``.
* Alerts: at most one active (open, acknowledged or snoozed) per patient and
  rule.  A rule that stops firing resolves its alert; a new episode (a new
  evidence key) supersedes the old one; an acknowledged or snoozed alert is
  never reopened by a rerun, and an episode a person closed (done, dismissed)
  is not reopened either.  Updates carry the alert's version, so a person's
  concurrent acknowledgement always wins.

The clock is a parameter (``now``); :mod:`surveillance.jobs` reads it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from db import bulk
from db.engine import derived_write, is_sqlite, writer
from db.models import ACTIVE_ALERT_SQL, RiskSnapshot, utcnow
from db.readers import DbapiReader
from surveillance.batch import shared_scorer
from surveillance.calendar import clinical_day
from surveillance.prepare import ALERT_INSERT_COLUMNS as ALERT_INSERT_COLUMNS
from surveillance.prepare import (
    HISTORY_COLUMNS,
    META_COLUMNS,
    NO_ALERTS,
    OPEN_RULES_ORDER,
    OPEN_RULES_ORDER_KEY,
    SNAPSHOT_COLUMNS,
    PreparedBatch,
    Selection,
    alert_digests,
    prepare_batch,
    select_ids,
    state_stamps,
    wake_up_sql,
)
from surveillance.rules import load_rules
from surveillance.rules.schema import RuleSet
from surveillance.scoring import ENGINE_VERSION
from surveillance.trend_tables import refresh_trend_tables

log = logging.getLogger(__name__)

FULL_BATCH = 50_000
#: A full run's batch when worker processes prepare them: smaller, so that the batches prepared ahead
#: of the writer (first runs write every row and the writer is the slower side) hold less memory.
WORKER_BATCH = 25_000
INCREMENTAL_BATCH = 5_000
_PG_BATCH_LOCK = 727_002  # advisory lock key that serialises batch writes on PostgreSQL (audit uses 727_001)
#: Re-scoring passes, within one run, for patients saved while their batch was scored (they stay queued after).
REVISIT_PASSES = 3
__all__ = ["SNAPSHOT_COLUMNS", "RunResult", "apply_batch", "recompute"]
#: Snapshot columns as written: the content, then what the alert plan saw (not part of the content hash).
WRITE_COLUMNS = SNAPSHOT_COLUMNS + META_COLUMNS
#: Snapshot columns held by an index of ``risk_snapshot`` (read from the model, so a new index counts).
#: SQLite rewrites the entries of every index whose column an UPDATE *sets*, even to the value it had:
#: setting all 40 columns cost 100 ms per 1,000 rows at 100,000 patients against 9 ms for the
#: unindexed ones.  A changed snapshot therefore sets an indexed column only when its value changed.
_INDEXED = tuple(
    c
    for c in WRITE_COLUMNS
    if c != "patient_id" and any(c in index.columns for index in RiskSnapshot.__table__.indexes)
)
_PLAIN = [c for c in WRITE_COLUMNS if c != "patient_id" and c not in _INDEXED]
_POSITION = {c: k for k, c in enumerate(WRITE_COLUMNS)}
#: Use worker processes for a full run when it has more patients than this (and the machine more than one core).
WORKERS_FROM = FULL_BATCH

@dataclass
class RunResult:
    run_id: int
    kind: str
    status: str
    patients: int = 0
    snapshots_written: int = 0
    alerts_opened: int = 0
    alerts_resolved: int = 0
    alerts_updated: int = 0
    #: Patients whose alert plan was made (the others' firings and alert rows were as stored).
    planned: int = 0
    batches: int = 0
    seconds: float = 0.0
    message: str | None = None
    #: Seconds per phase, summed over batches (preparing phases may run in parallel in worker processes).
    phases: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _update_alerts(
    conn,
    row_columns: tuple[str, ...],
    fixed: str,
    rows: list[tuple],
    params: list[Any],
    *,
    extra_where: str = "",
    status_after: Callable[[tuple], str],
    chunk: int = 500,
) -> set[int]:
    """Update many alerts, each only at the version read (optimistic locking); the ids changed.

    ``rows`` are ``(id, version, *values)`` with ``values`` for ``row_columns``;
    ``fixed`` is the rest of the SET clause, its ``?`` bound to ``params``.  An
    alert a person acted on meanwhile is left alone and reported by its absence.

    PostgreSQL: ``UPDATE … FROM (VALUES …) RETURNING`` (few round trips; ``VALUES``
    columns are ``column1``, ``column2``…).  SQLite: ``executemany`` — measured
    4× faster there than the join — and when fewer rows changed than were sent,
    the changed ones are those now at version + 1 with the status set.
    """
    if not rows:
        return set()
    if conn.dialect.name == "sqlite":
        sets = ", ".join([f"{c} = ?" for c in row_columns] + [fixed])
        text = f"UPDATE alert SET {sets} WHERE alert.id = ? AND alert.version = ?{extra_where}"
        count = bulk.executemany_count(conn, text, [(*row[2:], *params, row[0], row[1]) for row in rows])
        if count == len(rows):
            return {row[0] for row in rows}
        now_at = {
            alert_id: (version, status)
            for alert_id, version, status in bulk.fetchall(
                conn, "SELECT id, version, status FROM alert WHERE id IN " + bulk.in_list([row[0] for row in rows])
            )
        }
        return {row[0] for row in rows if now_at.get(row[0]) == (row[1] + 1, status_after(row))}
    changed: set[int] = set()
    sets = ", ".join([f"{c} = v.column{3 + i}" for i, c in enumerate(row_columns)] + [fixed])
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        width = len(part[0])
        values = ", ".join("(" + ", ".join("?" for _ in range(width)) + ")" for _ in part)
        text = (
            f"UPDATE alert SET {sets} FROM (VALUES {values}) AS v "
            f"WHERE alert.id = v.column1 AND alert.version = v.column2{extra_where} RETURNING alert.id"
        )
        # The SET clause's own parameters come first in the statement, then the VALUES rows.
        changed.update(r[0] for r in bulk.fetchall(conn, text, [*params, *(value for row in part for value in row)]))
    return changed


def _canonical(value: Any) -> str | None:
    """A stored or new column value in one comparable form (SQLite and PostgreSQL return different types)."""
    if value is None:
        return None
    if isinstance(value, bool | int | np.integer):
        return str(int(value))
    if isinstance(value, date):  # a datetime is a date too
        return value.isoformat()[:10]
    return str(value)


def _write_snapshots(conn, rows: list[tuple], stored: dict[int, tuple]) -> None:
    """Write changed snapshots (``rows`` in :data:`WRITE_COLUMNS` order); ``stored``: id -> (hash, *indexed).

    A patient without a snapshot is inserted (an upsert, so a concurrent first
    write cannot fail).  One with a snapshot is updated, setting the unindexed
    columns and only those indexed columns whose value changed; the rows are
    grouped by which indexed columns changed, a statement per group.
    """
    plain = [_POSITION[c] for c in _PLAIN]
    indexed = [_POSITION[c] for c in _INDEXED]
    fresh: list[tuple] = []
    groups: dict[tuple[bool, ...], list[tuple]] = {}
    for row in rows:
        before = stored.get(row[0])
        if before is None:
            fresh.append(row)
            continue
        # Equal as stored (most of them) needs no canonical form; unequal may still be the same
        # value in another type (a PostgreSQL date against its ISO text).
        moved = tuple(
            row[k] != old and _canonical(row[k]) != _canonical(old) for k, old in zip(indexed, before[1:], strict=True)
        )
        groups.setdefault(moved, []).append(row)
    if fresh:
        bulk.executemany(conn, bulk.upsert_sql("risk_snapshot", WRITE_COLUMNS, ["patient_id"]), fresh)
    for moved, group in groups.items():
        sets = [k for k in plain] + [k for k, flag in zip(indexed, moved, strict=True) if flag]
        text = (
            "UPDATE risk_snapshot SET "
            + ", ".join(f"{WRITE_COLUMNS[k]} = ?" for k in sets)
            + " WHERE patient_id = ?"
        )
        count = bulk.executemany_count(conn, text, [tuple(row[k] for k in sets) + (row[0],) for row in group])
        if count != len(group):  # a snapshot vanished meanwhile: write the whole rows (idempotent)
            bulk.executemany(conn, bulk.upsert_sql("risk_snapshot", WRITE_COLUMNS, ["patient_id"]), group)


# ---------------------------------------------------------------------------
# Writing one prepared batch
# ---------------------------------------------------------------------------


def apply_batch(
    engine: Engine, prepared: PreparedBatch, run_id: int, now: datetime, queue_upto: int | None
) -> dict[str, Any]:
    """Write one :class:`PreparedBatch` in one transaction: alerts, snapshots, history, the queue, the run's counts.

    First, under the write lock, every patient the batch writes to is checked:
    if their facts (``patient_state.updated_at``) or their alert rows (the
    digest) changed since the batch was read, nothing of theirs is written and
    they are returned in ``"stale"`` — queued, and re-scored by the run before
    it ends.  So a person's save or alert action made while the batch was being
    prepared always stands, and the plan written is the plan this transaction
    would have made.  Alert updates still carry the version read, so a change
    that slips in on PostgreSQL (whose lock serialises only recompute batches)
    is not overwritten either.
    """
    from surveillance.prepare import PhaseClock

    clock = PhaseClock()
    with derived_write(engine) as conn:
        _lock_batches(engine, conn)
        counts = _write_prepared(conn, prepared, run_id, now, queue_upto, clock, check_alerts=True)
    clock("write.commit")
    counts["timings"] = {**prepared.timings, **clock.laps}
    return counts


def _lock_batches(engine: Engine, conn) -> None:
    if not is_sqlite(engine):
        # One batch write at a time, as SQLite's BEGIN IMMEDIATE gives: two re-scores of one
        # patient would otherwise both insert "its" new alert (a unique violation).
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_BATCH_LOCK})")


def _write_prepared(
    conn, prepared: PreparedBatch, run_id: int, now: datetime, queue_upto: int | None, clock, *, check_alerts: bool
) -> dict[str, Any]:
    """The body of :func:`apply_batch`, in the caller's write transaction.

    ``check_alerts=False`` when the batch was prepared in this very transaction (nothing
    could change its alert rows since); the facts' stamps are still checked on PostgreSQL,
    whose transactions do not keep other writers out.
    """
    sel = prepared.selection
    reader = DbapiReader(conn, own_transaction=False)
    touched = sorted(prepared.stamps)
    stale: set[int] = set()
    if touched and (check_alerts or conn.dialect.name != "sqlite"):
        check = select_ids(touched, sel)
        now_stamps = state_stamps(reader, check)
        now_digests = alert_digests(reader, check) if check_alerts else {}
        stale = {
            p
            for p in touched
            if now_stamps.get(p) != prepared.stamps[p]
            or (check_alerts and now_digests.get(p, NO_ALERTS) != prepared.digests[p])
        }
    clock("write.check")
    snapshots = [row for row in prepared.snapshots if row[0] not in stale]
    updates = [row for row in prepared.updates if row[6] not in stale]
    resolves = [row for row in prepared.resolves if row[4][0] not in stale]
    inserts = [row for row in prepared.inserts if row[0] not in stale]
    stale_alert_ids: set[int] = set()
    conflicted: set[int] = set()
    updated = 0
    # Updates, grouped by the shape of their SET clause; an alert whose version moved is stale.
    shapes: dict[tuple[bool, bool], list[tuple]] = {}
    for severity, status, clear_snooze, escalated_at, alert_id, version, pid in updates:
        shapes.setdefault((bool(clear_snooze), escalated_at is not None), []).append(
            (alert_id, version, severity, status, pid)
        )
    for (clear_snooze, escalate), rows in shapes.items():
        fixed = (
            "version = alert.version + 1"
            + (", snoozed_until = NULL, snooze_reason = NULL" if clear_snooze else "")
            + (", escalated_at = ?" if escalate else "")
        )
        done = _update_alerts(
            conn,
            ("severity", "status"),
            fixed,
            [row[:4] for row in rows],
            [now] if escalate else [],
            status_after=lambda r: r[3],
        )
        updated += len(done)
        for row in rows:
            if row[0] not in done:
                stale_alert_ids.add(row[0])
                conflicted.add(row[4])
    resolved = 0
    blocked: set[tuple[int, str]] = set()
    by_reason: dict[str, list[tuple]] = {}
    for _closed_at, reason, alert_id, version, pair in resolves:
        by_reason.setdefault(reason, []).append((alert_id, version, pair))
    for reason, rows in by_reason.items():
        done = _update_alerts(
            conn,
            (),
            "status = 'resolved', closed_at = ?, closed_by = 'system', close_reason = ?, "
            "version = alert.version + 1",
            [(alert_id, version) for alert_id, version, _pair in rows],
            [now, reason],
            extra_where=f" AND alert.status IN {ACTIVE_ALERT_SQL}",
            status_after=lambda r: "resolved",
        )
        resolved += len(done)
        for alert_id, _version, pair in rows:
            if alert_id not in done:
                stale_alert_ids.add(alert_id)
                conflicted.add(pair[0])
                blocked.add(pair)  # still active (a person just acted on it): no second active alert
    # Inserts after the resolutions: a new episode may replace the alert resolved just above.
    inserts = [row for row in inserts if (row[0], row[1]) not in blocked]
    bulk.executemany(conn, bulk.insert_sql("alert", ALERT_INSERT_COLUMNS), inserts)
    clock("write.alerts")
    # The digest, as the alert rows now are, of every patient whose alerts this plan changed.
    # A batch prepared in this transaction (an incremental run) leaves its patients' digests
    # unknown instead: the next full run then plans them again (a few thousand a day, about
    # 10 ms per thousand), which is cheaper than reading the digests back here in every
    # incremental run (15 ms per 1,000 patients at 1M).
    digest_at, print_at = _POSITION["alert_digest"], _POSITION["alert_fingerprint"]
    changed_alerts: set[int] = set()
    if check_alerts:
        changed_alerts = {row[0] for row in inserts} | {row[4][0] for row in resolves} | {row[6] for row in updates}
        changed_alerts |= {row[0] for row in snapshots if row[digest_at] is None}
    after = alert_digests(reader, select_ids(sorted(changed_alerts), sel)) if changed_alerts else {}
    if changed_alerts or conflicted:
        fixed_rows = []
        for row in snapshots:
            pid = row[0]
            if pid in changed_alerts or pid in conflicted:
                row = list(row)
                if pid in changed_alerts:
                    row[digest_at] = after.get(pid, NO_ALERTS)
                if pid in conflicted:  # the plan did not all apply: the next run plans this patient again
                    row[print_at] = None
                row = tuple(row)
            fixed_rows.append(row)
        snapshots = fixed_rows
    clock("write.digests")
    written = 0
    if snapshots:
        stored = {
            row[0]: row[1:]
            for row in bulk.fetchall(
                conn,
                f"SELECT patient_id, content_hash, {', '.join(_INDEXED)} FROM risk_snapshot "
                f"WHERE {select_ids([row[0] for row in snapshots], sel).where('patient_id')}",
            )
        }
        clock("write.stored")
        _write_snapshots(conn, snapshots, stored)
        clock("write.snapshots")
        hash_at = _POSITION["content_hash"]
        history_at = [_POSITION[c] for c in HISTORY_COLUMNS]
        history = [
            tuple(row[k] for k in history_at)
            for row in snapshots
            if (stored.get(row[0]) or (None,))[0] != row[hash_at]
        ]
        written = len(history)
        bulk.executemany(conn, bulk.insert_sql("risk_snapshot_history", HISTORY_COLUMNS), history)
        clock("write.history")
    if stale_alert_ids:
        # A person changed one of these alerts meanwhile: their change stands; rescore next run.
        bulk.execute(
            conn,
            "INSERT INTO recompute_queue (patient_id, queued_at) SELECT patient_id, ? FROM alert WHERE id IN "
            + bulk.in_list(sorted(stale_alert_ids)),
            (now,),
        )
    if queue_upto is not None:
        bulk.execute(
            conn, f"DELETE FROM recompute_queue WHERE id <= ? AND {sel.where('patient_id')}", (queue_upto,)
        )
    if stale:
        bulk.executemany(
            conn,
            "INSERT INTO recompute_queue (patient_id, queued_at) VALUES (?, ?)",
            [(p, now) for p in sorted(stale)],
        )
    n = prepared.patients
    # The run's progress, in the batch's own transaction: ``job_run`` always counts exactly the
    # committed batches, so a run killed mid-way shows how far it got (and nothing more).
    bulk.execute(
        conn,
        "UPDATE job_run SET patients = patients + ?, batches = batches + 1, "
        "snapshots_written = snapshots_written + ?, alerts_opened = alerts_opened + ?, "
        "alerts_resolved = alerts_resolved + ? WHERE id = ?",
        (0 if prepared.revisit else n, written, len(inserts), resolved, run_id),
    )
    clock("write.queue")
    return {
        "stale": sorted(stale),
        "revisit": prepared.revisit,
        "patients": n,
        "snapshots_written": written,
        "alerts_opened": len(inserts),
        "alerts_resolved": resolved,
        "alerts_updated": updated,
        "planned": prepared.planned,
        "timings": {**prepared.timings, **clock.laps},
    }


def _prepare_here(
    engine: Engine, ruleset: RuleSet, sel: Selection, run_id: int, now: datetime, today: date, revisit: bool = False
) -> PreparedBatch | None:
    """Prepare a batch in this process, through the engine's own driver (its own read transaction)."""
    with engine.connect() as conn:
        return prepare_batch(
            DbapiReader(conn), shared_scorer(), ruleset, sel, run_id=run_id, now=now, today=today, revisit=revisit
        )


def _process(
    engine: Engine,
    ruleset: RuleSet,
    sel: Selection,
    run_id: int,
    now: datetime,
    today: date,
    queue_upto: int | None,
    revisit: bool = False,
) -> dict[str, Any]:
    """Prepare and write one batch in one write transaction (incremental runs, re-scores, small full runs).

    Read under the write lock, the batch needs no check of its alert rows and every
    patient is planned (the skip pays off in the daily full run, not for patients
    whose facts just changed); the lock is held for the batch's reads too, about as
    long as the writes themselves take.
    """
    from surveillance.prepare import PhaseClock

    with derived_write(engine) as conn:
        _lock_batches(engine, conn)
        prepared = prepare_batch(
            DbapiReader(conn, own_transaction=False),
            shared_scorer(),
            ruleset,
            sel,
            run_id=run_id,
            now=now,
            today=today,
            revisit=revisit,
            in_transaction=True,
        )
        if prepared is None:
            return {"patients": 0}
        clock = PhaseClock()
        counts = _write_prepared(conn, prepared, run_id, now, queue_upto, clock, check_alerts=False)
    clock("write.commit")
    counts["timings"] = {**prepared.timings, **clock.laps}
    return counts


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


def _start_run(
    engine: Engine, kind: str, trigger: str, now: datetime, today: date, ruleset: RuleSet, owner: str | None
) -> int:
    with derived_write(engine) as conn:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(
                bulk.sql(
                    conn,
                    "INSERT INTO job_run (kind, trigger, started_at, status, patients, snapshots_written, "
                    "alerts_opened, alerts_resolved, batches, owner, engine_version, rules_version, as_of) "
                    "VALUES (?, ?, ?, 'running', 0, 0, 0, 0, 0, ?, ?, ?, ?)"
                    + ("" if is_sqlite(engine) else " RETURNING id"),
                ),
                (kind, trigger, now, owner, ENGINE_VERSION, ruleset.version, today.isoformat()),
            )
            run_id = cursor.lastrowid if is_sqlite(engine) else cursor.fetchone()[0]
        finally:
            cursor.close()
    return int(run_id)


def _finish_run(engine: Engine, result: RunResult, finished: datetime) -> None:
    with derived_write(engine) as conn:
        bulk.execute(
            conn,
            "UPDATE job_run SET finished_at = ?, status = ?, patients = ?, snapshots_written = ?, alerts_opened = ?, "
            "alerts_resolved = ?, batches = ?, message = ? WHERE id = ?",
            (
                finished,
                result.status,
                result.patients,
                result.snapshots_written,
                result.alerts_opened,
                result.alerts_resolved,
                result.batches,
                result.message,
                result.run_id,
            ),
        )


def incremental_ids(engine: Engine, now: datetime, today: date) -> tuple[list[int], int | None]:
    """Patients an incremental run must visit, and the last queue id it covers."""
    with engine.connect() as conn:
        queue = bulk.fetchall(conn, "SELECT MAX(id) FROM recompute_queue")
        upto = queue[0][0]
        ids: set[int] = set()
        if upto is not None:
            ids.update(
                r[0]
                for r in bulk.fetchall(conn, "SELECT DISTINCT patient_id FROM recompute_queue WHERE id <= ?", (upto,))
            )
        ids.update(
            r[0]
            for r in bulk.fetchall(
                conn, "SELECT patient_id FROM risk_snapshot WHERE recheck_on <= ?", (today.isoformat(),)
            )
        )
        ids.update(r[0] for r in bulk.fetchall(conn, wake_up_sql(engine.dialect.name, "?"), (now, now)))
        conn.rollback()
    return sorted(ids), upto


def recompute(
    engine: Engine,
    *,
    full: bool,
    now: datetime,
    trigger: str = "cli",
    owner: str | None = None,
    rules: RuleSet | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    refresh_trends: bool | None = None,
    only: Sequence[int] | None = None,
    workers: int | None = None,
) -> RunResult:
    """Run a full or incremental recompute as of ``now`` (UTC-aware).

    ``only`` restricts an incremental run to these patients (a form that was
    just saved re-scores its patient at once).  ``workers``: processes that
    prepare a full run's batches while this one writes them (default: one per
    core when the run has more than :data:`WORKERS_FROM` patients, else none;
    ``SURVEILLANCE_RECOMPUTE_WORKERS`` overrides, 0 to prepare here).
    """
    import time

    started = time.perf_counter()
    today = clinical_day(now)
    ruleset = rules or load_rules()
    kind = "full" if full else "incremental"
    run_id = _start_run(engine, kind, trigger, now, today, ruleset, owner)
    result = RunResult(run_id=run_id, kind=kind, status="running")
    stale: set[int] = set()
    try:
        if full:
            with engine.connect() as conn:
                ids = [r[0] for r in bulk.fetchall(conn, "SELECT id FROM patient ORDER BY id")]
                upto = bulk.fetchall(conn, "SELECT MAX(id) FROM recompute_queue")[0][0]
                conn.rollback()
            total = len(ids)
            count = _worker_count(workers, total)
            size = batch_size or (WORKER_BATCH if count else FULL_BATCH)
            ranges = [Selection(lo=ids[k], hi=ids[min(k + size, total) - 1]) for k in range(0, total, size)]

            def applied(prepared: PreparedBatch | None) -> None:
                if prepared is None:
                    return
                counts = apply_batch(engine, prepared, run_id, now, upto)
                _accumulate(result, counts)
                stale.update(counts.get("stale", ()))
                if progress:
                    progress(result.patients, total)

            done = 0
            if count:
                from concurrent.futures.process import BrokenProcessPool

                from surveillance.workers import PreparePool

                try:
                    with PreparePool(engine, ruleset, count) as pool:
                        for prepared in pool.prepared(ranges, run_id=run_id, now=now, today=today):
                            applied(prepared)
                            done += 1
                except (BrokenProcessPool, ImportError) as err:
                    # A worker that cannot start or dies (killed, out of memory, a missing driver):
                    # the batches already written stand; the rest are prepared here.
                    log.warning(
                        "recompute run %s: worker processes failed (%s: %s); preparing the remaining %d batches "
                        "in this process",
                        run_id, type(err).__name__, err, len(ranges) - done,
                    )
            for sel in ranges[done:]:
                applied(_prepare_here(engine, ruleset, sel, run_id, now, today))
        else:
            if only is not None:
                ids = sorted(set(only))
                with engine.connect() as conn:
                    upto = bulk.fetchall(conn, "SELECT MAX(id) FROM recompute_queue")[0][0]
                    conn.rollback()
            else:
                ids, upto = incremental_ids(engine, now, today)
            size = batch_size or INCREMENTAL_BATCH
            for start in range(0, len(ids), size):
                counts = _process(engine, ruleset, Selection(ids=tuple(ids[start : start + size])), run_id, now, today, upto)
                _accumulate(result, counts)
                stale.update(counts.get("stale", ()))
                if progress:
                    progress(result.patients, len(ids))
        # Patients saved while their batch was being scored: re-score them from their new facts now.
        for _ in range(REVISIT_PASSES):
            if not stale:
                break
            ids = sorted(stale)
            stale.clear()
            with engine.connect() as conn:
                upto = bulk.fetchall(conn, "SELECT MAX(id) FROM recompute_queue")[0][0]
                conn.rollback()
            for start in range(0, len(ids), INCREMENTAL_BATCH):
                sel = Selection(ids=tuple(ids[start : start + INCREMENTAL_BATCH]))
                counts = _process(engine, ruleset, sel, run_id, now, today, upto, revisit=True)
                _accumulate(result, counts)
                stale.update(counts.get("stale", ()))
        if refresh_trends if refresh_trends is not None else full:
            refresh_trend_tables(engine, today, now=now)
        if full:
            optimize(engine)
            _record_open_rules_order(engine, now)
        result.status = "success"
    except BaseException as err:
        result.status = "failed"
        result.message = f"{type(err).__name__}: {err}"[:2000]
        result.seconds = time.perf_counter() - started
        try:
            _finish_run(engine, result, utcnow())
        except Exception:  # the database itself may be gone; the original error matters more
            log.exception("could not record the failed run %s", run_id)
        raise
    result.seconds = time.perf_counter() - started
    _finish_run(engine, result, utcnow())
    return result


def _record_open_rules_order(engine: Engine, now: datetime) -> None:
    """After a complete full run every stored ``open_rules`` mask uses this code's rule order (prepare.py)."""
    with derived_write(engine) as conn:
        bulk.execute(
            conn,
            bulk.upsert_sql("app_setting", ["key", "value", "updated_at"], ["key"]),
            (OPEN_RULES_ORDER_KEY, OPEN_RULES_ORDER, now),
        )


def _worker_count(workers: int | None, patients: int) -> int:
    """How many worker processes prepare a full run's batches (0: this process prepares them)."""
    if workers is None:
        configured = os.environ.get("SURVEILLANCE_RECOMPUTE_WORKERS", "").strip()
        if configured:
            if not configured.isdigit():
                raise ValueError(f"SURVEILLANCE_RECOMPUTE_WORKERS must be a whole number, not {configured!r}")
            workers = int(configured)
        else:
            workers = (os.cpu_count() or 1) if patients > WORKERS_FROM and (os.cpu_count() or 1) > 1 else 0
    return max(0, int(workers))


def _accumulate(result: RunResult, counts: dict[str, int]) -> None:
    if not counts.get("patients"):
        return
    result.batches += 1
    if not counts.get("revisit"):
        result.patients += counts["patients"]
    result.snapshots_written += counts["snapshots_written"]
    result.alerts_opened += counts["alerts_opened"]
    result.alerts_resolved += counts["alerts_resolved"]
    result.alerts_updated += counts["alerts_updated"]
    result.planned += counts.get("planned", 0)
    for phase, seconds in counts.get("timings", {}).items():
        result.phases[phase] = result.phases.get(phase, 0.0) + seconds


def optimize(engine: Engine) -> None:
    """Refresh planner statistics after big writes (stale statistics made a query 180× slower).

    On SQLite in a write transaction begun IMMEDIATE: ANALYZE writes, and a deferred
    transaction that turns into a writer fails with "database is locked" at once,
    ignoring the busy timeout.
    """
    with writer(engine).connect() as conn, conn.begin():
        if is_sqlite(engine):
            # Not ``PRAGMA optimize``: before SQLite 3.46 it only looks at tables this very
            # connection queried, so a fresh connection analysed nothing and a million-patient
            # store ran without statistics.  A sampled ANALYZE takes 0.2 s there.
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
