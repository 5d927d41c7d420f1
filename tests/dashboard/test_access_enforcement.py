"""Access enforced below the pages, and identity that cannot be forged (security notes tests 24, 25, 27, 29).

* Data layer: each role's reads return exactly its scope (compared with an
  oracle query written here), and every PHI entry point refuses the roles the
  policy does not list — whatever a page does.
* Identity: the ``identity`` session key, query parameters and an altered
  session record are not trusted; refusals are audited.
"""

from __future__ import annotations

import ast
import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from dashboard.data import admin as admin_data
from dashboard.data import board as board_data
from dashboard.data import caseload as caseload_data
from dashboard.data import patient as patient_data
from dashboard.data import trends as trends_data
from surveillance import service
from surveillance.access import Action, Identity, PermissionDenied, Role
from tests.dashboard.conftest import login, new_app, page
from tests.dashboard.support import EN, PAGES_DIR, audit_count, identity
from tests.test_access_matrix import EXPECTED

pytestmark = pytest.mark.db

ROOT = Path(__file__).parents[2]
USERNAME = {Role.NURSE: "nurse1", Role.PHYSICIAN: "doc1", Role.LEAD: "lead1", Role.ADMIN: "admin1"}


def _now() -> datetime:
    return datetime.now(UTC)


def _ids(engine, sql: str, **params) -> set[int]:
    with engine.connect() as conn:
        return {int(r[0]) for r in conn.execute(text(sql), params)}


def _export(who: Identity, db):
    from surveillance.importing.export import export_patient_file

    return export_patient_file(db["engine"], who, db["patients"][0], now=_now())


def _imports():
    from dashboard.data import imports

    return imports


def _acknowledge(who: Identity, db):
    with db["engine"].connect() as conn:
        row = conn.execute(text("SELECT id, version FROM alert WHERE status = 'open' ORDER BY id LIMIT 1")).one()
    return service.acknowledge_alert(db["engine"], who, row.id, version=row.version, now=_now())


# ---------------------------------------------------------------------------
# Every action's PHI entry point refuses the roles the policy does not list
# ---------------------------------------------------------------------------

#: Action → a call of its data-layer or service entry point (``None``: no entry point below the page, because
#: the page computes nothing from stored data — the calculator and reference are pure).
ENTRY = {
    Action.VIEW_CASELOAD: lambda who, db: caseload_data.caseload(who),
    Action.VIEW_PATIENT: lambda who, db: patient_data.patient_record(who, db["patients"][0]),
    Action.RECORD_FACT: lambda who, db: service.record_performance_status(
        db["engine"], who, db["patients"][0], recorded_on=date.today(), ecog=1, now=_now()),
    Action.WORK_ALERT: lambda who, db: _acknowledge(who, db),
    Action.VIEW_ALERTS: lambda who, db: caseload_data.alert_list(who),
    Action.VIEW_BOARD: lambda who, db: board_data.board_queue(who),
    Action.DECIDE_BOARD: lambda who, db: service.record_board_decision(
        db["engine"], who, db["patients"][0], decision="x", decided_on=date.today(), now=_now()),
    Action.VIEW_TRENDS: lambda who, db: trends_data.imaging(who, site=None, department=None, today=date.today()),
    Action.USE_CALCULATOR: None,
    Action.VIEW_REFERENCE: None,
    Action.VIEW_HEALTH: lambda who, db: admin_data.runs(who),
    Action.MANAGE_USERS: lambda who, db: admin_data.users(who),
    Action.VIEW_AUDIT: lambda who, db: admin_data.audit_events(
        who, since=datetime(2000, 1, 1, tzinfo=UTC), until=_now(), actor=None, action=None, patient_id=None),
    Action.EXPORT: lambda who, db: _export(who, db),
    Action.IMPORT: lambda who, db: _imports().recent_batches(who),
}
#: Refusals of writes are audited by the service under these action names.
AUDITED_WRITE = {Action.RECORD_FACT: "record.performance_status", Action.WORK_ALERT: "alert.acknowledge",
                 Action.DECIDE_BOARD: "board.decide"}


def test_every_action_is_mapped_to_its_entry_point():
    assert set(ENTRY) == set(Action)


def test_every_entry_point_refuses_every_role_the_policy_does_not_list(app_db):
    engine = app_db["engine"]
    checked = 0
    for action, call in ENTRY.items():
        if call is None:
            continue
        for role in Role:
            if role in EXPECTED[action]:
                continue
            who = identity(engine, USERNAME[role])
            before = audit_count(engine, actor=who.username, outcome="denied")
            with pytest.raises(PermissionDenied):
                call(who, app_db)
            checked += 1
            if action in AUDITED_WRITE:
                assert audit_count(engine, actor=who.username, action=AUDITED_WRITE[action],
                                   outcome="denied") >= 1, (action, role)
                assert audit_count(engine, actor=who.username, outcome="denied") == before + 1, (action, role)
    assert checked == sum(len(Role) - len(EXPECTED[a]) for a, call in ENTRY.items() if call is not None)


# ---------------------------------------------------------------------------
# Each role's scope, at the data layer
# ---------------------------------------------------------------------------


def test_a_nurse_reads_exactly_her_assigned_patients(app_db):
    engine, nurse = app_db["engine"], identity(app_db["engine"], "nurse1")
    own = _ids(engine, "SELECT id FROM patient WHERE assigned_nurse_id = :n", n=nurse.user_id)
    with_alerts = _ids(engine, "SELECT DISTINCT a.patient_id FROM alert a JOIN patient p ON p.id = a.patient_id "
                               "WHERE p.assigned_nurse_id = :n AND a.status IN ('open', 'acknowledged', 'snoozed')",
                       n=nurse.user_id)
    assert with_alerts
    caseload = set(caseload_data.caseload(nurse, limit=1000)["patient_id"])
    assert caseload and caseload <= own
    assert set(caseload_data.alert_list(nurse)["patient_id"]) == with_alerts
    other = min(_ids(engine, "SELECT id FROM patient WHERE assigned_nurse_id <> :n OR assigned_nurse_id IS NULL",
                     n=nurse.user_id))
    assert patient_data.patient_record(nurse, other) is None
    assert audit_count(engine, actor="nurse1", action="denied.view_patient", patient_id=other) == 1
    assert patient_data.patient_record(nurse, min(own))["patient"]["id"] == min(own)


def test_a_physician_reads_exactly_her_department(app_db):
    engine, doc = app_db["engine"], identity(app_db["engine"], "doc1")
    department = _ids(engine, "SELECT DISTINCT a.patient_id FROM alert a JOIN patient p ON p.id = a.patient_id "
                              "WHERE p.department = :d AND a.status IN ('open', 'acknowledged', 'snoozed')",
                      d=doc.department)
    shown = set(caseload_data.alert_list(doc)["patient_id"])
    assert shown == department
    nurses = _ids(engine, "SELECT DISTINCT assigned_nurse_id FROM patient WHERE id IN ("
                  + ",".join(map(str, shown)) + ") AND assigned_nurse_id IS NOT NULL")
    assert len(nurses) == 2  # across nurses, not one caseload
    elsewhere = min(_ids(engine, "SELECT id FROM patient WHERE department <> :d", d=doc.department))
    assert patient_data.patient_record(doc, elsewhere) is None
    assert audit_count(engine, actor="doc1", action="denied.view_patient", patient_id=elsewhere) == 1


def test_a_lead_reads_suppressed_aggregates_without_identifiers(app_db):
    engine, lead = app_db["engine"], identity(app_db["engine"], "lead1")
    forbidden = {str(v) for v in _ids(engine, "SELECT id FROM patient")}
    with engine.connect() as conn:
        names = {v for row in conn.execute(text("SELECT mrn, family_name, given_name FROM patient")) for v in row}
    for table in (trends_data.imaging(lead, site=None, department=None, today=date.today()),
                  trends_data.alert_burden(lead, site=None, department=None)):
        counts = table.counts
        small = (counts >= 1) & (counts <= 4)
        assert small.to_numpy().any(), "the fixture must produce small cells for this test to mean anything"
        assert not (small & ~table.suppression.hidden).to_numpy().any(), "a count of 1–4 is not hidden"
        labels = {str(v) for v in [*counts.index, *counts.columns]}
        assert not labels & names
        assert not {c.lower() for c in counts.columns} & {"mrn", "family_name", "given_name", "patient_id"}
    assert forbidden  # and no single-patient read is open to her:
    with pytest.raises(PermissionDenied):
        patient_data.search_patients(lead, "F")


def test_an_admin_manages_users_and_audit_but_makes_no_clinical_edit(app_db):
    engine, admin = app_db["engine"], identity(app_db["engine"], "admin1")
    assert "nurse1" in set(admin_data.users(admin)["username"])
    assert admin_data.verify_audit(admin).ok
    with pytest.raises(PermissionDenied):
        service.update_patient(engine, admin, app_db["patients"][0], version=1, changes={"status": "on_hold"},
                               now=_now())
    with pytest.raises(PermissionDenied):
        service.create_patient(engine, admin, mrn="ADM-1", family_name="A", given_name="B", now=_now())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM patient WHERE mrn = 'ADM-1'")).scalar() == 0
    assert audit_count(engine, actor="admin1", action="patient.update", outcome="denied") == 1


# ---------------------------------------------------------------------------
# Identity is not taken from the session state or the URL
# ---------------------------------------------------------------------------


def _offered(at: AppTest, name: str) -> bool:
    try:
        at.switch_page(f"dashboard/app_pages/{name}.py")
    except ValueError:
        return False
    return True


def test_an_injected_identity_without_a_session_is_not_signed_in(app_db):
    admin = identity(app_db["engine"], "admin1")
    at = new_app()
    at.session_state["identity"] = admin
    at.run()
    assert not at.exception, at.exception
    assert at.text_input(key="login_user") is not None  # the sign-in page
    assert not _offered(at, "admin")
    direct = AppTest.from_file(str(PAGES_DIR / "admin.py"), default_timeout=60)
    direct.session_state["identity"] = admin
    direct.run()
    assert [e.value for e in direct.error] == [EN.t("app.denied")]
    assert not direct.dataframe


def test_an_injected_admin_identity_does_not_lift_a_nurse_session(app_db):
    engine = app_db["engine"]
    at = login(new_app(), engine, "nurse1")
    at.session_state["identity"] = identity(engine, "admin1")
    at.query_params["role"] = "admin"
    at.query_params["user_id"] = str(app_db["users"]["admin1"])
    at.run()
    assert not at.exception, at.exception
    assert not _offered(at, "admin") and not _offered(at, "health")
    assert _offered(at, "caseload")
    direct = login(AppTest.from_file(str(PAGES_DIR / "admin.py"), default_timeout=60), engine, "nurse1")
    direct.session_state["identity"] = identity(engine, "admin1")
    direct.run()
    assert [e.value for e in direct.error] == [EN.t("app.denied")]
    assert audit_count(engine, actor="nurse1", action="denied.page.manage_users") == 1
    assert audit_count(engine, actor="admin1") == 0  # nothing was done as the admin


@pytest.mark.parametrize("forgery", ["role", "user"])
def test_an_altered_session_record_is_refused_and_audited(app_db, forgery):
    engine = app_db["engine"]
    at = login(new_app(), engine, "nurse1")
    record = at.session_state["auth"]
    if forgery == "role":
        forged = dataclasses.replace(record, role="admin", department=None)
    else:
        nurse2 = identity(engine, "nurse2")
        forged = dataclasses.replace(record, user_id=nurse2.user_id, username="nurse2")
    at.session_state["auth"] = forged
    at.run()
    assert not at.exception, at.exception
    assert at.text_input(key="login_user") is not None  # sent back to sign in
    assert not _offered(at, "caseload") and not _offered(at, "admin")
    assert audit_count(engine, action="session.forged", outcome="denied", actor=forged.username) == 1

    direct = AppTest.from_file(str(PAGES_DIR / ("admin.py" if forgery == "role" else "caseload.py")),
                               default_timeout=60)
    direct.session_state["auth"] = forged
    direct.run()
    assert [e.value for e in direct.error] == [EN.t("app.denied")]
    assert not direct.dataframe
    assert audit_count(engine, action="session.forged", outcome="denied", actor=forged.username) == 2


def test_a_patient_id_in_the_url_or_state_outside_the_scope_is_refused_and_audited(app_db):
    engine = app_db["engine"]
    nurse = identity(engine, "nurse1")
    other = min(_ids(engine, "SELECT id FROM patient WHERE assigned_nurse_id <> :n", n=nurse.user_id))
    with engine.connect() as conn:
        mrn = conn.execute(text("SELECT mrn FROM patient WHERE id = :p"), {"p": other}).scalar()
    at = login(new_app(), engine, "nurse1")
    at.query_params["patient"] = str(other)
    at.query_params["patient_id"] = str(other)
    at.session_state["patient_id"] = other
    page(at, "patient")
    assert not at.exception, at.exception
    assert mrn not in "\n".join(str(e.proto) for e in at.main)
    assert audit_count(engine, actor="nurse1", action="denied.view_patient", patient_id=other) == 1
    assert audit_count(engine, actor="nurse1", action="view.patient", patient_id=other) == 0


def test_only_the_router_writes_the_session_record_and_no_widget_uses_its_key():
    """Static check (security notes test 29): the auth key is written in dashboard/app.py only; no widget key."""
    writers, widget_keys = [], []
    for path in sorted((ROOT / "dashboard").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if (isinstance(target, ast.Subscript) and "session_state" in ast.unparse(target.value)
                            and ast.unparse(target.slice) in ("AUTH_KEY", "'auth'", "'identity'")):
                        writers.append(path.relative_to(ROOT).as_posix())
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "key" and ast.unparse(kw.value) in ("AUTH_KEY", "'auth'", "'identity'"):
                        widget_keys.append(path.relative_to(ROOT).as_posix())
    assert writers == ["dashboard/app.py"]
    assert widget_keys == []


def test_a_record_altered_after_a_role_change_is_still_tied_to_the_database(app_db):
    """Even a genuine, sealed record acts with the database's current role (the seal alone is not trusted)."""
    from surveillance.sessions import session_identity
    from surveillance.users import set_role

    engine = app_db["engine"]
    at = login(new_app(), engine, "doc1")
    record = at.session_state["auth"]
    assert session_identity(engine, record) == Identity(record.user_id, "doc1", "Doc1", Role.PHYSICIAN, "oncology")
    set_role(engine, actor="admin1", username="doc1", role="lead", now=_now())
    assert session_identity(engine, record) is None
