"""The patient page's emergency access: offered after a refusal, validated, audited, flagged; filterable by admins."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from tests.dashboard.conftest import login, new_app, page
from tests.dashboard.support import EN, everything

pytestmark = pytest.mark.db

REASON = "Patient deteriorating on my ward; her named nurse is off shift."


def _other_nurses_patient(app_db) -> tuple[int, str]:
    with app_db["engine"].connect() as conn:
        row = conn.execute(text("SELECT id, mrn FROM patient WHERE assigned_nurse_id = :n ORDER BY id LIMIT 1"),
                           {"n": app_db["users"]["nurse2"]}).one()
    return row.id, row.mrn


def _events(app_db, actor: str) -> list:
    with app_db["engine"].connect() as conn:
        return conn.execute(text("SELECT action, outcome, patient_id, detail FROM audit_event WHERE actor = :a "
                                 "ORDER BY id"), {"a": actor}).all()


def _open_by_mrn(app_db, username: str, mrn: str):
    at = login(new_app(), app_db["engine"], username)
    at.query_params["mrn"] = mrn
    return page(at, "patient")


def test_a_refused_nurse_is_offered_emergency_access_and_the_record_opens_with_a_banner(app_db):
    pid, mrn = _other_nurses_patient(app_db)
    at = _open_by_mrn(app_db, "nurse1", mrn)
    assert not at.exception, at.exception
    assert any("No patient record is available" in e.value for e in at.error)
    assert EN.t("break_glass.title") in [s.value for s in at.subheader]
    assert at.text_input(key="break_glass_mrn").value == mrn

    # Too short a reason: refused with the rule, nothing opened.
    at.text_area(key="break_glass_reason").set_value("urgent")
    _submit(at)
    assert not at.exception, at.exception
    assert any("at least 20 characters" in e.value for e in at.error)
    assert not at.dataframe
    assert [e.action for e in _events(app_db, "nurse1")].count("break_glass.grant") == 0

    at.text_area(key="break_glass_reason").set_value(REASON)
    _submit(at)
    assert not at.exception, at.exception
    banners = [w.value for w in at.warning if "Emergency access until" in w.value]
    assert len(banners) == 1 and REASON in banners[0]
    assert mrn in everything(at)

    events = _events(app_db, "nurse1")
    grant = [e for e in events if e.action == "break_glass.grant"]
    assert len(grant) == 1 and grant[0].outcome == "success" and grant[0].patient_id == pid
    assert json.loads(grant[0].detail)["reason"] == REASON
    views = [e for e in events if e.action == "view.patient" and e.patient_id == pid]
    assert len(views) == 1 and "break_glass" in json.loads(views[0].detail)


def _submit(at):
    buttons = [b for b in at.button if b.label == EN.t("break_glass.submit")]
    assert len(buttons) == 1
    buttons[0].click().run()


@pytest.mark.parametrize("username", ["lead1", "admin1"])
def test_roles_without_clinical_access_are_not_offered_emergency_access(app_db, username):
    # Their navigation has no patient page at all; run it directly with their real session.
    from streamlit.testing.v1 import AppTest

    from tests.dashboard.support import PAGES_DIR

    at = login(AppTest.from_file(str(PAGES_DIR / "patient.py"), default_timeout=60), app_db["engine"], username)
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [EN.t("app.denied")]
    assert EN.t("break_glass.title") not in [s.value for s in at.subheader]


def test_the_admin_audit_page_filters_emergency_access_events(app_db):
    pid, mrn = _other_nurses_patient(app_db)
    at = _open_by_mrn(app_db, "nurse1", mrn)
    at.text_area(key="break_glass_reason").set_value(REASON)
    _submit(at)
    assert not at.exception

    admin = page(login(new_app(), app_db["engine"], "admin1"), "admin")
    assert not admin.exception, admin.exception
    admin.checkbox(key="audit_break_glass_only").check().run()
    assert not admin.exception, admin.exception
    shown = next(f.value for f in admin.dataframe if EN.t("admin.col_action") in f.value.columns)
    assert sorted(shown[EN.t("admin.col_action")]) == ["break_glass.grant", "view.patient"]
    assert set(shown[EN.t("admin.actor")]) == {"nurse1"}
