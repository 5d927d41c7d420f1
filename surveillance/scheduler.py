"""The scheduler: ``python -m surveillance scheduler`` (its own process) or in-process for the demo.

APScheduler **3.11** (4.x is alpha), as ``shared/notes/stack.md`` §4 verified:

* a ``BackgroundScheduler`` with a ``SQLAlchemyJobStore`` in the application's
  own database (table ``apscheduler_jobs``, which Alembic ignores), one worker
  thread, ``coalesce=True``, ``max_instances=1`` and a generous misfire grace
  (default 6 h) so a scheduler that was down catches up with **one** run;
* two jobs, stored by reference so they survive restarts: an incremental
  recompute every ``SCHEDULER_INCREMENTAL_SECONDS`` and a full recompute daily
  at ``SCHEDULER_FULL_AT`` (UTC);
* at start: ``start(paused=True)``, then for each job ``get_job`` and compare.
  A job whose trigger changed is replaced; one whose other settings changed is
  modified in place; an unchanged job is kept — never a blanket
  ``add_job(replace_existing=True)``, which would reset ``next_run_time`` and
  silently drop the runs missed while the scheduler was down.  Then ``resume()``;
* a run that fires later than the misfire grace is not executed; an
  ``EVENT_JOB_MISSED`` listener records it in ``job_run`` (status ``missed``,
  ``started_at`` = when it was due) so the gap is visible on the admin page;
* SIGTERM/SIGINT set the stop event (when running in the main thread), and the
  scheduler shuts down waiting for a running job, whose batches are atomic anyway.

APScheduler 3 must not share a job store between schedulers (``notes/security.md``
§1.6): deploy **one** scheduler process.  If a second one is started by mistake,
the database lease and the once-per-tick check in :mod:`surveillance.jobs` keep
it from running anything twice or concurrently.

:func:`start_in_process` is for the single-process Streamlit demo: the same jobs
in a ``MemoryJobStore`` (a persistent store shared by N app processes would
break the rule above, and ``sqlite://`` in memory is a different database per
thread), returned started, for the app to wrap in
``st.cache_resource(on_release=lambda s: s.shutdown(wait=False))``.

Settings (pydantic-settings, prefix ``SCHEDULER_``): ``INCREMENTAL_SECONDS``
(900), ``FULL_AT`` ("02:30", UTC), ``LEASE_SECONDS`` (600),
``MISFIRE_GRACE_SECONDS`` (21600).
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import BaseJobStore
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import Engine

from db.schema import SchemaOutOfDate, require_current
from surveillance import jobs

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
INCREMENTAL_JOB_ID = "surveillance-incremental"
FULL_JOB_ID = "surveillance-full"
#: job id -> the ``job_run.kind`` it records
JOB_KINDS = {INCREMENTAL_JOB_ID: "incremental", FULL_JOB_ID: "full"}
FULL_RUN_MIN_GAP_SECONDS = 3600  # a second scheduler's copy of the daily tick comes within seconds, not hours
_FULL_AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class SchedulerSettingsError(ValueError):
    """A ``SCHEDULER_*`` environment variable has a value the scheduler cannot use."""


class SchedulerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCHEDULER_", extra="ignore")

    incremental_seconds: int = Field(default=900, ge=1, le=86_400, description="seconds between incremental runs")
    full_at: str = Field(default="02:30", description="daily full recompute, HH:MM in UTC (24-hour)")
    lease_seconds: int = Field(default=jobs.DEFAULT_LEASE_SECONDS, ge=10, le=86_400)
    misfire_grace_seconds: int = Field(default=6 * 3600, ge=1, le=86_400)

    @field_validator("full_at")
    @classmethod
    def _check_full_at(cls, value: str) -> str:
        value = value.strip()
        if not _FULL_AT.match(value):
            raise ValueError(f"must be HH:MM in UTC on a 24-hour clock, e.g. 02:30 (got {value!r})")
        return value

    @property
    def full_hour(self) -> int:
        return int(self.full_at[:2])

    @property
    def full_minute(self) -> int:
        return int(self.full_at[3:])


def load_settings() -> SchedulerSettings:
    """Settings from the environment, or :class:`SchedulerSettingsError` naming each bad variable."""
    try:
        return SchedulerSettings()
    except ValidationError as err:
        lines = []
        for error in err.errors():
            name = "SCHEDULER_" + "_".join(str(part) for part in error["loc"]).upper()
            lines.append(f"{name}={error.get('input')!r}: {error['msg']}")
        raise SchedulerSettingsError("invalid scheduler settings:\n  " + "\n  ".join(lines)) from None


# ---------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    id: str
    name: str
    func: str
    trigger: Any
    kwargs: dict[str, Any] = field(default_factory=dict)


def job_specs(settings: SchedulerSettings, *, engine: Engine | None = None) -> list[JobSpec]:
    """The two recompute jobs.  ``engine`` only for a memory store (a stored job must stay picklable)."""
    common: dict[str, Any] = {"lease_seconds": settings.lease_seconds}
    if engine is not None:
        common["engine"] = engine
    return [
        JobSpec(
            id=INCREMENTAL_JOB_ID,
            name="incremental recompute",
            func="surveillance.jobs:scheduled_incremental",
            trigger=IntervalTrigger(seconds=settings.incremental_seconds, timezone="UTC"),
            kwargs={**common, "min_gap_seconds": settings.incremental_seconds / 2},
        ),
        JobSpec(
            id=FULL_JOB_ID,
            name="daily full recompute",
            func="surveillance.jobs:scheduled_full",
            trigger=CronTrigger(hour=settings.full_hour, minute=settings.full_minute, timezone="UTC"),
            kwargs={**common, "min_gap_seconds": FULL_RUN_MIN_GAP_SECONDS},
        ),
    ]


def _trigger_key(trigger: Any) -> tuple:
    # Not repr(): an IntervalTrigger's repr carries its start date, which differs on every start.
    if isinstance(trigger, IntervalTrigger):
        return ("interval", trigger.interval_length, str(trigger.timezone))
    return (type(trigger).__name__, str(trigger), str(getattr(trigger, "timezone", None)))


def ensure_jobs(scheduler: BackgroundScheduler, specs: list[JobSpec], *, misfire_grace_seconds: int) -> dict[str, str]:
    """Add, replace, modify or keep each job; returns what was done per job id.

    Call on a scheduler started with ``paused=True``, so nothing fires on the
    stored schedule before it has been checked.
    """
    done: dict[str, str] = {}
    for spec in specs:
        wanted = {
            "func": spec.func,
            "kwargs": spec.kwargs,
            "name": spec.name,
            "misfire_grace_time": misfire_grace_seconds,
            "coalesce": True,
            "max_instances": 1,
        }
        job = scheduler.get_job(spec.id)
        if job is None or _trigger_key(job.trigger) != _trigger_key(spec.trigger):
            # A new trigger needs a new next_run_time; anything else must keep it.
            scheduler.add_job(id=spec.id, trigger=spec.trigger, replace_existing=True, **wanted)
            done[spec.id] = "added" if job is None else "replaced"
            continue
        current = {
            "func": job.func_ref,
            "kwargs": job.kwargs,
            "name": job.name,
            "misfire_grace_time": job.misfire_grace_time,
            "coalesce": job.coalesce,
            "max_instances": job.max_instances,
        }
        changes = {key: value for key, value in wanted.items() if current[key] != value}
        if changes:
            scheduler.modify_job(spec.id, **changes)
            done[spec.id] = "modified"
        else:
            done[spec.id] = "kept"
    for job in scheduler.get_jobs():
        if job.id not in JOB_KINDS:
            log.warning("job store holds an unknown job %r (%s); leaving it alone", job.id, job.func_ref)
    for job_id, action in done.items():
        job = scheduler.get_job(job_id)
        log.info("job %s %s; next run %s", job_id, action, job.next_run_time.isoformat() if job else "?")
    return done


def _missed_listener(engine: Engine):
    def on_missed(event: JobExecutionEvent) -> None:
        kind = JOB_KINDS.get(event.job_id)
        if kind is None:
            return
        try:
            jobs.record_missed_run(engine, kind, event.scheduled_run_time)
        except Exception:  # a listener must not break the scheduler; the warning is already logged
            log.exception("could not record the missed %s run due at %s", kind, event.scheduled_run_time)

    return on_missed


def _build(engine: Engine, settings: SchedulerSettings, jobstore: BaseJobStore) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        jobstores={"default": jobstore},
        # One worker: recomputes are serialised in-process before the lease even matters.
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": settings.misfire_grace_seconds},
        timezone="UTC",
    )
    scheduler.add_listener(_missed_listener(engine), EVENT_JOB_MISSED)
    return scheduler


def _create_job_table(engine: Engine, store: SQLAlchemyJobStore) -> None:
    # Two schedulers starting together on a fresh database can both see no table and both
    # CREATE it; the loser's error is harmless, so check again instead of dying.
    for attempt in range(3):
        try:
            store.jobs_t.create(engine, checkfirst=True)
            return
        except Exception:
            if attempt == 2:
                raise
            log.info("%s was being created by another process; checking again", JOB_TABLE)


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum, _frame):
        log.info("received %s; stopping after the running job", signal.Signals(signum).name)
        stop.set()

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handle)
    return previous


def run_scheduler(
    engine: Engine, *, stop: threading.Event | None = None, settings: SchedulerSettings | None = None
) -> None:
    """Run the persistent scheduler until ``stop`` is set (or SIGTERM/SIGINT in the main thread).

    Raises :class:`db.schema.SchemaOutOfDate` before scheduling anything if the
    database is not at the current migration.
    """
    settings = settings or load_settings()
    require_current(engine)
    stop = stop or threading.Event()
    previous_handlers = _install_signal_handlers(stop)
    jobs.bind_engine(engine)
    store = SQLAlchemyJobStore(engine=engine, tablename=JOB_TABLE)
    _create_job_table(engine, store)
    scheduler = _build(engine, settings, store)
    try:
        scheduler.start(paused=True)
        ensure_jobs(scheduler, job_specs(settings), misfire_grace_seconds=settings.misfire_grace_seconds)
        scheduler.resume()
        log.info(
            "scheduler running: incremental every %d s, full daily at %s UTC, lease %d s, misfire grace %d s",
            settings.incremental_seconds,
            settings.full_at,
            settings.lease_seconds,
            settings.misfire_grace_seconds,
        )
        # A timed wait keeps the main thread returning to the interpreter, so signal handlers run promptly.
        while not stop.wait(1.0):
            pass
    finally:
        log.info("scheduler stopping")
        if scheduler.running:
            scheduler.shutdown(wait=True)
        jobs.bind_engine(None)
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        log.info("scheduler stopped")


def start_in_process(engine: Engine, settings: SchedulerSettings | None = None) -> BackgroundScheduler:
    """A started scheduler with the same jobs in a memory store, for the single-process demo.

    The caller owns it: ``st.cache_resource(on_release=lambda s: s.shutdown(wait=False))``.
    """
    settings = settings or load_settings()
    require_current(engine)
    scheduler = _build(engine, settings, MemoryJobStore())
    scheduler.start(paused=True)
    ensure_jobs(scheduler, job_specs(settings, engine=engine), misfire_grace_seconds=settings.misfire_grace_seconds)
    scheduler.resume()
    return scheduler


def main() -> int:
    """``python -m surveillance scheduler``: 0 after a clean stop, 2 on bad settings or an old schema."""
    from db.engine import get_engine

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        run_scheduler(get_engine(), settings=settings)
    except (SchedulerSettingsError, SchemaOutOfDate) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
