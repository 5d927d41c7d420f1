"""Write contention (notes/security.md Part 2, test 2), on SQLite and PostgreSQL.

Eight threads record clinical facts through :mod:`surveillance.service` — each
write re-scores its patient at once — while full recomputes run back to back
under the lease, for ``CONCURRENCY_SECONDS`` (default 60, what CI runs; set a
few seconds locally while developing).  Some threads edit the same two "hot"
patients and their alerts with the version they read a moment earlier, so
version conflicts happen.

Afterwards:

* nothing unexpected was raised — no "database is locked", no deadlock, no
  other error; a conflict is a :class:`ConflictError` whose message says the
  record changed and what to do;
* every write reported successful is present (an attempt ledger checked row by
  row), and exactly one audit event exists per successful write;
* no lost update: each hot patient's ``version`` moved exactly once per
  successful edit, and its last successful edit is what it holds;
* the derived ``patient_state`` equals a rebuild from the facts (a write that
  rebuilt it without another's uncommitted fact would show here);
* no stale snapshot was left behind: a final full recompute changes nothing;
* at most one active alert per patient and rule; the audit chain verifies.

**Writers**: :data:`WRITERS` (the service's writes) and :data:`IMPORT_WRITERS`
(the importer, ``surveillance.importing.import_file``) are the lists the threads
draw from; a new kind of writer is one more function returning its ledger
entries.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, text

from db.engine import read_session
from surveillance import audit, jobs, pipeline, service
from surveillance.access import ALL_DEPARTMENTS, Identity, Role
from surveillance.calendar import clinical_day
from surveillance.service import ConflictError, LesionFinding
from surveillance.state import compute_state, load_facts
from tests import factories

SECONDS = float(os.environ.get("CONCURRENCY_SECONDS", "60"))
THREADS = 8
CONFLICT_MESSAGE = "was changed by someone else since you opened it; reload and try again"


@dataclass
class World:
    engine: object
    nurse: Identity
    doctor: Identity
    patients: list[int]
    hot: list[int]
    today: object
    mrns: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (table, column, value) naming each row a successful write created (exactly one row must match)
    created: list[tuple[str, str, object]] = field(default_factory=list)
    # action -> successes (one audit event each)
    actions: Counter = field(default_factory=Counter)
    # patient id -> successful edits, in the order they were reported
    edits: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    conflicts: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


#: A writer does one write and returns (audit action, [(table, column, value) of each row it created]);
#: it may raise ConflictError.
Writer = Callable[[World, random.Random], tuple[str, list[tuple[str, str, object]]]]


def now() -> datetime:
    return datetime.now(UTC)


def ecog(world: World, rng: random.Random):
    pid = rng.choice(world.patients)
    result = service.record_performance_status(
        world.engine, world.doctor, pid, recorded_on=world.today, ecog=rng.randint(0, 4), now=now()
    )
    return "record.performance_status", [("performance_status", "id", result.id)]


def lab(world: World, rng: random.Random):
    pid = rng.choice(world.patients)
    result = service.record_lab(
        world.engine,
        world.doctor,
        pid,
        collected_on=world.today,
        test="albumin",
        value=rng.uniform(2.5, 4.5),
        now=now(),
    )
    return "record.lab", [("lab_result", "id", result.id)]


def bma(world: World, rng: random.Random):
    pid = rng.choice(world.patients)
    result = service.record_bma_dose(
        world.engine, world.doctor, pid, given_on=world.today, agent="zoledronic_acid", dose_mg=4, now=now()
    )
    return "record.bma_dose", [("bma_administration", "id", result.id)]


def neuro(world: World, rng: random.Random):
    pid = rng.choice(world.hot + world.patients[:10])  # same patients as the edits: facts and edits interleave
    result = service.record_neuro_status(
        world.engine, world.doctor, pid, recorded_on=world.today, new_spinal_pain=True, now=now()
    )
    return "record.neuro_status", [("neuro_status", "id", result.id)]


def imaging(world: World, rng: random.Random):
    pid = rng.choice(world.hot)
    result = service.record_imaging(
        world.engine,
        world.doctor,
        pid,
        performed_on=world.today,
        modality="mri",
        region="whole_spine",
        lesions=[LesionFinding(level=rng.choice(["T4", "T8", "L2"]), lesion_type="lytic", pain="mechanical")],
        now=now(),
    )
    return "record.imaging", [("imaging_study", "id", result.id)]


def edit_patient(world: World, rng: random.Random):
    """Read the version, think for a moment (as a person does), then save: races other editors."""
    pid = rng.choice(world.hot)
    with world.engine.connect() as conn:
        version = conn.execute(text("SELECT version FROM patient WHERE id = :p"), {"p": pid}).scalar()
    time.sleep(rng.uniform(0, 0.02))
    plan = f"plan {rng.getrandbits(40):x}"
    # Raises ConflictError when someone saved in between; the ledger records only successes.
    service.update_patient(
        world.engine, world.doctor, pid, version=version, changes={"denosumab_transition_plan": plan}, now=now()
    )
    with world.lock:
        world.edits[pid].append(plan)
    return "patient.update", []


def assign_alert(world: World, rng: random.Random):
    with world.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT id, version FROM alert WHERE status IN ('open', 'acknowledged') AND patient_id IN :ids "
                "ORDER BY id LIMIT 1"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": world.hot + world.patients[:10]},
        ).first()
    if row is None:
        return ecog(world, rng)
    time.sleep(rng.uniform(0, 0.02))
    service.assign_alert(
        world.engine, world.doctor, row.id, version=row.version, to_user_id=world.nurse.user_id, now=now()
    )
    return "alert.assign", []


def board(world: World, rng: random.Random):
    pid = rng.choice(world.hot)
    result = service.record_board_decision(
        world.engine, world.doctor, pid, decision="observe; MRI in 6 weeks", decided_on=world.today, now=now()
    )
    return "board.decide", [("board_case", "id", result.id)]


#: The threads draw from these and IMPORT_WRITERS (thread i mostly its own writer, sometimes any other).
WRITERS: list[Writer] = [edit_patient, edit_patient, assign_alert, imaging, neuro, ecog, lab, bma, board]


def import_csv(world: World, rng: random.Random):
    """A small CSV of ECOG rows for random patients, some of them the hot ones, through the importer."""
    from surveillance.importing import import_file

    pids = [rng.choice(world.hot)] + rng.sample(world.patients, 3)
    ids = [f"cc-{rng.getrandbits(64):x}" for _ in pids]
    lines = ["mrn,recorded_on,ecog,source_id"] + [
        f"{world.mrns[pid]},{world.today.isoformat()},{rng.randint(0, 4)},{sid}"
        for pid, sid in zip(pids, ids, strict=True)
    ]
    result = import_file(
        world.engine, ("\n".join(lines) + "\n").encode(), name="ecog.csv", actor="import:concurrency", now=now()
    )
    if result.status != "imported":
        raise RuntimeError(f"import {result.status}: {[i.message for i in result.issues]}")
    # The CSV importer keeps a row's id as "<template>:<source_id>" (surveillance/importing/csv_templates.py).
    return "import.file", [("performance_status", "source_id", f"performance_status:{sid}") for sid in ids]


#: Import writers (the importer, surveillance.importing.import_file): thread 0 mostly imports.
IMPORT_WRITERS: list[Writer] = [import_csv]


def run_writer(world: World, index: int, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    writers = IMPORT_WRITERS + WRITERS  # thread 0 imports
    first = True
    while not stop.is_set():
        writer = writers[index % len(writers)] if first or rng.random() < 0.6 else rng.choice(writers)
        first = False
        try:
            action, rows = writer(world, rng)
        except ConflictError as err:
            with world.lock:
                world.conflicts.append(str(err))
            continue
        except Exception as err:  # noqa: BLE001 - every other exception is a failure of the test
            with world.lock:
                world.unexpected.append(f"{writer.__name__}: {type(err).__name__}: {err}")
            continue
        with world.lock:
            world.actions[action] += 1
            world.created.extend(rows)


def run_recomputes(world: World, stop: threading.Event, results: list) -> None:
    while not stop.is_set():
        try:
            results.append(jobs.run_recompute(world.engine, full=True, trigger="scheduler"))
        except Exception as err:  # noqa: BLE001
            with world.lock:
                world.unexpected.append(f"recompute: {type(err).__name__}: {err}")


def test_eight_writers_and_a_full_recompute_lose_nothing(engine):
    users = factories.add_users(engine)
    patients = factories.add_patients(engine, 300, seed=3, nurse_ids=[users["nurse1"], users["nurse2"]])
    pipeline.recompute(engine, full=True, now=now())
    world = World(
        engine=engine,
        nurse=Identity(users["nurse1"], "nurse1", "Nurse One", Role.NURSE, "oncology"),
        doctor=Identity(users["doc1"], "doc1", "Doc One", Role.PHYSICIAN, ALL_DEPARTMENTS),
        patients=patients,
        hot=patients[:2],
        today=clinical_day(now()),
    )
    with engine.connect() as conn:
        world.mrns = dict(conn.execute(text("SELECT id, mrn FROM patient")).all())
    with engine.connect() as conn:
        start_versions = dict(conn.execute(text("SELECT id, version FROM patient")).all())
        audit_before = Counter(
            dict(conn.execute(text("SELECT action, COUNT(*) FROM audit_event GROUP BY action")).all())
        )
    stop = threading.Event()
    runs: list = []
    threads = [threading.Thread(target=run_writer, args=(world, i, stop, 100 + i)) for i in range(THREADS)]
    threads.append(threading.Thread(target=run_recomputes, args=(world, stop, runs)))
    for thread in threads:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"

    assert world.unexpected == [], world.unexpected[:10]
    assert sum(world.actions.values()) >= THREADS, world.actions
    assert len(runs) >= 1 and all(r is not None and r.status == "success" for r in runs), runs
    # Conflicts happened and say what happened and what to do.
    assert world.conflicts, "no version conflict was provoked"
    assert all(CONFLICT_MESSAGE in message or "cannot be" in message for message in world.conflicts), set(
        world.conflicts
    )

    with engine.connect() as conn:
        # Every write reported successful is there.
        missing = []
        for table, column, value in world.created:
            found = conn.execute(text(f"SELECT COUNT(*) FROM {table} WHERE {column} = :v"), {"v": value}).scalar()
            if found != 1:
                missing.append((table, column, value))
        assert missing == []
        # One audit event per successful write, and none for a refused one.
        audit_after = Counter(
            dict(conn.execute(text("SELECT action, COUNT(*) FROM audit_event GROUP BY action")).all())
        )
        for action, count in world.actions.items():
            assert audit_after[action] - audit_before[action] == count, action
        # No lost update: the version moved once per successful edit, and the last edit stands.
        versions = dict(conn.execute(text("SELECT id, version FROM patient")).all())
        plans = dict(conn.execute(text("SELECT id, denosumab_transition_plan FROM patient")).all())
        for pid in world.hot:
            assert versions[pid] == start_versions[pid] + len(world.edits[pid]), pid
            if world.edits[pid]:
                assert plans[pid] in world.edits[pid]
        duplicates = conn.execute(
            text(
                "SELECT patient_id, rule_id FROM alert WHERE status IN ('open', 'acknowledged', 'snoozed') "
                "GROUP BY patient_id, rule_id HAVING COUNT(*) > 1"
            )
        ).all()
        assert duplicates == []
    assert sum(len(v) for v in world.edits.values()) >= 1

    # The derived state equals a rebuild from the facts, for every patient.
    with read_session(engine) as session:
        facts = load_facts(session, patients)
        stored = {
            row["patient_id"]: dict(row) for row in session.execute(text("SELECT * FROM patient_state")).mappings()
        }
    wrong = []
    for pid in patients:
        expected = compute_state(facts[pid])
        got = stored[pid]
        if any(_norm(got.get(k)) != _norm(v) for k, v in expected.items()):
            wrong.append(pid)
    assert wrong == [], f"patient_state out of step with the facts for {len(wrong)} patients: {wrong[:10]}"

    # No stale snapshot: once the scheduler's next incremental run has re-scored what is queued
    # (patients whose alert a person changed during a batch), a full recompute finds nothing to change.
    pipeline.recompute(engine, full=False, now=now())
    final = pipeline.recompute(engine, full=True, now=now() + timedelta(seconds=1))
    assert final.snapshots_written == 0, f"{final.snapshots_written} snapshots were stale after the writers stopped"
    with read_session(engine) as session:
        report = audit.verify_chain(session)
    assert report.ok, report.problem


def _norm(value):
    """Compare a computed state value with its stored form (dates as ISO text on SQLite, bools as 0/1)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()[:10]
    if isinstance(value, float):
        return round(value, 6)
    return value
