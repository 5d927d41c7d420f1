"""The Caseload page (nurse): her patients with open alerts by priority and why; filters; alert actions; CSV export.

Every expectation is a query of the database written here (patients of the
nurse, alerts with status ``open``), or the requirement itself (priority is the
sum of the severity weights of the open alerts; an acknowledged or snoozed
alert leaves the caseload; exported cells never start a formula).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from surveillance.exports import DANGEROUS_PREFIXES
from surveillance.rules import load_rules
from tests.dashboard.conftest import login, new_app, page
from tests.dashboard.support import EN, audit_count

pytestmark = pytest.mark.db

MRN, WHY, PRIORITY = EN.t("caseload.col_mrn"), EN.t("caseload.col_alert_reasons"), EN.t("caseload.col_priority")
NAME = EN.t("caseload.col_name")


def _open_alerts(engine, nurse_id: int, *, tier: str | None = None) -> dict[str, list[tuple]]:
    """MRN -> (alert id, rule, severity, title) of every open alert of the nurse's active patients."""
    sql = (
        "SELECT p.mrn, a.id, a.rule_id, a.severity, a.title FROM patient p JOIN alert a ON a.patient_id = p.id "
        "WHERE p.assigned_nurse_id = :n AND p.status = 'active' AND a.status = 'open'"
    )
    if tier:
        sql += " AND EXISTS (SELECT 1 FROM risk_snapshot s WHERE s.patient_id = p.id AND s.tier = :tier)"
    by_mrn = defaultdict(list)
    with engine.connect() as conn:
        for row in conn.execute(text(sql), {"n": nurse_id, "tier": tier}):
            by_mrn[row.mrn].append((row.id, row.rule_id, row.severity, row.title))
    return dict(by_mrn)


def _table(at: AppTest):
    frames = [f.value for f in at.dataframe if MRN in f.value.columns and WHY in f.value.columns]
    assert len(frames) == 1, "one caseload table"
    return frames[0]


def _open(app_db, patient_id: int | None = None) -> AppTest:
    at = login(new_app(), app_db["engine"], "nurse1")
    if patient_id is not None:
        at.session_state["caseload_patient"] = patient_id
    page(at, "caseload")
    assert not at.exception, at.exception
    return at


def _patient(engine, nurse_id: int, open_alerts: int) -> tuple[int, str]:
    """An active patient of the nurse with exactly ``open_alerts`` open alerts of distinct titles."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT p.id, p.mrn FROM patient p JOIN alert a ON a.patient_id = p.id "
                "WHERE p.assigned_nurse_id = :n AND p.status = 'active' AND a.status = 'open' "
                "GROUP BY p.id, p.mrn HAVING COUNT(*) = :k AND COUNT(DISTINCT a.title) = :k ORDER BY p.id"
            ),
            {"n": nurse_id, "k": open_alerts},
        ).first()
    assert row is not None, f"the fixture has a patient of the nurse with {open_alerts} open alerts"
    return row.id, row.mrn


def _alert(engine, alert_id: int):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT status, acknowledged_by, snoozed_until, snooze_reason FROM alert WHERE id = :id"),
            {"id": alert_id},
        ).one()


def test_only_the_nurses_patients_by_priority_each_with_why(app_db):
    engine, nurse = app_db["engine"], app_db["users"]["nurse1"]
    expected = _open_alerts(engine, nurse)
    assert 10 < len(expected) < 200
    at = _open(app_db)
    table = _table(at)
    assert sorted(table[MRN]) == sorted(expected), "exactly her active patients with an open alert, once each"
    weights = load_rules().severity_weights
    priorities = [int(p) for p in table[PRIORITY]]
    for mrn, priority, why in zip(table[MRN], priorities, table[WHY], strict=True):
        alerts = expected[mrn]
        assert priority == sum(weights[severity] for _, _, severity, _ in alerts), mrn
        assert set(why.split("; ")) == {title for *_, title in alerts}, mrn
    assert priorities == sorted(priorities, reverse=True), "highest priority first"
    assert len(set(priorities)) > 3, "the fixture's priorities differ, so the order is tested"
    open_total = sum(len(v) for v in expected.values())
    metric = [m for m in at.metric if m.label == EN.t("caseload.open_alerts")]
    assert [m.value for m in metric] == [EN.number(open_total)]


def test_tier_and_alert_type_filters_narrow_to_the_matching_patients(app_db):
    engine, nurse = app_db["engine"], app_db["users"]["nurse1"]
    everyone = _open_alerts(engine, nurse)
    high = _open_alerts(engine, nurse, tier="high")
    patients_by_rule = defaultdict(set)
    for mrn, alerts in everyone.items():
        for _, rule_id, _, _ in alerts:
            patients_by_rule[rule_id].add(mrn)
    rule_id = max(
        (r for r, mrns in patients_by_rule.items() if len(mrns) < len(everyone)), key=lambda r: len(patients_by_rule[r])
    )
    assert 0 < len(high) < len(everyone) and 0 < len(patients_by_rule[rule_id]) < len(everyone)

    at = _open(app_db)
    at.selectbox(key="f_tier").set_value("high").run()
    assert not at.exception, at.exception
    assert sorted(_table(at)[MRN]) == sorted(high)
    at.selectbox(key="f_tier").set_value(None)
    at.selectbox(key="f_rule").set_value(rule_id).run()
    assert not at.exception, at.exception
    assert sorted(_table(at)[MRN]) == sorted(patients_by_rule[rule_id])


def test_acknowledging_the_only_open_alert_takes_the_patient_off_the_caseload(app_db):
    engine, nurse = app_db["engine"], app_db["users"]["nurse1"]
    patient_id, mrn = _patient(engine, nurse, 1)
    ((alert_id, rule_id, _, _),) = _open_alerts(engine, nurse)[mrn]
    at = _open(app_db, patient_id)
    assert mrn in set(_table(at)[MRN])
    assert [h.value for h in at.subheader if mrn in h.value], "the chosen patient's alerts are shown under the table"
    at.button(key=f"caseload-{alert_id}-ack").click().run()
    assert not at.exception, at.exception
    assert not at.error
    alert = _alert(engine, alert_id)
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", "nurse1")
    assert (
        audit_count(
            engine,
            actor="nurse1",
            action="alert.acknowledge",
            patient_id=patient_id,
            target=f"alert:{alert_id}:{rule_id}",
        )
        == 1
    )
    table = _table(at)
    assert mrn not in set(table[MRN])
    assert sorted(table[MRN]) == sorted(_open_alerts(engine, nurse))


def test_snoozing_needs_a_reason_and_stores_reason_and_expiry(app_db):
    engine, nurse = app_db["engine"], app_db["users"]["nurse1"]
    patient_id, mrn = _patient(engine, nurse, 2)
    alerts = _open_alerts(engine, nurse)[mrn]
    alert_id, rule_id, _, title = alerts[1]
    other_title = alerts[0][3]
    at = _open(app_db, patient_id)
    at.selectbox(key="caseload-act-on").set_value(alert_id).run()
    form = f"caseload-{alert_id}-snooze-form"
    submit = [b for b in at.button if b.proto.form_id == form]
    assert len(submit) == 1

    submit[0].click().run()  # no reason: refused, nothing changes
    assert not at.exception, at.exception
    assert at.error, "a snooze without a reason is refused with a message"
    assert _alert(engine, alert_id).status == "open"
    assert audit_count(engine, action="alert.snooze") == 0

    until_input = [d for d in at.date_input if d.label == EN.t("alerts.snooze_until")]
    until = until_input[0].value + timedelta(days=3)
    until_input[0].set_value(until)
    at.text_input(key=f"caseload-{alert_id}-snooze-reason").input("MRI booked for next week")
    [b for b in at.button if b.proto.form_id == form][0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    alert = _alert(engine, alert_id)
    assert (alert.status, alert.snooze_reason) == ("snoozed", "MRI booked for next week")
    stored = (
        alert.snoozed_until
        if isinstance(alert.snoozed_until, datetime)
        else datetime.fromisoformat(str(alert.snoozed_until))
    )
    assert stored.date() == until
    assert (
        audit_count(
            engine, actor="nurse1", action="alert.snooze", patient_id=patient_id, target=f"alert:{alert_id}:{rule_id}"
        )
        == 1
    )
    row = _table(at).set_index(MRN).loc[mrn]
    assert row[WHY] == other_title, "the row stays for the other open alert and no longer gives the snoozed one"


def test_csv_export_is_offered_and_no_cell_starts_a_formula(app_db, monkeypatch):
    from tests.dashboard.test_exports import _button, _click, _csv_rows, _keep_managers

    engine, nurse = app_db["engine"], app_db["users"]["nurse1"]
    patient_id, mrn = _patient(engine, nurse, 1)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE patient SET family_name = :f, given_name = :g WHERE id = :id"),
            {"f": '=HYPERLINK("http://evil.example","x")', "g": "+1", "id": patient_id},
        )
    managers = _keep_managers(monkeypatch)
    at = _open(app_db)
    table = _table(at)
    button = _button(at, "caseload_csv")
    assert button.proto.label == EN.t("app.export_csv")
    rows = _csv_rows(_click(managers, button))
    assert rows[0] == list(table.columns)
    assert sorted(r[0] for r in rows[1:]) == sorted(table[MRN])
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell.startswith(DANGEROUS_PREFIXES)]
    exported = {r[0]: r for r in rows[1:]}
    assert exported[mrn][list(table.columns).index(NAME)] == '\'=HYPERLINK("http://evil.example","x") +1'


def test_assigning_an_alert_to_a_colleague_stores_the_assignee_and_is_audited(app_db):
    engine, nurse = app_db["engine"], app_db["users"]["nurse1"]
    patient_id, mrn = _patient(engine, nurse, 2)
    alert_id, rule_id, _, _ = _open_alerts(engine, nurse)[mrn][0]
    with engine.connect() as conn:
        department = conn.execute(text("SELECT department FROM app_user WHERE id = :n"), {"n": nurse}).scalar()
        colleagues = dict(
            conn.execute(
                text(
                    "SELECT id, display_name FROM app_user WHERE role IN ('nurse', 'physician') AND active = :t "
                    "AND department = :d"
                ),
                {"t": True, "d": department},
            ).all()
        )
    at = _open(app_db, patient_id)
    at.selectbox(key="caseload-act-on").set_value(alert_id).run()
    form = f"caseload-{alert_id}-assign-form"
    choice = [s for s in at.selectbox if s.label == EN.t("alerts.assign_to")]
    assert len(choice) == 1 and set(choice[0].options) == set(colleagues.values())
    other = next(uid for uid in colleagues if uid != nurse)
    choice[0].set_value(other)
    [b for b in at.button if b.proto.form_id == form][0].click().run()
    assert not at.exception, at.exception
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT assigned_to_id, status FROM alert WHERE id = :id"), {"id": alert_id}
        ).one()
    assert (stored.assigned_to_id, stored.status) == (other, "open")  # assigned, still open
    assert audit_count(engine, actor="nurse1", action="alert.assign", patient_id=patient_id) == 1
