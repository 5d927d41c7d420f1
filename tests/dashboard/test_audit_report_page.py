"""The audit report (ONC 170.315(d)(3)): filter by period, actor, action, patient and outcome; sort by each column.

Events are written here through ``audit.record`` with known values; each expectation is computed
from those values or read back from ``audit_event``, never from the page's own query.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from db.engine import write_session
from surveillance import audit
from surveillance.calendar import clinical_day
from tests.dashboard.conftest import login, new_app, page
from tests.dashboard.support import EN

pytestmark = pytest.mark.db

SORTS = ("occurred_at", "actor", "action", "outcome", "patient_id", "target", "id")


def _seed(engine) -> dict[str, int]:
    """Five events: four within the last day, one 20 days ago (outside the default 7-day period)."""
    wall = datetime.now(timezone.utc)
    rows = {
        "a_view": ("auditor-a", "view.patient", 11, "success", None, wall - timedelta(hours=1)),
        "b_lab": ("auditor-b", "record.lab", 12, "success", "lab:1", wall - timedelta(hours=2)),
        "a_denied": ("auditor-a", "record.imaging", None, "denied", None, wall - timedelta(hours=3)),
        "c_view": ("auditor-c", "view.patient", 12, "failure", "x", wall - timedelta(hours=4)),
        "a_old": ("auditor-a", "view.board_case", 11, "success", None, wall - timedelta(days=20)),
    }
    ids = {}
    for name, (actor, action, patient, outcome, target, at) in rows.items():
        with write_session(engine) as session:
            ids[name] = audit.record(session, actor=actor, action=action, patient_id=patient, outcome=outcome,
                                     target=target, now=at).id
    return ids


def _open(app_db):
    at = login(new_app(), app_db["engine"], "admin1")
    page(at, "admin")
    assert not at.exception, at.exception
    return at


def _widget(items, label):
    found = [w for w in items if w.label == label]
    assert len(found) == 1, [w.label for w in items]
    return found[0]


def _shown_ids(at) -> list[int]:
    frames = [f.value for f in at.dataframe if EN.t("admin.col_event") in f.value.columns]
    if not frames:
        return []
    assert len(frames) == 1
    return [int(v) for v in frames[0][EN.t("admin.col_event")]]


def test_the_report_filters_by_period_actor_action_patient_and_outcome(app_db):
    ids = _seed(app_db["engine"])
    at = _open(app_db)
    _widget(at.text_input, EN.t("admin.actor")).set_value("auditor-a").run()
    assert set(_shown_ids(at)) == {ids["a_view"], ids["a_denied"]}  # a_old is outside the last 7 days
    today = clinical_day(datetime.now(timezone.utc))
    _widget(at.date_input, EN.t("admin.since")).set_value(today - timedelta(days=30)).run()
    assert set(_shown_ids(at)) == {ids["a_view"], ids["a_denied"], ids["a_old"]}
    _widget(at.text_input, EN.t("admin.action")).set_value("view.").run()
    assert set(_shown_ids(at)) == {ids["a_view"], ids["a_old"]}
    _widget(at.date_input, EN.t("admin.until")).set_value(today - timedelta(days=10)).run()
    assert _shown_ids(at) == [ids["a_old"]]
    _widget(at.date_input, EN.t("admin.until")).set_value(today).run()
    _widget(at.text_input, EN.t("admin.action")).set_value("").run()
    _widget(at.selectbox, EN.t("admin.col_outcome")).set_value("denied").run()
    assert _shown_ids(at) == [ids["a_denied"]]
    _widget(at.selectbox, EN.t("admin.col_outcome")).set_value(None).run()
    _widget(at.text_input, EN.t("admin.actor")).set_value("").run()
    _widget(at.number_input, EN.t("admin.patient_id")).set_value(12).run()
    assert set(_shown_ids(at)) == {ids["b_lab"], ids["c_view"]}
    assert not at.exception, at.exception


def test_the_report_sorts_by_each_column_both_ways(app_db):
    engine = app_db["engine"]
    _seed(engine)
    at = _open(app_db)
    today = clinical_day(datetime.now(timezone.utc))
    _widget(at.date_input, EN.t("admin.since")).set_value(today - timedelta(days=30)).run()
    with engine.connect() as conn:
        stored = {r.id: r for r in conn.execute(text(
            "SELECT id, occurred_at, actor, action, outcome, patient_id, target FROM audit_event"))}
    for column in SORTS:
        for descending in (False, True):
            _widget(at.selectbox, EN.t("admin.sort_by")).set_value(column).run()
            _widget(at.selectbox, EN.t("admin.order")).set_value(descending).run()
            assert not at.exception, at.exception
            shown = _shown_ids(at)
            assert set(shown) <= set(stored) and len(shown) >= 5
            values = [getattr(stored[i], column) for i in shown]
            present = [v for v in values if v is not None]
            assert values == present + [None] * (len(values) - len(present)), (column, "empty values last")
            keys = [(getattr(stored[i], column), i) for i in shown if getattr(stored[i], column) is not None]
            assert keys == sorted(keys, reverse=descending), (column, descending)
