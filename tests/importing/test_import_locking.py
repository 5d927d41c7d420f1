"""Two imports for one patient at the same time (both backends).

The first import is held inside its transaction just after it rebuilt the
patient's ``patient_state`` (before its commit); the second import, of another
ECOG for the same patient, starts then.  On PostgreSQL the second must wait for
the first (the writer locks the patient rows it touches, ``SELECT … FOR
UPDATE`` in id order): without that lock it inserts its fact and rebuilds the
state from facts that lack the first import's uncommitted row, and its insert
of the state row collides with the first's (a unique violation) once the first
commits.  On SQLite ``BEGIN IMMEDIATE`` serialises them.  Either way both
imports must succeed and the state must hold both facts.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select, text

from db import models as m
from db.engine import read_session
from surveillance.importing import import_file, writer
from surveillance.state import STATE_COLUMNS, compute_state, load_facts
from tests.importing.helpers import NOW, rows

PATIENT = b"mrn,family_name,given_name,birth_date\nLK-0001,Lock,Test,1960-01-01\n"
FIRST = b"mrn,recorded_on,ecog,source_id\nLK-0001,2026-10-01,1,lock-first\n"
SECOND = b"mrn,recorded_on,ecog,source_id\nLK-0001,2026-11-01,3,lock-second\n"


def _wait_until_blocked(engine, thread: threading.Thread, seconds: float = 30.0) -> None:
    """Synchronisation only: return once the second import waits on a lock (PostgreSQL) or has had time to."""
    if engine.dialect.name == "sqlite":
        thread.join(0.5)  # it waits in BEGIN IMMEDIATE (busy timeout) behind the first
        return
    deadline = time.monotonic() + seconds
    while thread.is_alive() and time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalar()
        if waiting:
            return
        time.sleep(0.05)


def test_concurrent_imports_for_one_patient_both_land_in_its_state(engine, monkeypatch):
    assert import_file(engine, PATIENT, name="patient.csv", actor="t", now=NOW).status == "imported"
    (pid,) = [r["id"] for r in rows(engine, "SELECT id FROM patient WHERE mrn = 'LK-0001'")]

    held = threading.Event()
    release = threading.Event()
    real_refresh = writer.refresh_patient_state

    def refresh_then_hold(session, ids):
        real_refresh(session, ids)
        if threading.current_thread().name == "first-import":
            held.set()
            release.wait(120)

    monkeypatch.setattr(writer, "refresh_patient_state", refresh_then_hold)
    results: dict[str, object] = {}

    def run(label: str, data: bytes) -> None:
        try:
            results[label] = import_file(engine, data, name=f"{label}.csv", actor="t", now=NOW).status
        except Exception as err:  # noqa: BLE001 - the test reports whatever the import raised
            results[label] = f"{type(err).__name__}: {err}"

    first = threading.Thread(target=run, args=("first", FIRST), name="first-import")
    second = threading.Thread(target=run, args=("second", SECOND), name="second-import")
    first.start()
    try:
        assert held.wait(120), "the first import never reached its state refresh"
        second.start()
        _wait_until_blocked(engine, second)
    finally:
        release.set()
        first.join(120)
        if second.ident is not None:
            second.join(120)

    assert results == {"first": "imported", "second": "imported"}
    facts = rows(engine, "SELECT ecog FROM performance_status WHERE patient_id = :p ORDER BY recorded_on", p=pid)
    assert [f["ecog"] for f in facts] == [1, 3]
    state = rows(engine, "SELECT ecog, previous_ecog FROM patient_state WHERE patient_id = :p", p=pid)
    assert state == [{"ecog": 3, "previous_ecog": 1}]  # the later ECOG is current, the earlier one before it
    table = m.PatientState.__table__
    with read_session(engine) as session:
        rebuilt = compute_state(load_facts(session, [pid])[pid])
        stored = session.execute(select(table).where(table.c.patient_id == pid)).mappings().one()
    assert {c: stored[c] for c in STATE_COLUMNS} == {c: rebuilt[c] for c in STATE_COLUMNS}
