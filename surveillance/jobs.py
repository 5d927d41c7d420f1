"""The scheduled jobs: recompute under a database lease, and the record of missed runs.

Together with :mod:`surveillance.scheduler` this is the only place that reads the
clock; the pipeline, the rules and the scoring core receive ``now``.

**The lease.**  ``job_lease`` holds one row per job name.  A process may run a
recompute only while it holds the row: taking it is one atomic conditional
``UPDATE … WHERE name = :n AND (until IS NULL OR until < :now OR owner = :me)``
(after an ``INSERT … ON CONFLICT DO NOTHING`` that creates the row the first
time), and the statement's row count says whether we won.  Both databases
serialise writers on the row (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: the row
lock, with the ``WHERE`` re-checked against the winner's committed row), so of
many processes racing for a free lease exactly one gets it.  Full and
incremental runs share one lease name (:data:`LEASE_NAME`), so they never run
at the same time, whichever process or command starts them.

* **TTL** (``lease_seconds``, default 600 s): a holder that dies keeps the lease
  at most this long.  It must outlast the longest stretch in which the
  pipeline does not call back — one batch, or the trend refresh and
  ``ANALYZE`` after the last batch (seconds at 1M patients, ``notes/perf.md``) —
  so 10 minutes leaves a wide margin while costing at most one 15-minute
  incremental tick after a crash.
* **Renewal**: the pipeline's ``progress`` callback (after every batch) pushes
  ``until`` forward, so a long full run keeps its lease.  If a renewal finds the
  lease gone (we stalled past the TTL and someone else took it), the callback
  raises :class:`LeaseLost`; the pipeline marks the run failed with every
  committed batch intact, rather than let two recomputes run side by side.
* **Release** at the end, on success and on failure (``finally``); a release
  that fails is logged, and the TTL frees the lease anyway.

**One run per tick.**  APScheduler 3 does not support two schedulers on one job
store (``notes/security.md`` §1.6): both may fire the same tick.  The lease
stops them overlapping; ``min_gap_seconds`` stops the second one repeating the
tick: while holding the lease, a scheduled run is skipped when another run of
the same kind and trigger started less than ``min_gap_seconds`` ago (the
scheduler passes half the interval for incremental runs and an hour for the
daily full run).  Manual runs (``trigger="cli"``) are never suppressed.

**Abandoned runs.**  A process killed outright (``kill -9``, power loss) cannot
record its own failure: its ``job_run`` row stays ``running`` and its lease
stays taken — until the TTL, or until a run on the same host sees that the
holder's process is gone and takes it over (:func:`dead_here`).  Every batch is one transaction, so the snapshots are
consistent per batch; the next run that takes the lease marks such rows
``failed`` with an "aborted" message (:func:`mark_abandoned_runs`): a
lease-holding run's row as soon as the lease is ours (only one holder at a
time, so any other ``running`` row with an owner is dead or has lost its
lease), a lease-free re-score after a save (trigger ``service``, no owner)
once it is older than the lease TTL.

Owner ids are ``hostname:pid:uuid-prefix`` and a fresh one is made per run, so
two runs in one process (the in-app scheduler and a button) exclude each other
too.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from db.engine import get_engine, writer
from db.models import JobLease, JobRun
from surveillance import pipeline
from surveillance.pipeline import RunResult

log = logging.getLogger(__name__)

#: One lease for every recompute, full or incremental, so they never run concurrently.
LEASE_NAME = "recompute"
DEFAULT_LEASE_SECONDS = 600
SCHEDULER_TRIGGER = "scheduler"

_LEASE = JobLease.__table__
_RUN = JobRun.__table__

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, UTC-aware (the one place jobs read it; tests pass their own)."""
    return datetime.now(UTC)


class LeaseLost(RuntimeError):
    """Our lease expired and another owner took it while a run was in progress."""


@dataclass(frozen=True)
class LeaseState:
    name: str
    owner: str | None
    until: datetime | None
    heartbeat_at: datetime | None


def new_owner_id() -> str:
    """``hostname:pid:uuid-prefix`` — readable in ``job_run.owner`` and unique per run."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------
# The lease
# ---------------------------------------------------------------------------


def _ensure_row(conn: Connection, name: str) -> None:
    """Create the lease row if it is missing, without failing when a racer creates it first."""
    values = {"name": name, "owner": None, "until": None, "heartbeat_at": None}
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        conn.execute(dialect_insert(_LEASE).values(**values).on_conflict_do_nothing(index_elements=["name"]))
        return
    # Other databases: a savepoint keeps a lost insert race from aborting the transaction.
    if conn.execute(select(_LEASE.c.name).where(_LEASE.c.name == name)).first() is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(_LEASE).values(**values))
        except IntegrityError:
            pass


def dead_here(owner: str | None) -> bool:
    """True when ``owner`` names a process on this host that no longer exists (``kill -9``, a crash).

    Conservative: another host, an unreadable owner, or a pid that exists (even a
    reused one) all count as alive, and the lease then waits for its expiry.
    """
    if not owner:
        return False
    try:
        host, pid, _tag = owner.rsplit(":", 2)
        pid_number = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname()[:80] or pid_number <= 0:
        return False
    try:
        os.kill(pid_number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False


def acquire_lease(engine: Engine, owner: str, *, now: datetime, lease_seconds: float, name: str = LEASE_NAME) -> bool:
    """Take (or extend, if ``owner`` already holds it) the lease until ``now + lease_seconds``.

    A lease is free once expired, or at once when its holder was a process on
    this host that is gone (:func:`dead_here`): a scheduler restarted after
    ``kill -9`` need not wait out the TTL.
    """
    until = now + timedelta(seconds=lease_seconds)
    with writer(engine).connect() as conn, conn.begin():
        _ensure_row(conn, name)
        holder = conn.execute(select(_LEASE.c.owner).where(_LEASE.c.name == name)).scalar()
        free = [_LEASE.c.until.is_(None), _LEASE.c.until < now, _LEASE.c.owner == owner]
        if holder is not None and holder != owner and dead_here(holder):
            free.append(_LEASE.c.owner == holder)  # still that dead holder's when the row is updated
            log.warning("lease %s: its holder %s is no longer running on this host; taking it over", name, holder)
        # Typed Core statement: every bind gets its column's type, so psycopg 3 never
        # has to guess one parameter's type from two contexts (stack.md §5).
        result = conn.execute(
            update(_LEASE)
            .where(_LEASE.c.name == name, or_(*free))
            .values(owner=owner, until=until, heartbeat_at=now)
        )
        return result.rowcount == 1


def renew_lease(engine: Engine, owner: str, *, now: datetime, lease_seconds: float, name: str = LEASE_NAME) -> bool:
    """Push ``until`` forward if ``owner`` still holds the lease; False if it was taken."""
    with writer(engine).connect() as conn, conn.begin():
        result = conn.execute(
            update(_LEASE)
            .where(_LEASE.c.name == name, _LEASE.c.owner == owner)
            .values(until=now + timedelta(seconds=lease_seconds), heartbeat_at=now)
        )
        return result.rowcount == 1


def release_lease(engine: Engine, owner: str, *, now: datetime, name: str = LEASE_NAME) -> bool:
    """Free the lease if ``owner`` holds it (never someone else's)."""
    with writer(engine).connect() as conn, conn.begin():
        result = conn.execute(
            update(_LEASE)
            .where(_LEASE.c.name == name, _LEASE.c.owner == owner)
            .values(owner=None, until=None, heartbeat_at=now)
        )
        return result.rowcount == 1


def lease_state(engine: Engine, name: str = LEASE_NAME) -> LeaseState | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(_LEASE.c.name, _LEASE.c.owner, _LEASE.c.until, _LEASE.c.heartbeat_at).where(_LEASE.c.name == name)
        ).first()
        conn.rollback()
    return LeaseState(*row) if row else None


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


def _last_started(engine: Engine, kind: str, trigger: str) -> datetime | None:
    """When the latest executed run of this kind and trigger started."""
    with engine.connect() as conn:
        # Latest by id, compared in Python: the pipeline writes ``started_at`` through the raw
        # driver, whose SQLite text form differs from Core's, so SQL string comparison is unsafe.
        started = conn.execute(
            select(_RUN.c.started_at)
            .where(_RUN.c.kind == kind, _RUN.c.trigger == trigger, _RUN.c.status != "missed")
            .order_by(_RUN.c.id.desc())
            .limit(1)
        ).scalar()
        conn.rollback()
    return started


ABANDONED_MESSAGE = (
    "aborted: the process running it stopped without finishing (killed or crashed); its committed batches "
    "stand, the rest kept their previous snapshots; noticed by {owner} at {now}"
)


def mark_abandoned_runs(engine: Engine, owner: str, *, now: datetime, lease_seconds: float) -> list[int]:
    """Mark ``running`` rows of dead runs ``failed``; call only while holding the lease. Returns their ids.

    A row with an owner other than ``owner`` belongs to a lease holder that is gone
    (the lease is exclusive and its holder releases it on every exit).  A row without
    an owner (a lease-free re-score after a save) is abandoned once it is older than
    ``lease_seconds``; such runs last milliseconds.
    """
    cutoff = now - timedelta(seconds=lease_seconds)
    with writer(engine).connect() as conn, conn.begin():
        rows = conn.execute(select(_RUN.c.id, _RUN.c.owner, _RUN.c.started_at).where(_RUN.c.status == "running")).all()
        dead = []
        for row_id, row_owner, started in rows:
            if row_owner == owner:
                continue
            if row_owner is None:
                # Compared in Python: the raw driver's SQLite text form of started_at differs from Core's.
                if isinstance(started, str):
                    started = datetime.fromisoformat(started)
                if started.tzinfo is None:
                    started = started.replace(tzinfo=UTC)
                if started >= cutoff:
                    continue
            dead.append(row_id)
        if dead:
            conn.execute(
                update(_RUN)
                .where(_RUN.c.id.in_(dead), _RUN.c.status == "running")
                .values(
                    status="failed",
                    finished_at=now,
                    message=ABANDONED_MESSAGE.format(owner=owner, now=now.isoformat(timespec="seconds")),
                )
            )
    for row_id in dead:
        log.warning("recompute run %s was abandoned (its process died mid-run); marked failed", row_id)
    return dead


def run_recompute(
    engine: Engine,
    *,
    full: bool,
    trigger: str = SCHEDULER_TRIGGER,
    owner: str | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    min_gap_seconds: float = 0.0,
    clock: Clock = utc_now,
    progress: Callable[[int, int], None] | None = None,
    **pipeline_options,
) -> RunResult | None:
    """Run one recompute under the lease; None when another owner holds it (or the tick already ran).

    ``min_gap_seconds`` > 0 skips the run when a run of the same kind and trigger
    started less than that long ago (a second scheduler firing the same tick).
    ``progress(done, total)`` is called after each batch, after the lease is renewed.
    Failures are recorded in ``job_run`` by the pipeline, the lease is released,
    and the exception propagates.  ``pipeline_options`` go to
    :func:`surveillance.pipeline.recompute` (``rules``, ``batch_size`` …).
    """
    kind = "full" if full else "incremental"
    owner = owner or new_owner_id()
    if not acquire_lease(engine, owner, now=clock(), lease_seconds=lease_seconds):
        state = lease_state(engine)
        log.info(
            "%s recompute skipped: the lease is held by %s until %s",
            kind,
            state.owner if state else "?",
            state.until.isoformat() if state and state.until else "?",
        )
        return None
    try:
        # Read the clock again now that we hold the lease: the run's started_at must not
        # precede the previous holder's release, or recorded runs would seem to overlap.
        now = clock()
        mark_abandoned_runs(engine, owner, now=now, lease_seconds=lease_seconds)
        if min_gap_seconds > 0:
            last = _last_started(engine, kind, trigger)
            if last is not None and now - last < timedelta(seconds=min_gap_seconds):
                log.info("%s recompute skipped: a %s run already started at %s", kind, trigger, last.isoformat())
                return None

        def keep_lease(done: int, total: int) -> None:
            if not renew_lease(engine, owner, now=clock(), lease_seconds=lease_seconds):
                raise LeaseLost(f"lease {LEASE_NAME!r} was taken from {owner} after {done}/{total} patients")
            if progress is not None:
                progress(done, total)

        result = pipeline.recompute(
            engine, full=full, now=now, trigger=trigger, owner=owner, progress=keep_lease, **pipeline_options
        )
        log.info(
            "%s recompute %s: %d patients, %d snapshots, %d alerts opened, %d resolved in %.1f s",
            kind,
            result.status,
            result.patients,
            result.snapshots_written,
            result.alerts_opened,
            result.alerts_resolved,
            result.seconds,
        )
        return result
    finally:
        try:
            release_lease(engine, owner, now=clock())
        except Exception:  # the run's own outcome matters more; the TTL frees the lease
            log.exception("could not release lease %r held by %s", LEASE_NAME, owner)


def record_missed_run(
    engine: Engine,
    kind: str,
    scheduled_at: datetime,
    *,
    detected_at: datetime | None = None,
    owner: str | None = None,
) -> bool:
    """Write a ``job_run`` row with status ``missed`` for a tick that fired too late to run.

    ``started_at`` is the time the run was due (``finished_at`` too: nothing ran).
    Returns False when this tick is already recorded (a second scheduler saw it too).
    """
    if scheduled_at.utcoffset() is None:
        raise ValueError("scheduled_at must be timezone-aware (UTC)")
    detected_at = detected_at or utc_now()
    late = detected_at - scheduled_at
    with writer(engine).connect() as conn, conn.begin():
        already = conn.execute(
            select(_RUN.c.id).where(_RUN.c.kind == kind, _RUN.c.status == "missed", _RUN.c.started_at == scheduled_at)
        ).first()
        if already is not None:
            return False
        conn.execute(
            insert(_RUN).values(
                kind=kind,
                trigger=SCHEDULER_TRIGGER,
                started_at=scheduled_at,
                finished_at=scheduled_at,
                status="missed",
                patients=0,
                snapshots_written=0,
                alerts_opened=0,
                alerts_resolved=0,
                batches=0,
                owner=owner,
                message=f"not run: due {scheduled_at.isoformat()}, noticed {late.total_seconds():.0f} s late "
                "(beyond the misfire grace time); the next tick runs as scheduled",
            )
        )
    log.warning("%s recompute due at %s was missed (noticed %s late)", kind, scheduled_at.isoformat(), late)
    return True


# ---------------------------------------------------------------------------
# Entry points the scheduler stores by reference ("surveillance.jobs:scheduled_incremental")
# ---------------------------------------------------------------------------

_bound_engine: Engine | None = None


def bind_engine(engine: Engine | None) -> None:
    """The engine scheduled jobs use in this process.

    A persistent job store pickles the job's arguments; an engine cannot be
    pickled and its URL may carry a password, so the scheduler process binds its
    engine here instead of storing it with the job.
    """
    global _bound_engine
    _bound_engine = engine


def _job_engine(engine: Engine | None) -> Engine:
    return engine or _bound_engine or get_engine()


def scheduled_incremental(
    *, lease_seconds: float = DEFAULT_LEASE_SECONDS, min_gap_seconds: float = 0.0, engine: Engine | None = None
) -> RunResult | None:
    return run_recompute(_job_engine(engine), full=False, lease_seconds=lease_seconds, min_gap_seconds=min_gap_seconds)


def scheduled_full(
    *, lease_seconds: float = DEFAULT_LEASE_SECONDS, min_gap_seconds: float = 0.0, engine: Engine | None = None
) -> RunResult | None:
    return run_recompute(_job_engine(engine), full=True, lease_seconds=lease_seconds, min_gap_seconds=min_gap_seconds)
