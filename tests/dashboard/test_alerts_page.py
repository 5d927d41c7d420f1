"""The Alerts page: every active alert in the user's scope, most severe first and oldest first, nothing outside it.

The alerts' ages are spread over weeks before the page opens, so the order by
age is tested too; expectations are queries written here.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from surveillance import service
from tests.dashboard.conftest import login, new_app, page
from tests.dashboard.support import EN, identity

pytestmark = pytest.mark.db

MRN, TITLE = EN.t("alerts.col_mrn"), EN.t("alerts.col_title")
SEVERITY, STATUS, AGE = EN.t("alerts.col_severity"), EN.t("alerts.col_status"), EN.t("alerts.age_days")
RANK = {EN.t(f"severity.{s}"): i for i, s in enumerate(("critical", "high", "routine", "info"))}


def _spread_ages(engine) -> None:
    """Date the open alerts 0–40 days back (spread by id), so the order by age means something."""
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        ids = [r.id for r in conn.execute(text("SELECT id FROM alert WHERE status = 'open' ORDER BY id"))]
        conn.execute(
            text("UPDATE alert SET opened_at = :t WHERE id = :id"),
            [{"t": now - timedelta(days=(i * 7) % 41, hours=1), "id": i} for i in ids],
        )


def _work_two_alerts(app_db) -> None:
    """Acknowledge one and snooze another of nurse1's alerts through the service: both stay active."""
    engine = app_db["engine"]
    nurse = identity(engine, "nurse1")
    with engine.connect() as conn:
        first, second = conn.execute(
            text(
                "SELECT a.id, a.version FROM alert a JOIN patient p ON p.id = a.patient_id "
                "WHERE p.assigned_nurse_id = :n AND a.status = 'open' ORDER BY a.id LIMIT 2"
            ),
            {"n": nurse.user_id},
        ).all()
    now = datetime.now(timezone.utc)
    service.acknowledge_alert(engine, nurse, first.id, version=first.version, now=now)
    service.snooze_alert(
        engine,
        nurse,
        second.id,
        version=second.version,
        until=now + timedelta(days=5),
        reason="waiting for the MRI",
        now=now,
    )


def _expected(engine, scope: str, params: dict, severity: str | None = None) -> Counter:
    """(MRN, title, severity label, status label) of every active alert in the scope."""
    sql = (
        "SELECT p.mrn, a.title, a.severity, a.status FROM alert a JOIN patient p ON p.id = a.patient_id "
        f"WHERE a.status IN ('open', 'acknowledged', 'snoozed') AND {scope}"
    )
    if severity:
        sql += " AND a.severity = :severity"
    with engine.connect() as conn:
        rows = conn.execute(text(sql), dict(params, severity=severity)).all()
    return Counter((r.mrn, r.title, EN.t(f"severity.{r.severity}"), EN.t(f"alerts.status_{r.status}")) for r in rows)


def _shown(at: AppTest) -> Counter:
    table = _table(at)
    return Counter(zip(table[MRN], table[TITLE], table[SEVERITY], table[STATUS], strict=True))


def _table(at: AppTest):
    frames = [f.value for f in at.dataframe if MRN in f.value.columns and AGE in f.value.columns]
    assert len(frames) == 1
    return frames[0]


def _open(app_db, username: str) -> AppTest:
    at = login(new_app(), app_db["engine"], username)
    page(at, "alerts")
    assert not at.exception, at.exception
    return at


def test_a_nurse_sees_every_active_alert_of_her_patients_by_severity_then_age(app_db):
    engine = app_db["engine"]
    _spread_ages(engine)
    _work_two_alerts(app_db)
    expected = _expected(engine, "p.assigned_nurse_id = :n", {"n": app_db["users"]["nurse1"]})
    assert {status for *_, status in expected} == {
        EN.t(f"alerts.status_{s}") for s in ("open", "acknowledged", "snoozed")
    }
    at = _open(app_db, "nurse1")
    assert _shown(at) == expected
    table = _table(at)
    ranks = [RANK[s] for s in table[SEVERITY]]
    assert ranks == sorted(ranks), "critical first, then high, routine, info"
    for rank in set(ranks):
        ages = [age for r, age in zip(ranks, table[AGE], strict=True) if r == rank]
        assert ages == sorted(ages, reverse=True), "within a severity, the oldest first"
    assert max(table[AGE]) > 30 > min(table[AGE]), "ages of days to weeks are shown"
    assert at.get("plotly_chart"), "the age-by-severity chart"
    assert at.get("download_button")


def test_a_physician_sees_her_departments_alerts_and_the_severity_filter_narrows_them(app_db):
    engine = app_db["engine"]
    department = "p.department = :d"
    expected = _expected(engine, department, {"d": "oncology"})
    with engine.connect() as conn:
        elsewhere = {r.mrn for r in conn.execute(text("SELECT mrn FROM patient WHERE department != 'oncology'"))}
    assert elsewhere
    at = _open(app_db, "doc1")
    assert _shown(at) == expected
    assert not set(_table(at)[MRN]) & elsewhere
    at.selectbox(key="a_sev").set_value("critical").run()
    assert not at.exception, at.exception
    critical = _expected(engine, department, {"d": "oncology"}, severity="critical")
    assert 0 < sum(critical.values()) < sum(expected.values())
    assert _shown(at) == critical
