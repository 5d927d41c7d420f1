"""Break-glass (HIPAA 164.312(a)(2)(ii), ONC 170.315(d)(6)): reason, time box, audit, roles — on both backends.

The data-layer reads (``dashboard.data``) use the wall clock, so grants are
made with ``now`` in the past (one minute ago: valid; longer ago than the
policy's duration: expired); the service writes take ``now`` and are checked at
exact instants, including the expiry instant itself.
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import text

from db import models as m
from db.engine import write_session
from surveillance import break_glass, service
from surveillance.access import Identity, PermissionDenied, Role
from tests import factories

pytestmark = pytest.mark.db

POLICY = tomllib.loads((Path(__file__).parents[1] / "surveillance" / "break_glass.toml").read_text())["break_glass"]
DURATION = timedelta(minutes=POLICY["duration_minutes"])
GOOD_REASON = "Patient collapsed in the day unit; covering for the named nurse."


@pytest.fixture
def world(db_url, monkeypatch):
    """Users of every role, and three oncology patients: two of nurse2's, one of nurse1's."""
    from db.engine import get_engine

    engine = get_engine(db_url)
    users = factories.add_users(engine)
    ids = {}
    with write_session(engine) as session:
        for mrn, nurse in (("BG-OTHER", "nurse2"), ("BG-OTHER2", "nurse2"), ("BG-OWN", "nurse1")):
            patient = m.Patient(mrn=mrn, family_name="Glass", given_name=mrn, birth_date=date(1955, 3, 4),
                                department="oncology", primary_site="breast", assigned_nurse_id=users[nurse])
            session.add(patient)
            session.flush()
            ids[mrn] = patient.id
    monkeypatch.setenv("DATABASE_URL", db_url)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield {"engine": engine, "users": users, "patients": ids}
    st.cache_data.clear()
    st.cache_resource.clear()


def who(world, username: str) -> Identity:
    with world["engine"].connect() as conn:
        row = conn.execute(text("SELECT id, username, display_name, role, department FROM app_user "
                                "WHERE username = :u"), {"u": username}).one()
    return Identity(row.id, row.username, row.display_name, Role(row.role), row.department)


def events(world, **where) -> list:
    condition = " AND ".join(f"{k} = :{k}" for k in where)
    with world["engine"].connect() as conn:
        return conn.execute(text(f"SELECT action, outcome, patient_id, target, detail FROM audit_event "
                                 f"WHERE {condition} ORDER BY id"), where).all()


def grants(world) -> int:
    with world["engine"].connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM break_glass_grant")).scalar())


def wall() -> datetime:
    return datetime.now(UTC)


def test_policy_duration_is_the_documented_local_policy():
    # shared/notes/security.md test 34 proposes "e.g. 4 h"; the file must say it is local policy.
    assert POLICY["duration_minutes"] == 240
    source = " ".join((Path(__file__).parents[1] / "surveillance" / "break_glass.toml").read_text().replace("#", " ").split())
    assert "LOCAL POLICY" in source and "164.312(a)(2)(ii)" in source and "170.315(d)(6)" in source
    policy = break_glass.load_policy()
    assert policy.duration == timedelta(hours=4)
    assert policy.roles == {Role.NURSE, Role.PHYSICIAN}


def test_a_nurse_opens_an_out_of_scope_patient_with_a_reason_and_it_is_audited(world):
    from dashboard.data import admin, patient

    nurse = who(world, "nurse1")
    other = world["patients"]["BG-OTHER"]
    service.record_performance_status(world["engine"], who(world, "doc1"), other, recorded_on=date(2026, 11, 20),
                                      ecog=2, now=wall())
    assert patient.timeline(nurse, other).empty
    assert patient.patient_record(nurse, other) is None  # refused before the grant
    assert [e.outcome for e in events(world, actor="nurse1", action="denied.view_patient")] == ["denied"]

    granted_at = wall() - timedelta(minutes=1)
    grant = break_glass.grant(world["engine"], nurse, reason=f"  {GOOD_REASON}  ", now=granted_at, mrn="BG-OTHER")
    assert grant.patient_id == other and grant.reason == GOOD_REASON
    assert grant.expires_at - grant.granted_at == DURATION

    (event,) = events(world, actor="nurse1", action="break_glass.grant")
    assert event.outcome == "success" and event.patient_id == other
    assert event.target == f"break_glass_grant:{grant.id}"
    detail = json.loads(event.detail)
    assert detail["reason"] == GOOD_REASON and detail["minutes"] == POLICY["duration_minutes"]

    record = patient.patient_record(nurse, other)
    assert record is not None and record["patient"]["mrn"] == "BG-OTHER"
    assert record["break_glass"]["grant_id"] == grant.id
    assert "ECOG 2" in list(patient.timeline(nurse, other)["label"])
    patient.record_view(nurse, other, break_glass_grant=record["break_glass"]["grant_id"])
    (view,) = events(world, actor="nurse1", action="view.patient")
    assert json.loads(view.detail) == {"break_glass": grant.id}

    # The grant opens that one patient to that one user, nothing else.
    assert patient.patient_record(nurse, world["patients"]["BG-OTHER2"]) is None
    assert patient.patient_record(who(world, "nurse2"), world["patients"]["BG-OWN"]) is None

    # The audit page's emergency filter finds the grant and the flagged view, and no ordinary event.
    patient.record_view(nurse, world["patients"]["BG-OWN"])
    admin_id = who(world, "admin1")
    found = admin.audit_events(admin_id, since=wall() - timedelta(hours=1), until=wall() + timedelta(hours=1),
                               actor=None, action=None, patient_id=None, break_glass_only=True)
    assert sorted(found["action"]) == ["break_glass.grant", "view.patient"]
    assert set(found["patient_id"]) == {other}
    everything = admin.audit_events(admin_id, since=wall() - timedelta(hours=1), until=wall() + timedelta(hours=1),
                                    actor=None, action=None, patient_id=None)
    assert len(everything) > len(found)


def test_writes_under_a_grant_are_flagged_and_refused_from_the_expiry_instant(world):
    engine, nurse = world["engine"], who(world, "nurse1")
    other = world["patients"]["BG-OTHER"]
    t0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    with pytest.raises(PermissionDenied):
        service.record_performance_status(engine, nurse, other, recorded_on=date(2026, 11, 26), ecog=1, now=t0)
    grant = break_glass.grant(engine, nurse, reason=GOOD_REASON, now=t0, patient_id=other)

    inside = t0 + DURATION - timedelta(seconds=1)
    service.record_performance_status(engine, nurse, other, recorded_on=date(2026, 11, 26), ecog=1, now=inside)
    (write,) = events(world, actor="nurse1", action="record.performance_status", outcome="success")
    assert json.loads(write.detail)["break_glass"] == grant.id

    with pytest.raises(PermissionDenied):
        service.record_performance_status(engine, nurse, other, recorded_on=date(2026, 11, 26), ecog=2,
                                          now=t0 + DURATION)
    denied = events(world, actor="nurse1", action="record.performance_status", outcome="denied")
    assert len(denied) == 2  # before the grant and at its expiry
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM performance_status WHERE patient_id = :p"),
                            {"p": other}).scalar() == 1
        # Not valid before it was granted either.
        assert break_glass.active_grant(conn, nurse, other, t0 - timedelta(seconds=1)) is None
        assert break_glass.active_grant(conn, nurse, other, t0) == grant.id


def test_an_expired_grant_opens_nothing_in_the_data_layer(world):
    from dashboard.data import caseload, patient

    nurse = who(world, "nurse1")
    other = world["patients"]["BG-OTHER"]
    break_glass.grant(world["engine"], nurse, reason=GOOD_REASON, now=wall() - DURATION - timedelta(minutes=1),
                      patient_id=other)
    assert grants(world) == 1
    assert patient.patient_record(nurse, other) is None
    assert patient.timeline(nurse, other).empty
    assert patient.active_alerts(nurse, other) == []
    assert caseload.patient_alerts(nurse, other).empty
    assert len(events(world, actor="nurse1", action="denied.view_patient")) == 1


def test_a_grant_read_while_valid_is_not_served_from_the_cache_after_expiry(world, monkeypatch):
    from dashboard.data import common, patient

    nurse = who(world, "nurse1")
    other = world["patients"]["BG-OTHER"]
    t0 = wall()
    break_glass.grant(world["engine"], nurse, reason=GOOD_REASON, now=t0, patient_id=other)
    monkeypatch.setattr(common, "now", lambda: t0 + timedelta(minutes=5))
    monkeypatch.setattr(patient, "now", lambda: t0 + timedelta(minutes=5))
    assert patient.patient_record(nurse, other) is not None  # cached now
    monkeypatch.setattr(patient, "now", lambda: t0 + DURATION)
    assert patient.patient_record(nurse, other) is None


@pytest.mark.parametrize("username", ["lead1", "admin1"])
def test_leads_and_admins_cannot_break_the_glass(world, username):
    person = who(world, username)
    with pytest.raises(PermissionDenied):
        break_glass.grant(world["engine"], person, reason=GOOD_REASON, now=wall(),
                          patient_id=world["patients"]["BG-OTHER"])
    assert grants(world) == 0
    (event,) = events(world, actor=username, action="break_glass.grant")
    assert event.outcome == "denied"
    assert not break_glass.eligible(person)


@pytest.mark.parametrize("reason", [None, "", "     ", "urgent", "x" * (POLICY["reason_min_length"] - 1),
                                    " " * 30 + "short", "y" * (POLICY["reason_max_length"] + 1), 12345])
def test_a_missing_short_or_overlong_reason_is_refused_and_writes_nothing(world, reason):
    with pytest.raises(break_glass.ReasonInvalid, match="reason"):
        break_glass.grant(world["engine"], who(world, "nurse1"), reason=reason, now=wall(),
                          patient_id=world["patients"]["BG-OTHER"])
    assert grants(world) == 0


def test_the_shortest_accepted_reason_and_other_refusals(world):
    engine, nurse = world["engine"], who(world, "nurse1")
    with pytest.raises(break_glass.NotNeeded):  # already hers
        break_glass.grant(engine, nurse, reason=GOOD_REASON, now=wall(), patient_id=world["patients"]["BG-OWN"])
    with pytest.raises(LookupError):
        break_glass.grant(engine, nurse, reason=GOOD_REASON, now=wall(), mrn="NO-SUCH-MRN")
    with pytest.raises(ValueError, match="time zone"):
        break_glass.grant(engine, nurse, reason=GOOD_REASON, now=datetime(2026, 11, 27, 9, 0),
                          patient_id=world["patients"]["BG-OTHER"])
    assert grants(world) == 0
    grant = break_glass.grant(engine, nurse, reason="z" * POLICY["reason_min_length"], now=wall(),
                              patient_id=world["patients"]["BG-OTHER"])
    assert grant.id and grants(world) == 1


def test_a_physician_of_another_department_can_break_the_glass(world):
    doc = who(world, "doc2")  # orthopaedics; the patients are oncology
    with pytest.raises(PermissionDenied):
        service.record_performance_status(world["engine"], doc, world["patients"]["BG-OWN"],
                                          recorded_on=date(2026, 11, 26), ecog=1, now=wall())
    grant = break_glass.grant(world["engine"], doc, reason=GOOD_REASON, now=wall() - timedelta(seconds=5),
                              patient_id=world["patients"]["BG-OWN"])
    result = service.record_performance_status(world["engine"], doc, world["patients"]["BG-OWN"],
                                               recorded_on=date(2026, 11, 26), ecog=1, now=wall())
    assert result.patient_id == world["patients"]["BG-OWN"]
    assert grant.user_id == doc.user_id


def test_a_policy_file_that_opens_the_glass_to_a_lead_is_refused(tmp_path):
    bad = tmp_path / "bg.toml"
    bad.write_text('[break_glass]\nroles = ["nurse", "lead"]\nduration_minutes = 240\n'
                   "reason_min_length = 20\nreason_max_length = 1000\n")
    with pytest.raises(ValueError, match="clinical roles"):
        break_glass.load_policy(bad)
    bad.write_text('[break_glass]\nroles = ["nurse"]\nduration_minutes = 0\nreason_min_length = 20\n'
                   "reason_max_length = 1000\n")
    with pytest.raises(ValueError, match="duration"):
        break_glass.load_policy(bad)
