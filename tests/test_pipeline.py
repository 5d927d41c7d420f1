"""The recompute pipeline on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from db.engine import get_engine
from db.schema import upgrade
from surveillance.patient_case import case_from_record
from surveillance.pipeline import SNAPSHOT_COLUMNS, recompute
from surveillance.reports import decode_score
from surveillance.scoring import score_case
from tests import factories

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CONTENT = [c for c in SNAPSHOT_COLUMNS if c not in ("run_id", "computed_at")]


def _plain(value):
    # Backends return booleans and dates differently (True vs 1, date vs text): compare their meaning.
    if isinstance(value, bool):
        return int(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()[:10]
    return value


def _snapshots(engine) -> dict[int, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {', '.join(CONTENT)} FROM risk_snapshot ORDER BY patient_id")).all()
    return {row[0]: tuple(_plain(v) for v in row) for row in rows}


def _active_alerts(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(_plain(v) for v in r)
            for r in conn.execute(
                text(
                    "SELECT patient_id, rule_id, evidence_key, severity, status FROM alert "
                    "WHERE status IN ('open', 'acknowledged', 'snoozed') ORDER BY patient_id, rule_id"
                )
            )
        ]


def test_full_and_incremental_give_identical_snapshots(db_url, tmp_path):
    first = get_engine(db_url)
    factories.add_patients(first, 120, seed=3)
    # The same data in a second database (always SQLite: the content, not the backend, is compared).
    second = get_engine(f"sqlite:///{tmp_path / 'second.db'}")
    upgrade(second)
    factories.add_patients(second, 120, seed=3)

    # Batches of 17: the full run reads the next batch while it writes this one.
    full = recompute(first, full=True, now=NOW, batch_size=17)
    incremental = recompute(second, full=False, now=NOW)
    assert full.status == incremental.status == "success"
    assert full.batches == 8
    assert full.patients == incremental.patients == 120
    a, b = _snapshots(first), _snapshots(second)
    assert len(a) == 120
    assert a == b
    assert _active_alerts(first) == _active_alerts(second)
    # A rerun changes nothing and the queue is empty afterwards.
    again = recompute(first, full=True, now=NOW)
    assert again.snapshots_written == 0 and again.alerts_opened == 0
    with second.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM recompute_queue")).scalar() == 0


def test_snapshot_scores_equal_the_scoring_core_for_every_patient(engine):
    factories.add_patients(engine, 150, seed=11)
    recompute(engine, full=True, now=NOW)
    with engine.connect() as conn:
        patients = {r.id: dict(r._mapping) for r in conn.execute(text("SELECT * FROM patient"))}
        states = {r.patient_id: dict(r._mapping) for r in conn.execute(text("SELECT * FROM patient_state"))}
        lesions: dict[int, list] = {}
        for r in conn.execute(text("SELECT * FROM spinal_lesion WHERE active ORDER BY patient_id, id")):
            lesions.setdefault(r.patient_id, []).append(dict(r._mapping))
        snapshots = {r.patient_id: dict(r._mapping) for r in conn.execute(text("SELECT * FROM risk_snapshot"))}
    systems = {
        "tomita": "tomita",
        "revised_tokuhashi": "tokuhashi",
        "bauer": "bauer",
        "modified_bauer": "modified_bauer",
        "nesms": "nesms",
        "new_katagiri": "katagiri",
    }
    checked = 0
    for pid, patient in patients.items():
        result = score_case(case_from_record(patient, states[pid], lesions.get(pid, [])))
        snap = snapshots[pid]
        for system, column in systems.items():
            decoded = decode_score(snap, column, f"{column}_band")
            assert decoded["possible_totals"] == result[system]["possible_totals"], (pid, system)
            assert decoded["band"] == result[system]["band"], (pid, system)
        # The worst lesion: every value reachable as the maximum over the lesions.
        per_lesion = [set(s["possible_totals"]) for s in result["sins"]]
        if per_lesion:
            floor = max(min(s) for s in per_lesion)
            worst = sorted({v for s in per_lesion for v in s if v >= floor})
            assert decode_score(snap, "sins_worst", "sins_worst_category")["possible_totals"] == worst, pid
        else:
            assert snap["sins_worst_mask"] == 0
        assert snap["tes_screen"] == result["tes_screen"]["result"], pid
        checked += 1
    assert checked == 150


def _alert(engine, patient_id: int, rule_id: str):
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT id, status, evidence_key, version FROM alert WHERE patient_id = :p AND rule_id = :r "
                "ORDER BY id DESC LIMIT 1"
            ),
            {"p": patient_id, "r": rule_id},
        ).first()


def _one_overdue_patient(engine) -> int:
    from db import models as m
    from db.engine import write_session
    from surveillance.state import refresh_patient_state

    with write_session(engine) as session:
        patient = m.Patient(
            mrn="OVER1",
            family_name="Kato",
            given_name="Emi",
            birth_date=date(1955, 5, 5),
            primary_site="breast",
            hormone_dependent=True,
            registered_on=date(2024, 1, 1),
        )
        session.add(patient)
        session.flush()
        session.add(
            m.SpinalLesion(
                patient_id=patient.id,
                level="T8",
                first_seen_on=date(2024, 1, 10),
                pain="none",
                lesion_type="blastic",
                alignment="normal",
                collapse="none",
                posterolateral="none",
                bilsky_escc="0",
                assessed_on=date(2024, 1, 10),
            )
        )
        session.add(
            m.ImagingStudy(patient_id=patient.id, performed_on=date(2026, 1, 5), modality="mri", region="whole_spine")
        )
        session.flush()
        refresh_patient_state(session, [patient.id])
        return patient.id


def test_alert_lifecycle_across_reruns(engine):
    from db import models as m
    from db.engine import write_session
    from surveillance.state import refresh_patient_state

    pid = _one_overdue_patient(engine)
    recompute(engine, full=True, now=NOW)
    # Low tier (SINS 1, Bilsky 0): due 182 days after 2026-01-05 = 2026-07-06, overdue on 2026-11-27.
    alert = _alert(engine, pid, "imaging-overdue")
    assert alert.status == "open" and alert.evidence_key == "2026-07-06"

    # An acknowledged alert is not reopened (nor duplicated) by reruns.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE alert SET status = 'acknowledged', version = version + 1 WHERE id = :i"), {"i": alert.id}
        )
    recompute(engine, full=True, now=NOW + timedelta(hours=1))
    recompute(engine, full=False, now=NOW + timedelta(hours=2))
    assert _alert(engine, pid, "imaging-overdue").status == "acknowledged"
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT COUNT(*) FROM alert WHERE patient_id = :p AND rule_id = 'imaging-overdue'"), {"p": pid}
            ).scalar()
            == 1
        )

    # New imaging clears the condition: the alert is resolved by the system.
    with write_session(engine) as session:
        session.add(
            m.ImagingStudy(patient_id=pid, performed_on=date(2026, 11, 20), modality="mri", region="whole_spine")
        )
        session.flush()
        refresh_patient_state(session, [pid])
        session.add(m.RecomputeQueue(patient_id=pid))
    recompute(engine, full=False, now=NOW + timedelta(hours=3))
    resolved = _alert(engine, pid, "imaging-overdue")
    assert resolved.status == "resolved"

    # Months later the next due date passes: a new episode opens a new alert.
    later = datetime(2027, 6, 1, 9, 0, tzinfo=UTC)
    recompute(engine, full=True, now=later)
    new = _alert(engine, pid, "imaging-overdue")
    assert new.status == "open" and new.evidence_key == "2027-05-21" and new.id != alert.id

    # Dismissed by a person: the same episode is not reopened by a rerun.
    with engine.begin() as conn:
        conn.execute(text("UPDATE alert SET status = 'dismissed', closed_by = 'nurse1' WHERE id = :i"), {"i": new.id})
    recompute(engine, full=True, now=later + timedelta(days=1))
    assert _alert(engine, pid, "imaging-overdue").id == new.id
    assert _active_alerts(engine) == [a for a in _active_alerts(engine) if a[1] != "imaging-overdue"]


def test_snoozed_alert_returns_when_the_snooze_expires(engine):
    pid = _one_overdue_patient(engine)
    recompute(engine, full=True, now=NOW)
    alert = _alert(engine, pid, "imaging-overdue")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE alert SET status = 'snoozed', snoozed_until = :u, snooze_reason = 'MRI booked' WHERE id = :i"),
            {"u": NOW + timedelta(days=3), "i": alert.id},
        )
    recompute(engine, full=False, now=NOW + timedelta(days=1))
    assert _alert(engine, pid, "imaging-overdue").status == "snoozed"
    recompute(engine, full=False, now=NOW + timedelta(days=4))  # the expired snooze is picked up incrementally
    assert _alert(engine, pid, "imaging-overdue").status == "open"


def test_at_most_one_active_alert_per_patient_and_rule_is_enforced(engine):
    pid = _one_overdue_patient(engine)
    recompute(engine, full=True, now=NOW)
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO alert (patient_id, rule_id, rule_version, severity, status, title, evidence, evidence_key, "
                    "source, opened_at, version) VALUES (:p, 'imaging-overdue', '1', 'routine', 'open', 't', '{}', 'x', 's', :now, 1)"
                ),
                {"p": pid, "now": NOW},
            )


def test_a_failed_batch_leaves_the_previous_snapshots_and_marks_the_run_failed(engine, monkeypatch):
    import surveillance.pipeline as pipeline

    factories.add_patients(engine, 60, seed=5)
    recompute(engine, full=True, now=NOW, batch_size=20)
    before = _snapshots(engine)
    # Change every patient's facts so a rerun would rewrite every snapshot.
    with engine.begin() as conn:
        conn.execute(text("UPDATE patient_state SET last_imaging_on = :d"), {"d": date(2026, 11, 1)})
    calls = {"n": 0}
    original = pipeline._write_snapshots

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash in the second batch")
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_write_snapshots", flaky)
    with pytest.raises(RuntimeError):
        recompute(engine, full=True, now=NOW + timedelta(hours=1), batch_size=20)
    after = _snapshots(engine)
    ids = sorted(before)
    first_batch, second_batch = ids[:20], ids[20:40]
    assert all(after[i] != before[i] for i in first_batch)  # committed batch: new snapshots
    assert all(after[i] == before[i] for i in second_batch)  # failed batch: untouched, previous snapshot current
    with engine.connect() as conn:
        status, message = conn.execute(text("SELECT status, message FROM job_run ORDER BY id DESC LIMIT 1")).one()
    assert status == "failed" and "simulated crash" in message
    monkeypatch.setattr(pipeline, "_write_snapshots", original)
    assert recompute(engine, full=True, now=NOW + timedelta(hours=2), batch_size=20).status == "success"


def test_inactive_patients_have_no_active_alerts_and_no_imaging_clock(engine):
    factories.add_patients(engine, 80, seed=9)
    recompute(engine, full=True, now=NOW)
    with engine.connect() as conn:
        inactive = conn.execute(
            text(
                "SELECT COUNT(*) FROM alert a JOIN patient p ON p.id = a.patient_id "
                "WHERE p.status != 'active' AND a.status IN ('open', 'acknowledged', 'snoozed')"
            )
        ).scalar()
        clocks = conn.execute(
            text("SELECT COUNT(*) FROM risk_snapshot WHERE active = :f AND next_imaging_due IS NOT NULL"), {"f": False}
        ).scalar()
        evidence = [json.loads(e) for (e,) in conn.execute(text("SELECT evidence FROM alert LIMIT 50"))]
    assert inactive == 0 and clocks == 0
    assert evidence and all(isinstance(e, dict) for e in evidence)


def _new_imaging(engine, pid: int) -> None:
    from db import models as m
    from db.engine import write_session
    from surveillance.state import refresh_patient_state

    with write_session(engine) as session:  # new imaging: the run will resolve the overdue alert
        session.add(
            m.ImagingStudy(patient_id=pid, performed_on=date(2026, 11, 20), modality="mri", region="whole_spine")
        )
        session.flush()
        refresh_patient_state(session, [pid])


def _acknowledge(conn, alert_id: int) -> None:
    conn.execute(
        text(
            "UPDATE alert SET status = 'acknowledged', acknowledged_by = 'nurse1', version = version + 1 WHERE id = :i"
        ),
        {"i": alert_id},
    )


def test_a_person_acting_while_the_batch_is_prepared_is_seen_before_anything_is_written(engine, monkeypatch):
    """The batch was planned (resolve the alert) from alert rows a person then changed: the writer sees
    the patient's alert digest moved, writes nothing of theirs, and the run re-plans them from the new rows."""
    from surveillance import pipeline

    pid = _one_overdue_patient(engine)
    recompute(engine, full=True, now=NOW)
    alert = _alert(engine, pid, "imaging-overdue")
    _new_imaging(engine, pid)
    original = pipeline.apply_batch
    seen = []

    def person_acts_first(engine_, prepared, *args, **kwargs):
        if not seen:
            seen.append([row[2] for row in prepared.resolves])
            with engine.begin() as conn:
                _acknowledge(conn, alert.id)
        return original(engine_, prepared, *args, **kwargs)

    monkeypatch.setattr(pipeline, "apply_batch", person_acts_first)
    result = recompute(engine, full=True, now=NOW + timedelta(hours=1))
    assert seen == [[alert.id]]  # the first plan resolved the alert as it was before the person acted
    after = _alert(engine, pid, "imaging-overdue")
    with engine.connect() as conn:
        acknowledged_by = conn.execute(
            text("SELECT acknowledged_by FROM alert WHERE id = :i"), {"i": alert.id}
        ).scalar()
        queued = conn.execute(text("SELECT patient_id FROM recompute_queue")).scalars().all()
        open_alerts = conn.execute(
            text("SELECT open_alerts FROM risk_snapshot WHERE patient_id = :p"), {"p": pid}
        ).scalar()
        still_open = conn.execute(
            text("SELECT COUNT(*) FROM alert WHERE patient_id = :p AND status = 'open'"), {"p": pid}
        ).scalar()
    # Re-planned from the acknowledged alert: the condition cleared, so it is resolved — after the person's change.
    assert (after.id, after.status, after.version) == (alert.id, "resolved", alert.version + 2)
    assert acknowledged_by == "nurse1" and result.alerts_resolved == 1
    assert pid not in queued and open_alerts == still_open


def test_a_person_acting_inside_the_write_keeps_the_alert_and_requeues_the_patient(engine, monkeypatch):
    """Optimistic locking, the last line: the alert changed after the writer's check (possible on PostgreSQL,
    where the batch lock does not hold a person's write back).  The version check keeps the person's change."""
    from surveillance import pipeline

    pid = _one_overdue_patient(engine)
    recompute(engine, full=True, now=NOW)
    alert = _alert(engine, pid, "imaging-overdue")
    _new_imaging(engine, pid)
    original = pipeline._update_alerts

    def person_acts_first(conn, row_columns, fixed, rows, *args, **kwargs):
        if any(row[0] == alert.id for row in rows):
            _acknowledge(conn, alert.id)
        return original(conn, row_columns, fixed, rows, *args, **kwargs)

    monkeypatch.setattr(pipeline, "_update_alerts", person_acts_first)
    result = recompute(engine, full=True, now=NOW + timedelta(hours=1))
    after = _alert(engine, pid, "imaging-overdue")
    assert (after.id, after.status) == (alert.id, "acknowledged")  # the person's change stands
    assert result.alerts_resolved == 0
    with engine.connect() as conn:
        queued = conn.execute(text("SELECT patient_id FROM recompute_queue")).scalars().all()
        fingerprint = conn.execute(
            text("SELECT alert_fingerprint FROM risk_snapshot WHERE patient_id = :p"), {"p": pid}
        ).scalar()
    assert pid in queued and fingerprint is None  # rescored, and re-planned, by the next run
    monkeypatch.setattr(pipeline, "_update_alerts", original)
    recompute(engine, full=False, now=NOW + timedelta(hours=2))
    assert _alert(engine, pid, "imaging-overdue").status == "resolved"


def test_a_full_run_leaves_planner_statistics_for_the_wake_up_and_caseload_tables(engine):
    """Without statistics SQLite scanned every open alert for the incremental wake-ups (2.8 s at 1M).

    ``PRAGMA optimize`` on a fresh connection (SQLite < 3.46) analysed nothing; the full run
    must leave statistics for the tables the incremental run and the caseload query.
    """
    _one_overdue_patient(engine)
    recompute(engine, full=True, now=NOW)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            analysed = set(conn.execute(text("SELECT DISTINCT tbl FROM sqlite_stat1")).scalars())
        else:
            analysed = set(
                conn.execute(text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")).scalars()
            )
    assert {"alert", "risk_snapshot"} <= analysed, analysed


def test_rewritten_snapshots_equal_first_written_ones_when_indexed_columns_move(db_url, tmp_path):
    """A changed snapshot sets an indexed column only when its value changed (SQLite rewrites the
    index entries of every column an UPDATE sets).  Rewritten rows must equal rows written afresh.

    Database A is scored, then time passes (tiers, due dates, re-check days and priorities move)
    and patients change nurse or die; it is scored again, updating its snapshots.  Database B gets
    the same changes and is scored once, inserting them.  Every snapshot must be the same.
    """
    from sqlalchemy import bindparam

    from db.engine import write_session
    from surveillance.state import refresh_patient_state

    later = NOW + timedelta(days=400)
    first = get_engine(db_url)
    second = get_engine(f"sqlite:///{tmp_path / 'second.db'}")
    upgrade(second)
    for engine in (first, second):
        factories.add_patients(engine, 90, seed=5)
    recompute(first, full=True, now=NOW)
    before = _snapshots(first)

    def change(engine) -> None:
        with write_session(engine) as session:
            ids = [r[0] for r in session.execute(text("SELECT id FROM patient ORDER BY id")).all()]
            session.execute(
                text("UPDATE patient SET status = 'deceased', deceased_on = :d WHERE id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"d": later.date() - timedelta(days=30), "ids": ids[:5]},
            )
            session.execute(
                text("UPDATE patient SET assigned_nurse_id = NULL WHERE id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": ids[5:12]},
            )
            refresh_patient_state(session, ids[:12])

    change(first)
    change(second)
    recompute(first, full=True, now=later)
    recompute(second, full=True, now=later)
    a, b = _snapshots(first), _snapshots(second)
    assert a == b
    # The comparison is about rows whose indexed columns really moved.
    index_of = {c: CONTENT.index(c) for c in ("active", "tier", "next_imaging_due", "recheck_on", "priority")}
    moved = {c: sum(before[pid][k] != a[pid][k] for pid in a) for c, k in index_of.items()}
    assert all(count > 0 for count in moved.values()), moved
