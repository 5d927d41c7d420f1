"""The patient page: scores equal to the engine's, forms that write through the service, scope and audit.

The expectations are written from the facts each test records, independently
of the page: SINS is added up by hand from the published table, and the other
instruments come from ``score_case`` run on a case object written out here
from those same facts (not through ``case_from_record`` or the page's reads).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from surveillance import service
from surveillance.access import Identity, Role
from surveillance.scoring import score_case
from tests.dashboard.conftest import login, new_app, page

SYSTEMS = {
    "tomita": "Tomita",
    "revised_tokuhashi": "Revised Tokuhashi",
    "bauer": "Bauer",
    "modified_bauer": "Modified Bauer",
    "nesms": "NESMS",
    "new_katagiri": "New Katagiri",
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _identity(app_db, username: str) -> Identity:
    with app_db["engine"].connect() as conn:
        row = conn.execute(text("SELECT id, username, display_name, role, department FROM app_user "
                                "WHERE username = :u"), {"u": username}).one()
    return Identity(row.id, row.username, row.display_name, Role(row.role), row.department)


def _english_totals(totals: list[int]) -> str:
    if not totals:
        return "unknown (cannot be computed)"
    return str(totals[0]) if len(totals) == 1 else ", ".join(map(str, totals[:-1])) + f" or {totals[-1]}"


@pytest.fixture
def known(app_db):
    """A breast-cancer patient of nurse1 with one L3 lesion whose collapse is unknown, and dated facts.

    Chosen so that no cancer-board reason exists before the tests add one (ECOG steady at 2, the SRE older
    than 90 days, SINS below 7): see the report on superseded alert episodes in ``pipeline.apply_batch``.
    """
    engine, nurse = app_db["engine"], _identity(app_db, "nurse1")
    now = _now()
    today = now.date()
    pid = service.create_patient(engine, nurse, mrn="KNOWN-001", family_name="Known", given_name="Hanako",
                                 birth_date=date(1960, 5, 1), sex="F", department="oncology", primary_site="breast",
                                 hormone_dependent=True, now=now).id
    service.record_performance_status(engine, nurse, pid, recorded_on=today - timedelta(days=40), ecog=2, now=now)
    service.record_performance_status(engine, nurse, pid, recorded_on=today - timedelta(days=10), ecog=2, kps=60,
                                      now=now)
    service.record_metastatic_status(engine, nurse, pid, recorded_on=today - timedelta(days=30), visceral_status="none",
                                     brain_metastases=False, extraspinal_bone_metastases=0,
                                     vertebral_body_metastases=1, now=now)
    service.record_imaging(engine, nurse, pid, performed_on=today - timedelta(days=30), modality="mri",
                           region="whole_spine", lesions=[service.LesionFinding(
                               level="L3", pain="non_mechanical", lesion_type="blastic", alignment="normal", collapse=None,
                               posterolateral="none", bilsky_escc="1a")], now=now)
    service.record_bma_dose(engine, nurse, pid, given_on=today - timedelta(days=20), agent="denosumab", dose_mg=120,
                            now=now)
    service.record_sre(engine, nurse, pid, occurred_on=today - timedelta(days=120), event_type="radiation_to_bone",
                       level="L3", now=now)
    service.record_treatment(engine, nurse, pid, kind="radiotherapy", modality="cebrt",
                             started_on=today - timedelta(days=125), ended_on=today - timedelta(days=120), level="L3",
                             dose_gy=20, fractions=5, now=now)
    return pid


def _case(**lesion) -> dict:
    """The known patient as a case object, written out from the facts the fixture recorded."""
    return {
        "primary_site": "breast", "hormone_dependent": True, "ecog": 2, "kps": 60,
        "visceral_metastases": {"status": "none"}, "brain_metastases": False,
        "extraspinal_bone_metastases": 0, "vertebral_body_metastases": 1,
        # one single-level lesion is not "one lesion spanning contiguous levels"
        "spinal_involvement_single_contiguous_lesion": False,
        "spinal_lesions": [{"level": "L3", "pain": "non_mechanical", "lesion_type": "blastic", "alignment": "normal",
                            "collapse": None, "posterolateral": "none", "bilsky_escc": "1a", **lesion}],
    }


def _open(app_db, username: str, patient_id: int | None = None, **query):
    at = login(new_app(), app_db["engine"], username)
    if patient_id is not None:
        at.session_state["patient_id"] = patient_id
    for name, value in query.items():
        at.query_params[name] = value
    return page(at, "patient")


def _table(at, column: str):
    """The first dataframe that has ``column``."""
    for frame in at.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(f"no table with a {column!r} column")


def _texts(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def _section(at, label: str):
    """Open a section of the page (only the open section runs)."""
    at.session_state["patient_section_en"] = label
    return at.run()


def _open_tab(at, label: str):
    """Open a form of the "Record a finding" section."""
    at.session_state["patient_section_en"] = "Record a finding"
    at.session_state["patient_form_tab_en"] = label
    return at.run()


def _form_button(at, form: str):
    return next(b for b in at.button if b.proto.form_id == form)


def _audit(app_db, action: str, patient_id: int, actor: str) -> int:
    with app_db["engine"].connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM audit_event WHERE action = :a AND patient_id = :p "
                                 "AND actor = :u"), {"a": action, "p": patient_id, "u": actor}).scalar()


def _other_nurses_patient(app_db) -> tuple[int, str]:
    with app_db["engine"].connect() as conn:
        row = conn.execute(text("SELECT id, mrn FROM patient WHERE assigned_nurse_id = :n AND department = :d "
                                "ORDER BY id LIMIT 1"), {"n": app_db["users"]["nurse2"], "d": "oncology"}).one()
    return row.id, row.mrn


def test_score_panel_shows_the_engines_possible_totals(app_db, known):
    at = _open(app_db, "nurse1", known)
    assert not at.exception
    assert at.header[0].value == "Known Hanako"
    assert "KNOWN-001" in _texts(at)
    # SINS by hand (Fisher 2010): L3 mobile 2 + occasional non-mechanical pain 1 + blastic 0 + normal
    # alignment 0 + collapse unknown {0, 1, 2, 3} + no posterolateral involvement 0: every total is stable.
    sins = _table(at, "SINS ≥ 10")
    assert sins.iloc[0]["Total (possible totals)"] == "3, 4, 5 or 6"
    assert sins.iloc[0]["Category"] == "stable"
    # Tomita by hand: breast (slow) 1 + no visceral 0 + solitary bone metastasis 1.
    systems = _table(at, "Instrument").set_index("Instrument")["Total (possible totals)"]
    assert systems["Tomita"] == "2"
    expected = score_case(_case())
    for key, name in SYSTEMS.items():
        assert systems[name] == _english_totals(expected[key]["possible_totals"]), name
    lesions = _table(at, "Level / span")
    assert lesions.iloc[0]["Vertebral body collapse"] == "unknown"  # unknown stays unknown, never 0
    assert lesions.iloc[0]["SINS (possible totals)"] == "3, 4, 5 or 6"
    assert lesions.iloc[0]["Bilsky ESCC grade"].startswith("1a")
    assert "same scoring engine the recompute pipeline uses" in _texts(at)
    # One audited view per page view, not one per rerun; coming back from another page is a new view.
    at.run()
    assert _audit(app_db, "view.patient", known, "nurse1") == 1
    at.switch_page("dashboard/app_pages/alerts.py").run()
    at.switch_page("dashboard/app_pages/patient.py").run()
    assert at.header[0].value == "Known Hanako"
    assert _audit(app_db, "view.patient", known, "nurse1") == 2


def test_imaging_form_changes_the_scores_and_opens_the_escc_alert(app_db, known):
    at = _open(app_db, "nurse1", known)
    _open_tab(at, "Imaging and lesions")
    next(c for c in at.checkbox if c.label == "Re-assessed on this study").check()
    next(s for s in at.selectbox if s.label == "Pain").set_value("mechanical")
    next(s for s in at.selectbox if s.label == "Vertebral body collapse").set_value("lt50")
    next(s for s in at.selectbox if s.label == "Bilsky ESCC grade").set_value("2")
    _form_button(at, "pf_imaging").click()
    at.run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Saved (Imaging and lesions)") for s in at.success)
    assert at.session_state["patient_section_en"] == "Scores, lesions and timeline"  # the save shows its effect
    # 2 + mechanical 3 + 0 + 0 + <50% collapse 2 + 0 = 7.
    sins = _table(at, "SINS ≥ 10")
    assert sins.iloc[0]["Total (possible totals)"] == "7"
    assert sins.iloc[0]["Category"] == "potentially unstable"
    expected = score_case(_case(pain="mechanical", collapse="lt50", bilsky_escc="2"))
    systems = _table(at, "Instrument").set_index("Instrument")["Total (possible totals)"]
    for key, name in SYSTEMS.items():
        assert systems[name] == _english_totals(expected[key]["possible_totals"]), name
    assert "High-grade epidural spinal cord compression (Bilsky 2–3)** — critical" in _texts(at)
    _section(at, "Work the alerts")
    assert "rule escc-high-grade" in _texts(at)
    assert any("High-grade epidural spinal cord compression" in e.label for e in at.expander)
    with app_db["engine"].connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM alert WHERE patient_id = :p AND rule_id = 'escc-high-grade' "
                                 "AND status = 'open'"), {"p": known}).scalar() == 1
        assert conn.execute(text("SELECT COUNT(*) FROM lesion_assessment WHERE patient_id = :p"),
                            {"p": known}).scalar() == 2


def test_a_finding_that_changes_an_open_alerts_episode_is_saved_and_rescored(app_db):
    engine, nurse = app_db["engine"], _identity(app_db, "nurse1")
    now = _now()
    pid = service.create_patient(engine, nurse, mrn="EPISODE-1", family_name="Episode", given_name="Taro",
                                 birth_date=date(1955, 1, 1), department="oncology", primary_site="prostate", now=now).id
    service.record_performance_status(engine, nurse, pid, recorded_on=now.date() - timedelta(days=60), ecog=1, now=now)
    service.record_performance_status(engine, nurse, pid, recorded_on=now.date() - timedelta(days=5), ecog=2, now=now)
    with engine.connect() as conn:  # the ECOG decline made the patient a board candidate
        assert conn.execute(text("SELECT COUNT(*) FROM alert WHERE patient_id = :p AND rule_id = 'board-candidate' "
                                 "AND status = 'open'"), {"p": pid}).scalar() == 1
    at = _open_tab(_open(app_db, "nurse1", pid), "Imaging and lesions")
    next(s for s in at.selectbox if s.label == "Level").set_value("T8")
    next(s for s in at.selectbox if s.label == "Bilsky ESCC grade").set_value("2")  # a new board reason
    _form_button(at, "pf_imaging").click()
    at.run()
    assert not at.exception
    assert any(s.value.startswith("Saved (Imaging and lesions)") for s in at.success)


def test_invalid_forms_show_the_problem_and_write_nothing(app_db, known):
    at = _open_tab(_open(app_db, "nurse1", known), "ECOG / KPS")
    today = _now().date()
    dates = [d for d in at.date_input if (d.key or "").startswith("pf_")]
    assert dates and all(d.max == today for d in dates)  # no date in the future can be picked
    with app_db["engine"].connect() as conn:
        before = conn.execute(text("SELECT (SELECT COUNT(*) FROM performance_status WHERE patient_id = :p), "
                                   "(SELECT COUNT(*) FROM bma_administration WHERE patient_id = :p2)"),
                              {"p": known, "p2": known}).one()
    _form_button(at, "pf_ecog").click()  # neither ECOG nor KPS: the service refuses
    at.run()
    assert any(e.value.startswith("Not saved — ECOG grade: give an ECOG grade") for e in at.error)
    _open_tab(at, "BMA dose")
    next(n for n in at.number_input if n.label == "Dose (mg)").set_value(4.0)  # zoledronic-acid dose as denosumab
    _form_button(at, "pf_bma").click()
    at.run()
    assert any(e.value.startswith("Not saved — Dose (mg): 4") and "denosumab" in e.value for e in at.error)
    with app_db["engine"].connect() as conn:
        after = conn.execute(text("SELECT (SELECT COUNT(*) FROM performance_status WHERE patient_id = :p), "
                                  "(SELECT COUNT(*) FROM bma_administration WHERE patient_id = :p2)"),
                             {"p": known, "p2": known}).one()
    assert tuple(after) == tuple(before)
    # The service refuses a future date too, whatever the widget allowed.
    with pytest.raises(service.ValidationError, match="in the future"):
        service.record_performance_status(app_db["engine"], _identity(app_db, "nurse1"), known,
                                          recorded_on=today + timedelta(days=1), ecog=1, now=_now())


def test_a_patient_outside_the_scope_is_refused_and_audited(app_db):
    other, mrn = _other_nurses_patient(app_db)
    at = _open(app_db, "nurse1", other)
    assert not at.exception
    assert not at.header and not at.dataframe and not at.get("plotly_chart")
    assert any("No patient record is available" in e.value for e in at.error)
    assert _audit(app_db, "denied.view_patient", other, "nurse1") == 1
    assert _audit(app_db, "view.patient", other, "nurse1") == 0

    at = _open(app_db, "nurse1", **{"mrn": mrn})
    assert not at.header and not at.dataframe
    assert any("No patient record is available" in e.value for e in at.error)
    assert _audit(app_db, "denied.view_patient", other, "nurse1") == 2
    # The search box only searches the nurse's own patients.
    at.text_input(key="patient_search").set_value(mrn).run()
    assert not any(s.key == "patient_search_pick" for s in at.selectbox)
    assert "No patient in your scope matches." in _texts(at)

    at = _open(app_db, "doc1", **{"mrn": mrn})  # a physician of the patient's department
    assert not at.exception
    assert mrn in _texts(at)
    assert _audit(app_db, "view.patient", other, "doc1") == 1


def test_search_finds_own_patient_and_opens_it(app_db, known):
    at = _open(app_db, "nurse1")
    assert any("Choose a patient" in i.value for i in at.info)
    at.text_input(key="patient_search").set_value("known hana").run()
    assert at.selectbox(key="patient_search_pick").value == known
    at.button(key="patient_search_open").click().run()
    assert at.header[0].value == "Known Hanako"
    assert _audit(app_db, "view.patient", known, "nurse1") == 1


def test_timeline_has_every_kind_of_event_with_titled_axes_and_a_legend(app_db, known):
    at = _open(app_db, "nurse1", known)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = {trace["name"] for trace in spec["data"]}
    assert {"ECOG performance status", "Imaging study", "BMA dose (mg)", "Skeletal-related event",
            "Treatment (start–end)"} <= names
    assert any(name.startswith("Alert opened: ") for name in names)
    ecog = next(t for t in spec["data"] if t["name"] == "ECOG performance status")
    assert ecog["mode"] == "lines+markers" and ecog["y"] == [2.0, 2.0]
    layout = spec["layout"]
    assert layout["showlegend"] is True
    assert layout["yaxis"]["title"]["text"] == "ECOG grade (0–4)"
    assert layout["yaxis"]["range"] == [-0.3, 4.3]
    assert layout["xaxis2"]["title"]["text"].startswith("Date")
    assert layout["yaxis2"]["title"]["text"] == "Event"


def test_japanese_labels(app_db, known):
    at = _open(app_db, "nurse1", known)
    at.selectbox(key="language_select").set_value("ja").run()
    assert not at.exception
    assert at.title[0].value == "患者"
    assert _table(at, "スコア") is not None
    assert any(t.label == "スコア・病変・経過" for t in at.tabs)
    sins = _table(at, "SINS 10以上")
    assert sins.iloc[0]["合計（取りうる合計）"] == "3、4、5 または 6"


def test_timeline_chart_draws_ongoing_treatments_to_today_and_alerts_by_severity():
    import pandas as pd

    from dashboard.charts import patient_timeline_chart

    today = date(2026, 11, 27)
    events = pd.DataFrame([
        {"kind": "ecog", "start": date(2026, 1, 5), "end": None, "value": 1.0, "label": "ECOG 1", "severity": None},
        {"kind": "treatment", "start": date(2026, 3, 1), "end": None, "value": None, "label": "systemic: hormone",
         "severity": None},
        {"kind": "alert", "start": date(2026, 4, 1), "end": None, "value": None, "label": "a", "severity": "critical"},
        {"kind": "alert", "start": date(2026, 5, 1), "end": None, "value": None, "label": "b", "severity": "routine"},
    ])
    labels = {k: k for k in ("title", "x", "ecog_axis", "events_axis", "ecog", "imaging", "bma", "sre", "treatment",
                             "alert")}
    labels["severity"] = {s: s for s in ("critical", "high", "routine", "info")}
    figure = patient_timeline_chart(events, labels=labels, today=today)
    names = [trace.name for trace in figure.data]
    assert names == ["ecog", "treatment", "alert: critical", "alert: routine"]
    span = figure.data[1]
    assert list(span.x) == [date(2026, 3, 1), today, None]


def test_unknown_is_never_shown_as_zero():
    from dashboard.components.score_panel import points_text, totals_text
    from dashboard.i18n import Translator

    en, ja = Translator("en"), Translator("ja")
    assert totals_text([], en) == "unknown (cannot be computed)"
    assert totals_text([8, 9, 11], en) == "8, 9 or 11"
    assert totals_text([8, 9, 11], ja) == "8、9 または 11"
    assert points_text({"points": None, "possible_points": [0, 2, 4]}, en) == "unknown: 0, 2 or 4"
    assert points_text({"points": 0, "possible_points": [0]}, en) == "0"
