"""Every service write refuses bad input with the field named and writes nothing (security notes test 18).

Table-driven over the writers the forms call (patient page forms, alert actions,
board decision, admin user form): ranges, units, vocabularies, impossible and
future dates, dates before birth, ids that are not ids or not clinicians.  Each
case asserts the refusal names the field, and that no fact row, no success
audit event and no alert change was written.  Both backends.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from db import models as m
from db.engine import write_session
from surveillance import service, users
from surveillance.access import Identity, Role
from surveillance.service import ValidationError
from tests import factories

pytestmark = pytest.mark.db

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TODAY = date(2026, 11, 27)  # clinic day of NOW in Asia/Tokyo and UTC alike (10:00 UTC = 19:00 JST)
BORN = date(1960, 5, 1)
TOMORROW = TODAY + timedelta(days=1)
BEFORE_BIRTH = BORN - timedelta(days=1)


@pytest.fixture
def world(engine):
    ids = factories.add_users(engine)
    with write_session(engine) as session:
        patient = m.Patient(mrn="VAL-1", family_name="Valid", given_name="Ation", birth_date=BORN,
                            department="oncology", primary_site="breast", assigned_nurse_id=ids["nurse1"])
        session.add(patient)
        session.flush()
        alert = m.Alert(patient_id=patient.id, rule_id="imaging-overdue", rule_version="1", severity="high",
                        title="Imaging overdue", evidence_key="k", source="test", opened_at=NOW)
        session.add(alert)
        session.flush()
        pid, aid = patient.id, alert.id
    nurse = Identity(ids["nurse1"], "nurse1", "Nurse1", Role.NURSE, "oncology")
    doc = Identity(ids["doc1"], "doc1", "Doc1", Role.PHYSICIAN, "oncology")
    return {"engine": engine, "ids": ids, "pid": pid, "aid": aid, "nurse": nurse, "doc": doc}


def _facts(engine) -> dict[str, int]:
    tables = ["performance_status", "neuro_status", "imaging_study", "bma_administration", "lab_result",
              "skeletal_event", "treatment", "dental_exam", "metastatic_status", "locomo_condition", "board_case"]
    with engine.connect() as conn:
        counts = {t: int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar()) for t in tables}
        counts["audit_success"] = int(conn.execute(text(
            "SELECT COUNT(*) FROM audit_event WHERE outcome = 'success'")).scalar())
        counts["alert_version"] = int(conn.execute(text("SELECT SUM(version) FROM alert")).scalar())
        counts["patient_version"] = int(conn.execute(text("SELECT SUM(version) FROM patient")).scalar())
        counts["users"] = int(conn.execute(text("SELECT COUNT(*) FROM app_user")).scalar())
    return counts


S = service
CASES = [
    # (id, expected field, call)
    ("ecog 5", "ecog", lambda w: S.record_performance_status(w["engine"], w["nurse"], w["pid"], recorded_on=TODAY,
                                                              ecog=5, now=NOW)),
    ("ecog 1.5", "ecog", lambda w: S.record_performance_status(w["engine"], w["nurse"], w["pid"], recorded_on=TODAY,
                                                                ecog=1.5, now=NOW)),
    ("ecog text", "ecog", lambda w: S.record_performance_status(w["engine"], w["nurse"], w["pid"], recorded_on=TODAY,
                                                                 ecog="two", now=NOW)),
    ("ecog true", "ecog", lambda w: S.record_performance_status(w["engine"], w["nurse"], w["pid"], recorded_on=TODAY,
                                                                 ecog=True, now=NOW)),
    ("kps 55", "kps", lambda w: S.record_performance_status(w["engine"], w["nurse"], w["pid"], recorded_on=TODAY,
                                                             kps=55, now=NOW)),
    ("kps nan", "kps", lambda w: S.record_performance_status(w["engine"], w["nurse"], w["pid"], recorded_on=TODAY,
                                                              kps=float("nan"), now=NOW)),
    ("ps tomorrow", "recorded_on", lambda w: S.record_performance_status(
        w["engine"], w["nurse"], w["pid"], recorded_on=TOMORROW, ecog=1, now=NOW)),
    ("ps before birth", "recorded_on", lambda w: S.record_performance_status(
        w["engine"], w["nurse"], w["pid"], recorded_on=BEFORE_BIRTH, ecog=1, now=NOW)),
    ("ps 30 February", "recorded_on", lambda w: S.record_performance_status(
        w["engine"], w["nurse"], w["pid"], recorded_on="2023-02-30", ecog=1, now=NOW)),
    ("neuro frankel F", "frankel_grade", lambda w: S.record_neuro_status(
        w["engine"], w["nurse"], w["pid"], recorded_on=TODAY, frankel_grade="F", now=NOW)),
    ("imaging modality", "modality", lambda w: S.record_imaging(
        w["engine"], w["nurse"], w["pid"], performed_on=TODAY, modality="ultrasound", region="thoracic", now=NOW)),
    ("imaging future", "performed_on", lambda w: S.record_imaging(
        w["engine"], w["nurse"], w["pid"], performed_on=TOMORROW, modality="mri", region="thoracic", now=NOW)),
    ("bma dose mg", "dose_mg", lambda w: S.record_bma_dose(
        w["engine"], w["nurse"], w["pid"], given_on=TODAY, agent="zoledronic_acid", dose_mg=40, now=NOW)),
    ("bma agent", "agent", lambda w: S.record_bma_dose(
        w["engine"], w["nurse"], w["pid"], given_on=TODAY, agent="aspirin", dose_mg=4, now=NOW)),
    ("lab unit", "unit", lambda w: S.record_lab(
        w["engine"], w["nurse"], w["pid"], collected_on=TODAY, test="albumin", value=3.5, unit="furlongs",
        now=NOW)),
    ("lab implausible", "value", lambda w: S.record_lab(
        w["engine"], w["nurse"], w["pid"], collected_on=TODAY, test="albumin", value=350, now=NOW)),
    ("lab before birth", "collected_on", lambda w: S.record_lab(
        w["engine"], w["nurse"], w["pid"], collected_on=BEFORE_BIRTH, test="albumin", value=3.5, now=NOW)),
    ("sre type", "event_type", lambda w: S.record_sre(
        w["engine"], w["nurse"], w["pid"], occurred_on=TODAY, event_type="sneeze", now=NOW)),
    ("sre level", "level", lambda w: S.record_sre(
        w["engine"], w["nurse"], w["pid"], occurred_on=TODAY, event_type="pathological_fracture_vertebral", level="T13",
        now=NOW)),
    ("treatment end before start", "ended_on", lambda w: S.record_treatment(
        w["engine"], w["nurse"], w["pid"], kind="radiotherapy", modality="sbrt", level="T10",
        started_on=TODAY - timedelta(days=3), ended_on=TODAY - timedelta(days=5), now=NOW)),
    ("treatment dose", "dose_gy", lambda w: S.record_treatment(
        w["engine"], w["nurse"], w["pid"], kind="radiotherapy", modality="sbrt", level="T10", started_on=TODAY,
        dose_gy=800, now=NOW)),
    ("dental future", "examined_on", lambda w: S.record_dental_exam(
        w["engine"], w["nurse"], w["pid"], examined_on=TOMORROW, now=NOW)),
    ("patient status", "status", lambda w: S.update_patient(
        w["engine"], w["nurse"], w["pid"], version=1, changes={"status": "asleep"}, now=NOW)),
    ("patient nurse id text", "assigned_nurse_id", lambda w: S.update_patient(
        w["engine"], w["nurse"], w["pid"], version=1, changes={"assigned_nurse_id": "abc"}, now=NOW)),
    ("patient nurse is a lead", "assigned_nurse_id", lambda w: S.update_patient(
        w["engine"], w["nurse"], w["pid"], version=1, changes={"assigned_nurse_id": w["ids"]["lead1"]}, now=NOW)),
    ("patient deceased before birth", "deceased_on", lambda w: S.update_patient(
        w["engine"], w["nurse"], w["pid"], version=1, changes={"status": "deceased", "deceased_on": BEFORE_BIRTH},
        now=NOW)),
    ("new patient born tomorrow", "birth_date", lambda w: S.create_patient(
        w["engine"], w["nurse"], mrn="VAL-2", family_name="X", given_name="Y", birth_date=TOMORROW, now=NOW)),
    ("new patient no name", "family_name", lambda w: S.create_patient(
        w["engine"], w["nurse"], mrn="VAL-3", family_name="  ", given_name="Y", now=NOW)),
    ("snooze past", "until", lambda w: S.snooze_alert(
        w["engine"], w["nurse"], w["aid"], version=1, until=NOW - timedelta(hours=1), reason="later", now=NOW)),
    ("snooze a year", "until", lambda w: S.snooze_alert(
        w["engine"], w["nurse"], w["aid"], version=1, until=NOW + timedelta(days=365), reason="later", now=NOW)),
    ("snooze no reason", "reason", lambda w: S.snooze_alert(
        w["engine"], w["nurse"], w["aid"], version=1, until=NOW + timedelta(days=1), reason=" ", now=NOW)),
    ("dismiss no reason", "reason", lambda w: S.dismiss_alert(
        w["engine"], w["nurse"], w["aid"], version=1, reason="", now=NOW)),
    ("escalate to a lead", "to_user_id", lambda w: S.escalate_alert(
        w["engine"], w["nurse"], w["aid"], version=1, to_user_id=w["ids"]["lead1"], note="please", now=NOW)),
    ("assign to nobody", "to_user_id", lambda w: S.assign_alert(
        w["engine"], w["nurse"], w["aid"], version=1, to_user_id=999_999, now=NOW)),
    ("assign to text", "to_user_id", lambda w: S.assign_alert(
        w["engine"], w["nurse"], w["aid"], version=1, to_user_id="nurse2", now=NOW)),
    ("board decided tomorrow", "decided_on", lambda w: S.record_board_decision(
        w["engine"], w["doc"], w["pid"], decision="SBRT", decided_on=TOMORROW, now=NOW)),
    ("board no decision", "decision", lambda w: S.record_board_decision(
        w["engine"], w["doc"], w["pid"], decision="", decided_on=TODAY, now=NOW)),
    ("user long display name", "display_name", lambda w: users.add_user(
        w["engine"], actor="admin1", username="newnurse", role="nurse", password="x" * 20,
        display_name="N" * 129, now=NOW)),
    ("user long department", "department", lambda w: users.add_user(
        w["engine"], actor="admin1", username="newnurse", role="nurse", password="x" * 20,
        department="D" * 65, now=NOW)),
    ("user bad role", "role", lambda w: users.add_user(
        w["engine"], actor="admin1", username="newnurse", role="superuser", password="x" * 20, now=NOW)),
    ("user bad name", "username", lambda w: users.add_user(
        w["engine"], actor="admin1", username="Robert'); DROP TABLE app_user;--", role="nurse",
        password="x" * 20, now=NOW)),
]


@pytest.mark.parametrize("field, call", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_its_field_and_writes_nothing(world, field, call):
    before = _facts(world["engine"])
    with pytest.raises(ValidationError) as refused:
        call(world)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")
    assert _facts(world["engine"]) == before


def test_the_same_writes_with_good_values_succeed(world):
    """The refusals above are about the values: the nearest good inputs are accepted (so the table can fail)."""
    engine, nurse, pid, aid = world["engine"], world["nurse"], world["pid"], world["aid"]
    # Each alert action re-scores the patient, which resolves this hand-made alert: one alert per action.
    S.assign_alert(engine, nurse, aid, version=1, to_user_id=str(world["ids"]["nurse2"]), now=NOW)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT assigned_to_id FROM alert WHERE id = :a"), {"a": aid}).scalar() == \
            world["ids"]["nurse2"]
    with write_session(engine) as session:
        second = m.Alert(patient_id=pid, rule_id="test-only", rule_version="1", severity="high",
                         title="Imaging overdue", evidence_key="k2", source="test", opened_at=NOW)
        session.add(second)
        session.flush()
        second_id = second.id
    S.escalate_alert(engine, nurse, second_id, version=1, to_user_id=world["ids"]["doc1"], note="please review",
                     now=NOW)
    S.record_performance_status(engine, nurse, pid, recorded_on=TODAY, ecog=4, kps=20, now=NOW)
    S.record_performance_status(engine, nurse, pid, recorded_on=BORN, kps=100, now=NOW)
    S.record_lab(engine, nurse, pid, collected_on=TODAY, test="albumin", value=3.5, now=NOW)
    users.add_user(engine, actor="admin1", username="newnurse", role="nurse", password="x" * 20,
                   display_name="N" * 128, department="D" * 64, now=NOW)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT assigned_to_id FROM alert WHERE id = :a"), {"a": second_id}).scalar() == \
            world["ids"]["doc1"]
        assert conn.execute(text("SELECT COUNT(*) FROM performance_status")).scalar() == 2
        assert conn.execute(text("SELECT COUNT(*) FROM app_user WHERE username = 'newnurse'")).scalar() == 1
