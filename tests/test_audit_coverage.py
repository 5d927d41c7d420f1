"""Every auditable action leaves its event (ONC 170.315(d)(2)/(d)(10), E2147; security.md test 38), and a
failed append rolls the action back (test 43).

Each row performs one action through the product's own function (service, sessions, users CLI, the
dashboard's patient reader) and names the events it must add: actor, action, patient, outcome; the
time is the ``now`` the action was given.  Denied attempts are rows too.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db import models as m
from db.engine import write_session
from surveillance import audit, disclosure, service, sessions, users
from surveillance.access import Identity, PermissionDenied, Role
from surveillance.cli import main
from surveillance.service import LesionFinding
from tests import factories

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
DAY = date(2026, 11, 20)


@pytest.fixture
def world(engine, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    ids = factories.add_users(engine)
    who = {
        "nurse": Identity(ids["nurse1"], "nurse1", "Nurse One", Role.NURSE, "oncology"),
        "other": Identity(ids["nurse2"], "nurse2", "Nurse Two", Role.NURSE, "oncology"),
        "doctor": Identity(ids["doc1"], "doc1", "Doc One", Role.PHYSICIAN, "oncology"),
        "lead": Identity(ids["lead1"], "lead1", "Lead", Role.LEAD),
    }
    pid = service.create_patient(engine, who["nurse"], mrn="A0001", family_name="Sato", given_name="Aki",
                                 birth_date=date(1960, 1, 2), department="oncology", primary_site="breast",
                                 now=NOW - timedelta(days=1)).patient_id
    st.cache_data.clear()
    st.cache_resource.clear()  # the dashboard's engine() is a cached resource: point it at this database
    yield {"engine": engine, "pid": pid, "user_ids": ids, **who}
    st.cache_data.clear()
    st.cache_resource.clear()


def _alert(engine, pid: int, rule: str) -> int:
    with write_session(engine) as session:
        alert = m.Alert(patient_id=pid, rule_id=rule, rule_version="t", severity="high", title="test alert",
                        evidence_key=rule, source="test", opened_at=NOW - timedelta(hours=1))
        session.add(alert)
        session.flush()
        return int(alert.id)


def _fail(fn):
    def run(w):
        with pytest.raises((sessions.LoginFailed, PermissionDenied)):
            fn(w)
    return run


def _login_fail(w, times=1):
    for _ in range(times):
        with pytest.raises(sessions.LoginFailed):
            sessions.authenticate(w["engine"], "nurse1", "wrong-password-1", now=NOW)


def _cli_users(monkeypatch_stdin: str, *argv: str) -> None:
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO(monkeypatch_stdin)
    try:
        assert main(["users", *argv]) == 0
    finally:
        sys.stdin = old


def _signed_in(w):
    return sessions.authenticate(w["engine"], "nurse1", factories.PASSWORD, now=NOW - timedelta(hours=1))


def _view_patient(w):
    """What the patient page does: read the record, then record the view before drawing it."""
    from dashboard.data.patient import patient_record, record_view

    assert patient_record(w["nurse"], w["pid"]) is not None
    record_view(w["nurse"], w["pid"])


def _view_patient_denied(w):
    from dashboard.data.patient import patient_record

    assert patient_record(w["other"], w["pid"]) is None


def _os_actor() -> str:
    from surveillance.cli import _os_user

    return f"cli:{_os_user()}"


@dataclass
class Case:
    name: str
    act: Any  # (world) -> None
    events: list[dict[str, Any]]  # expected new events, in order: actor, action, patient ("pid" or None), outcome
    setup: Any = None  # (world) -> dict merged into world
    detail: dict[str, Any] = field(default_factory=dict)  # keys that must be in the last event's detail (or f(world))


def E(actor, action, patient=None, outcome="success"):  # noqa: N802 - a row constructor
    return {"actor": actor, "action": action, "patient": patient, "outcome": outcome}


CASES = [
    # --- sign-in and sessions
    Case("login ok", lambda w: sessions.authenticate(w["engine"], "nurse1", factories.PASSWORD, now=NOW),
         [E("nurse1", "login")]),
    Case("login wrong password", lambda w: _login_fail(w), [E("nurse1", "login", outcome="failure")],
         detail={"reason": "wrong password"}),
    Case("login unknown user",
         _fail(lambda w: sessions.authenticate(w["engine"], "nobody", "whatever-123", now=NOW)),
         [E("nobody", "login", outcome="failure")], detail={"reason": "unknown user"}),
    Case("lockout on the 5th failure", lambda w: _login_fail(w),
         [E("nurse1", "login.lockout", outcome="failure"), E("nurse1", "login", outcome="failure")],
         setup=lambda w: _login_fail(w, sessions.MAX_FAILURES - 1)),
    Case("login while locked",
         _fail(lambda w: sessions.authenticate(w["engine"], "nurse1", factories.PASSWORD, now=NOW)),
         [E("nurse1", "login", outcome="failure")], setup=lambda w: _login_fail(w, sessions.MAX_FAILURES),
         detail={"reason": "locked"}),
    Case("logout", lambda w: sessions.end_session(w["engine"], w["session"], reason="user", now=NOW),
         [E("nurse1", "logout")], setup=lambda w: {"session": _signed_in(w)}, detail={"reason": "user"}),
    Case("timeout", lambda w: sessions.end_session(
        w["engine"], w["session"], reason=sessions.check_session(w["engine"], w["session"], now=NOW), now=NOW),
        [E("nurse1", "logout")], setup=lambda w: {"session": _signed_in(w)}, detail={"reason": "timed_out"}),
    # --- reads
    Case("patient record view", _view_patient, [E("nurse1", "view.patient", "pid")]),
    Case("patient record view out of scope", _view_patient_denied,
         [E("nurse2", "denied.view_patient", "pid", "denied")]),
    # --- clinical writes, one row per kind
    Case("create patient", lambda w: service.create_patient(
        w["engine"], w["nurse"], mrn="A0002", family_name="Ito", given_name="Ren", now=NOW),
        [E("nurse1", "patient.create", "new")], detail={"mrn": "A0002"}),
    Case("update patient", lambda w: service.update_patient(
        w["engine"], w["nurse"], w["pid"], version=1, changes={"primary_site": "lung_nsclc"}, now=NOW),
        [E("nurse1", "patient.update", "pid")]),
    Case("performance status", lambda w: service.record_performance_status(
        w["engine"], w["nurse"], w["pid"], recorded_on=DAY, ecog=1, now=NOW),
        [E("nurse1", "record.performance_status", "pid")]),
    Case("neuro status", lambda w: service.record_neuro_status(
        w["engine"], w["nurse"], w["pid"], recorded_on=DAY, frankel_grade="E", now=NOW),
        [E("nurse1", "record.neuro_status", "pid")]),
    Case("imaging", lambda w: service.record_imaging(
        w["engine"], w["nurse"], w["pid"], performed_on=DAY, modality="mri", region="whole_spine",
        lesions=[LesionFinding(level="T12", lesion_type="lytic")], now=NOW),
        [E("nurse1", "record.imaging", "pid")]),
    Case("bone-modifying agent dose", lambda w: service.record_bma_dose(
        w["engine"], w["nurse"], w["pid"], given_on=DAY, agent="denosumab", dose_mg=120, now=NOW),
        [E("nurse1", "record.bma_dose", "pid")]),
    Case("lab", lambda w: service.record_lab(
        w["engine"], w["nurse"], w["pid"], collected_on=DAY, test="calcium", value=9.5, unit="mg/dL", now=NOW),
        [E("nurse1", "record.lab", "pid")]),
    Case("skeletal-related event", lambda w: service.record_sre(
        w["engine"], w["nurse"], w["pid"], occurred_on=DAY, event_type="pathological_fracture_vertebral", level="T12",
        now=NOW), [E("nurse1", "record.sre", "pid")]),
    Case("treatment", lambda w: service.record_treatment(
        w["engine"], w["nurse"], w["pid"], kind="radiotherapy", modality="cebrt", started_on=DAY, level="T12",
        dose_gy=8, fractions=1, now=NOW), [E("nurse1", "record.treatment", "pid")]),
    Case("locomo condition", lambda w: service.record_locomo_condition(
        w["engine"], w["nurse"], w["pid"], condition="osteoporosis", onset_on=DAY, now=NOW),
        [E("nurse1", "record.locomo_condition", "pid")]),
    Case("dental exam", lambda w: service.record_dental_exam(
        w["engine"], w["nurse"], w["pid"], examined_on=DAY, now=NOW), [E("nurse1", "record.dental_exam", "pid")]),
    Case("metastatic status", lambda w: service.record_metastatic_status(
        w["engine"], w["nurse"], w["pid"], recorded_on=DAY, visceral_status="none", now=NOW),
        [E("nurse1", "record.metastatic_status", "pid")]),
    Case("board decision", lambda w: service.record_board_decision(
        w["engine"], w["doctor"], w["pid"], decision="radiotherapy", decided_on=DAY, now=NOW),
        [E("doc1", "board.decide", "pid")]),
    # --- alerts
    *[
        Case(f"alert {verb}", act, [E("nurse1", f"alert.{verb}", "pid")],
             setup=lambda w, verb=verb: {"alert": _alert(w["engine"], w["pid"], f"test-{verb}")})
        for verb, act in [
            ("acknowledge", lambda w: service.acknowledge_alert(w["engine"], w["nurse"], w["alert"], version=1,
                                                                now=NOW)),
            ("snooze", lambda w: service.snooze_alert(w["engine"], w["nurse"], w["alert"], version=1,
                                                      until=NOW + timedelta(days=2), reason="waiting", now=NOW)),
            ("complete", lambda w: service.complete_alert(w["engine"], w["nurse"], w["alert"], version=1,
                                                          action_taken="MRI booked", now=NOW)),
            ("dismiss", lambda w: service.dismiss_alert(w["engine"], w["nurse"], w["alert"], version=1,
                                                        reason="duplicate", now=NOW)),
            ("escalate", lambda w: service.escalate_alert(w["engine"], w["nurse"], w["alert"], version=1,
                                                          to_user_id=w["doctor"].user_id, note="please", now=NOW)),
            ("assign", lambda w: service.assign_alert(w["engine"], w["nurse"], w["alert"], version=1,
                                                      to_user_id=w["other"].user_id, now=NOW)),
        ]
    ],
    # --- denied attempts
    Case("write outside scope", _fail(lambda w: service.record_lab(
        w["engine"], w["other"], w["pid"], collected_on=DAY, test="calcium", value=9.5, unit="mg/dL", now=NOW)),
        [E("nurse2", "record.lab", "pid", "denied")]),
    Case("write by a role without it", _fail(lambda w: service.record_dental_exam(
        w["engine"], w["lead"], w["pid"], examined_on=DAY, now=NOW)),
        [E("lead1", "record.dental_exam", "pid", "denied")]),
    Case("create patient by a role without it", _fail(lambda w: service.create_patient(
        w["engine"], w["lead"], mrn="A0003", family_name="X", given_name="Y", now=NOW)),
        [E("lead1", "patient.create", None, "denied")]),
    Case("alert action outside scope", _fail(lambda w: service.acknowledge_alert(
        w["engine"], w["other"], w["alert"], version=1, now=NOW)),
        [E("nurse2", "alert.acknowledge", "pid", "denied")],
        setup=lambda w: {"alert": _alert(w["engine"], w["pid"], "test-denied")}),
    Case("board decision by a nurse", _fail(lambda w: service.record_board_decision(
        w["engine"], w["nurse"], w["pid"], decision="x", decided_on=DAY, now=NOW)),
        [E("nurse1", "board.decide", "pid", "denied")]),
    # --- exports: a disclosure of identifiable data (ONC (d)(11)), a refused one, and the audit report's own
    Case("caseload export", lambda w: disclosure.export_table(
        w["engine"], w["nurse"], action="export.caseload", columns=["mrn"], rows=[["A0001"]], patient_ids=[w["pid"]],
        file_format="csv", now=NOW), [E("nurse1", "export.caseload", "pid")],
        detail={"patient_ids": lambda w: [w["pid"]], "format": "csv", "rows": 1}),
    Case("export by a role without it", _fail(lambda w: disclosure.export_table(
        w["engine"], w["lead"], action="export.caseload", columns=["mrn"], rows=[["A0001"]], patient_ids=[w["pid"]],
        file_format="csv", now=NOW)), [E("lead1", "export.caseload", None, "denied")]),
    Case("audit report export", lambda w: service.audit_view(
        w["engine"], Identity(w["user_ids"]["admin1"], "admin1", "Admin", Role.ADMIN), patient_id=None,
        what="export.audit", now=NOW, detail={"rows": 3}), [E("admin1", "export.audit")], detail={"rows": 3}),
    # --- user administration through the CLI (privilege changes)
    Case("users add (CLI)", lambda w: _cli_users("a-long-password-1\n", "add", "newnurse", "--role", "nurse"),
         [E("cli", "user.add")], detail={"role": "nurse"}),
    Case("users disable (CLI)", lambda w: _cli_users("", "disable", "nurse2"), [E("cli", "user.disable")]),
    Case("users set-role (CLI)", lambda w: _cli_users("", "set-role", "nurse2", "--role", "physician"),
         [E("cli", "user.set_role")], detail={"from": "nurse", "to": "physician"}),
]


def _events_after(engine, last_id: int) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT id, occurred_at, actor, action, patient_id, target, outcome, detail FROM audit_event "
            "WHERE id > :id ORDER BY id"), {"id": last_id}).all()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_auditable_action_leaves_its_event(world, case):
    engine = world["engine"]
    if case.setup:
        world.update(case.setup(world) or {})
    with engine.connect() as conn:
        before = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM audit_event")).scalar()
        patients_before = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM patient")).scalar()
    case.act(world)
    new = _events_after(engine, before)
    # Some writes re-score the patient at once; the re-score is the system's, not an audited user action.
    got = [e for e in new if not e.actor.startswith("system:")]
    with engine.connect() as conn:
        new_patient = conn.execute(text("SELECT MAX(id) FROM patient")).scalar()
    expected_patient = {"pid": world["pid"], None: None, "new": new_patient}
    assert [(e.actor if not e.actor.startswith("cli:") else "cli", e.action, e.patient_id, e.outcome) for e in got] \
        == [(x["actor"], x["action"], expected_patient[x["patient"]], x["outcome"]) for x in case.events]
    if case.events[0]["patient"] == "new":
        assert new_patient > patients_before
    for event in got:
        moment = event.occurred_at if not isinstance(event.occurred_at, str) else datetime.fromisoformat(
            event.occurred_at)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if event.actor.startswith("cli:"):
            assert event.actor == _os_actor()
            assert abs(moment - datetime.now(UTC)) < timedelta(hours=1)  # the CLI stamps the real time
        elif event.action != "view.patient" and not event.action.startswith("denied."):
            assert moment == NOW
    detail = json.loads(got[-1].detail)
    for key, value in case.detail.items():
        assert detail.get(key) == (value(world) if callable(value) else value), detail
    assert "factory-pass" not in " ".join(e.detail for e in new)  # never a password
    report = audit.verify(engine)
    assert report.ok, report.summary()


# ---------------------------------------------------------------------------
# Fail closed: an audit append that fails takes the change with it
# ---------------------------------------------------------------------------


def _break_audit_inserts(engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(
                "CREATE FUNCTION t_audit_fault() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'injected fault: audit store unavailable'; END $$"))
            conn.execute(text("CREATE TRIGGER t_audit_fault BEFORE INSERT ON audit_event "
                              "FOR EACH ROW EXECUTE FUNCTION t_audit_fault()"))
        else:
            conn.execute(text("CREATE TRIGGER t_audit_fault BEFORE INSERT ON audit_event "
                              "BEGIN SELECT RAISE(ABORT, 'injected fault: audit store unavailable'); END"))


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar()
                for t in ("audit_event", "patient", "lab_result", "recompute_queue", "app_user", "alert")} | {
            "failed_logins": conn.execute(text("SELECT SUM(failed_logins) FROM app_user")).scalar(),
            "alert_versions": conn.execute(text("SELECT COALESCE(SUM(version), 0) FROM alert")).scalar(),
        }


def test_a_failed_audit_append_rolls_the_change_back(world, caplog):
    engine = world["engine"]
    alert_id = _alert(engine, world["pid"], "test-fail-closed")
    _break_audit_inserts(engine)
    before = _counts(engine)
    attempts = [
        lambda: service.create_patient(engine, world["nurse"], mrn="Z0001", family_name="A", given_name="B", now=NOW),
        lambda: service.record_lab(engine, world["nurse"], world["pid"], collected_on=DAY, test="calcium", value=9.5,
                                   unit="mg/dL", now=NOW),
        lambda: service.acknowledge_alert(engine, world["nurse"], alert_id, version=1, now=NOW),
        lambda: users.add_user(engine, actor="admin1", username="zz", role="nurse", password="a-long-password-1",
                               now=NOW),
        lambda: users.set_role(engine, actor="admin1", username="nurse2", role="admin", now=NOW),
        lambda: sessions.authenticate(engine, "nurse1", factories.PASSWORD, now=NOW),  # no session without a record
        lambda: sessions.authenticate(engine, "nurse1", "wrong-password-1", now=NOW),
        lambda: service.audit_view(engine, world["nurse"], patient_id=world["pid"], what="view.patient", now=NOW),
    ]
    for attempt in attempts:
        with pytest.raises(DBAPIError, match="injected fault"):
            attempt()
    assert _counts(engine) == before
    # The operator is told in the server log, once per refused change, with no patient data in it.
    failures = [r for r in caplog.records if r.name == "surveillance.audit" and r.levelname == "ERROR"]
    assert len(failures) == len(attempts)
    assert "audit append failed for action patient.create" in failures[0].getMessage()
    assert not any("Z0001" in r.getMessage() or "9.5" in r.getMessage() for r in caplog.records)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT role FROM app_user WHERE username = 'nurse2'")).scalar() == "nurse"


def test_a_patient_view_fails_closed_when_it_cannot_be_audited(world):
    """The page calls ``record_view`` before drawing the record: its failure stops the page."""
    from dashboard.data.patient import record_view

    _break_audit_inserts(world["engine"])
    with pytest.raises(DBAPIError, match="injected fault"):
        record_view(world["nurse"], world["pid"])
