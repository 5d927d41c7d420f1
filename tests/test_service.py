"""Clinical writes through surveillance.service: validation, scope, re-scoring, versions, audit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from db.engine import read_session
from surveillance import service
from surveillance.access import Identity, PermissionDenied, Role
from surveillance.audit import verify_chain
from surveillance.service import ConflictError, LesionFinding, ValidationError
from tests import factories

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def world(engine):
    users = factories.add_users(engine)
    nurse = Identity(users["nurse1"], "nurse1", "Nurse One", Role.NURSE, "oncology")
    other_nurse = Identity(users["nurse2"], "nurse2", "Nurse Two", Role.NURSE, "oncology")
    doctor = Identity(users["doc1"], "doc1", "Doc One", Role.PHYSICIAN, "oncology")
    lead = Identity(users["lead1"], "lead1", "Lead", Role.LEAD)
    admin = Identity(users["admin1"], "admin1", "Admin", Role.ADMIN)
    created = service.create_patient(
        engine,
        nurse,
        mrn="S0001",
        family_name="Suzuki",
        given_name="Hana",
        birth_date=date(1958, 4, 2),
        department="oncology",
        primary_site="breast",
        now=NOW,
    )
    return {
        "engine": engine,
        "nurse": nurse,
        "other": other_nurse,
        "doctor": doctor,
        "lead": lead,
        "admin": admin,
        "pid": created.patient_id,
    }


def _snapshot(engine, pid):
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM risk_snapshot WHERE patient_id = :p"), {"p": pid}).mappings().one()


def _alerts(engine, pid):
    with engine.connect() as conn:
        return {
            r.rule_id: r
            for r in conn.execute(
                text(
                    "SELECT id, rule_id, status, version, severity FROM alert WHERE patient_id = :p "
                    "AND status IN ('open', 'acknowledged', 'snoozed')"
                ),
                {"p": pid},
            )
        }


def test_imaging_with_sins_findings_rescores_at_once(world):
    engine, nurse, pid = world["engine"], world["nurse"], world["pid"]
    service.record_imaging(
        engine,
        nurse,
        pid,
        performed_on=date(2026, 11, 20),
        modality="mri",
        region="whole_spine",
        lesions=[
            LesionFinding(
                level="T12",
                pain="mechanical",
                lesion_type="lytic",
                alignment="subluxation",
                collapse="gt50",
                posterolateral="bilateral",
                bilsky_escc="2",
            )
        ],
        now=NOW,
    )
    snap = _snapshot(engine, pid)
    # T12 junctional 3 + mechanical 3 + lytic 2 + subluxation 4 + >50% collapse 3 + bilateral 3 = 18 (§2.1).
    assert snap["sins_worst_total"] == 18 and snap["sins_worst_category"] == "unstable"
    assert snap["tier"] == "high" and snap["bilsky_worst"] == "2"
    alerts = _alerts(engine, pid)
    assert {"sins-unstable", "escc-high-grade"} <= set(alerts)
    assert alerts["escc-high-grade"].severity == "critical"


def test_validation_names_the_field(world):
    engine, nurse, pid = world["engine"], world["nurse"], world["pid"]
    with pytest.raises(ValidationError, match="recorded_on: .*future"):
        service.record_performance_status(engine, nurse, pid, recorded_on=date(2026, 12, 1), ecog=1, now=NOW)
    with pytest.raises(ValidationError, match="before the patient's birth"):
        service.record_performance_status(engine, nurse, pid, recorded_on=date(1950, 1, 1), ecog=1, now=NOW)
    with pytest.raises(ValidationError, match="ecog"):
        service.record_performance_status(engine, nurse, pid, recorded_on=date(2026, 11, 1), ecog=5, now=NOW)
    with pytest.raises(ValidationError, match="multiple of 10"):
        service.record_performance_status(engine, nurse, pid, recorded_on=date(2026, 11, 1), kps=75, now=NOW)
    with pytest.raises(ValidationError, match="implausible"):
        service.record_lab(engine, nurse, pid, collected_on=date(2026, 11, 1), test="albumin", value=35, now=NOW)
    with pytest.raises(ValidationError, match="unit"):
        service.record_lab(
            engine, nurse, pid, collected_on=date(2026, 11, 1), test="albumin", value=3.5, unit="furlongs", now=NOW
        )
    with pytest.raises(ValidationError, match=r"lesions\[0\]\.pain"):
        service.record_imaging(
            engine,
            nurse,
            pid,
            performed_on=date(2026, 11, 1),
            modality="mri",
            region="thoracic",
            lesions=[LesionFinding(level="T4", pain="sharp")],
            now=NOW,
        )
    # Nothing was written by the refused forms.
    with read_session(engine) as session:
        assert session.execute(text("SELECT COUNT(*) FROM performance_status")).scalar() == 0
        assert session.execute(text("SELECT COUNT(*) FROM imaging_study")).scalar() == 0


def test_lab_units_are_converted_to_the_canonical_unit(world):
    engine, nurse, pid = world["engine"], world["nurse"], world["pid"]
    service.record_lab(
        engine, nurse, pid, collected_on=date(2026, 11, 1), test="albumin", value=35, unit="g/L", now=NOW
    )
    service.record_lab(
        engine, nurse, pid, collected_on=date(2026, 11, 2), test="calcium", value=2.5, unit="mmol/L", now=NOW
    )
    with read_session(engine) as session:
        state = session.execute(
            text("SELECT albumin_g_dl, calcium_mg_dl FROM patient_state WHERE patient_id = :p"), {"p": pid}
        ).one()
    assert state.albumin_g_dl == pytest.approx(3.5)
    assert state.calcium_mg_dl == pytest.approx(10.02)


def test_nurse_scope_and_roles_are_enforced_and_refusals_audited(world):
    engine, pid = world["engine"], world["pid"]
    with pytest.raises(PermissionDenied):
        service.record_performance_status(engine, world["other"], pid, recorded_on=date(2026, 11, 1), ecog=1, now=NOW)
    with pytest.raises(PermissionDenied):
        service.record_performance_status(engine, world["lead"], pid, recorded_on=date(2026, 11, 1), ecog=1, now=NOW)
    with pytest.raises(PermissionDenied):
        service.record_performance_status(engine, world["admin"], pid, recorded_on=date(2026, 11, 1), ecog=1, now=NOW)
    # The physician of the department may.
    service.record_performance_status(engine, world["doctor"], pid, recorded_on=date(2026, 11, 1), ecog=1, now=NOW)
    with read_session(engine) as session:
        denied = (
            session.execute(text("SELECT actor FROM audit_event WHERE outcome = 'denied' ORDER BY id")).scalars().all()
        )
        assert denied == ["nurse2", "lead1", "admin1"]
        assert verify_chain(session).ok


def test_alert_workflow_with_versions(world):
    engine, nurse, pid = world["engine"], world["nurse"], world["pid"]
    alerts = _alerts(engine, pid)
    overdue = alerts["imaging-overdue"]  # breast (screening tier) with no imaging yet
    service.acknowledge_alert(engine, nurse, overdue.id, version=overdue.version, now=NOW)
    with pytest.raises(ConflictError, match="changed by someone else|cannot"):
        service.acknowledge_alert(engine, nurse, overdue.id, version=overdue.version, now=NOW)
    current = _alerts(engine, pid)["imaging-overdue"]
    assert current.status == "acknowledged"
    with pytest.raises(ValidationError, match="reason"):
        service.snooze_alert(
            engine, nurse, current.id, version=current.version, until=NOW + timedelta(days=7), reason=" ", now=NOW
        )
    with pytest.raises(ValidationError, match="until"):
        service.snooze_alert(
            engine,
            nurse,
            current.id,
            version=current.version,
            until=NOW + timedelta(days=200),
            reason="MRI booked",
            now=NOW,
        )
    service.snooze_alert(
        engine,
        nurse,
        current.id,
        version=current.version,
        until=NOW + timedelta(days=7),
        reason="MRI booked for next week",
        now=NOW,
    )
    snoozed = _alerts(engine, pid)["imaging-overdue"]
    assert snoozed.status == "snoozed"
    service.complete_alert(engine, nurse, snoozed.id, version=snoozed.version, action_taken="MRI requested", now=NOW)
    assert "imaging-overdue" not in _alerts(engine, pid)  # done, and not reopened by the re-score


def test_board_decision_closes_the_alerts_it_answers(world):
    engine, nurse, doctor, pid = world["engine"], world["nurse"], world["doctor"], world["pid"]
    service.record_imaging(
        engine,
        nurse,
        pid,
        performed_on=date(2026, 11, 20),
        modality="mri",
        region="thoracic",
        lesions=[
            LesionFinding(
                level="T9",
                pain="mechanical",
                lesion_type="lytic",
                alignment="normal",
                collapse="lt50",
                posterolateral="unilateral",
                bilsky_escc="1b",
            )
        ],
        now=NOW,
    )
    assert "board-candidate" in _alerts(engine, pid)
    with pytest.raises(PermissionDenied):
        service.record_board_decision(engine, nurse, pid, decision="x", decided_on=date(2026, 11, 26), now=NOW)
    service.record_board_decision(
        engine, doctor, pid, decision="SBRT to T9; denosumab", decided_on=date(2026, 11, 26), now=NOW
    )
    remaining = _alerts(engine, pid)
    assert "board-candidate" not in remaining
    with engine.connect() as conn:
        closed = conn.execute(
            text("SELECT status, action_taken FROM alert WHERE patient_id = :p AND rule_id = 'board-candidate'"),
            {"p": pid},
        ).one()
    assert closed.status == "done" and "SBRT" in closed.action_taken


def test_patient_update_detects_a_lost_update(world):
    engine, nurse, pid = world["engine"], world["nurse"], world["pid"]
    with read_session(engine) as session:
        version = session.execute(text("SELECT version FROM patient WHERE id = :p"), {"p": pid}).scalar()
    service.update_patient(engine, nurse, pid, version=version, changes={"fit_for_surgery": True}, now=NOW)
    with pytest.raises(ConflictError):
        service.update_patient(engine, nurse, pid, version=version, changes={"fit_for_surgery": False}, now=NOW)
    with read_session(engine) as session:
        assert session.execute(text("SELECT fit_for_surgery FROM patient WHERE id = :p"), {"p": pid}).scalar() in (
            True,
            1,
        )
