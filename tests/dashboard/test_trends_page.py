"""The Trends page: a lead sees the charts, no patient identifier, suppressed small counts; others cannot open it.

Also checks the page's reads against the facts on the fixture database (both
backends): the department path of the SRE rates against the pipeline's trend
tables, and the incidence and BMA aggregates against a plain-Python reckoning
of the same definitions.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from dashboard.data import trends as data
from dashboard.i18n import Translator
from surveillance import trends as calc
from surveillance.access import Identity, Role
from surveillance.scoring.sre import DEFINITIONS, SreDefinition
from surveillance.trend_tables import refresh_trend_tables
from tests.dashboard.conftest import NOW, login, new_app, page

pytestmark = pytest.mark.db

TRENDS_PAGE = str(Path(__file__).parents[2] / "dashboard" / "app_pages" / "trends.py")
EN, JA = Translator("en"), Translator("ja")
VIEWS = ("rates", "incidence", "bma", "imaging", "inertia")
LEAD = Identity(0, "lead-test", "Lead", Role.LEAD)
TODAY = NOW.date()


def _open(engine, username: str = "lead1") -> AppTest:
    at = login(new_app(), engine, username)
    page(at, "trends")
    assert not at.exception, at.exception
    return at


def _show(at: AppTest, view: str) -> AppTest:
    at.radio(key="trends_view").set_value(view).run()
    assert not at.exception, at.exception
    return at


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _walk(node):
    for child in getattr(node, "children", {}).values():
        yield child
        yield from _walk(child)


def _everything(at: AppTest) -> str:
    """Every element's text: values, labels, options, tables (as CSV) and chart JSON."""
    parts = []
    for element in _walk(at._tree):
        kind = getattr(element, "type", "")
        if kind == "arrow_data_frame":
            parts.append(element.value.to_csv())
        elif kind == "plotly_chart":
            parts.append(element.proto.spec)
        elif hasattr(element, "proto"):
            parts.append(str(element.proto))
    for button in at.get("download_button"):
        parts.append(str(button.proto))
    return "\n".join(parts)


def _identifiers(engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT mrn, family_name, given_name FROM patient")).all()
    return {value for row in rows for value in row if value}


# ---------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------


def test_lead_sees_titled_charts_with_legends_in_every_view(app_db):
    at = _open(app_db["engine"])
    assert at.title[0].value == EN.t("trends.title")
    seen = {}
    for view in VIEWS:
        _show(at, view)
        figures = _figures(at)
        assert figures, f"no chart in view {view}"
        for figure in figures:
            layout = figure["layout"]
            assert layout["xaxis"]["title"]["text"], (view, layout.get("title"))
            assert layout["yaxis"]["title"]["text"], (view, layout.get("title"))
            assert layout["showlegend"] is True
            assert any(trace.get("showlegend", True) and trace.get("name") for trace in figure["data"])
        seen[view] = figures
        assert at.get("download_button"), f"no CSV export in view {view}"
        assert at.caption, f"no caption in view {view}"

    rates = seen["rates"][0]
    assert rates["layout"]["barmode"] == "stack"
    assert {t["type"] for t in rates["data"]} == {"bar"}
    assert rates["layout"]["yaxis"]["title"]["text"] == EN.t("trends.rate_y")
    curves = seen["incidence"]
    assert curves[0]["layout"]["xaxis"]["title"]["text"] == EN.t("trends.x_follow_up")
    steps = [t for t in curves[0]["data"] if t.get("showlegend", True)]
    assert steps and all(t["type"] == "scatter" and t["line"]["shape"] == "hv" for t in steps)
    assert any(t.get("fill") == "tonexty" for t in curves[0]["data"]), "the 95% band is drawn"
    assert {t["name"] for t in steps} >= {EN.t("trends.group_all")}


def test_no_patient_identifier_anywhere_on_the_page(app_db):
    engine = app_db["engine"]
    forbidden = _identifiers(engine)
    assert len(forbidden) > 300
    at = _open(engine)
    for view in VIEWS:
        _show(at, view)
        everything = _everything(at)
        assert len(everything) > 1000
        leaks = sorted(v for v in forbidden if v in everything)
        assert not leaks, (view, leaks[:5])


def test_small_counts_are_shown_as_less_than_five(app_db):
    at = _open(app_db["engine"])
    table = at.dataframe[0].value
    counts = table[EN.t("trends.col_total")]
    assert calc.SUPPRESSED in set(counts), "200 patients over 24 months: some months have 1–4 SREs"
    for value in counts:
        assert value in (calc.SUPPRESSED, calc.COMPLEMENTARY) or int(value) == 0 or int(value) >= calc.SMALL_CELL


def test_filters_and_definition_switch(app_db):
    at = _open(app_db["engine"])
    at.selectbox(key="trends_department").set_value("oncology").run()
    at.radio(key="trends_definition").set_value("extended").run()
    at.selectbox(key="trends_period").set_value(60).run()
    assert not at.exception, at.exception
    names = {t["name"] for t in _figures(at)[0]["data"]}
    assert EN.t("trends.sre.hypercalcaemia_of_malignancy") in names
    assert any("oncology" in c.value for c in at.caption)


def test_japanese_labels(app_db):
    at = _open(app_db["engine"])
    at.selectbox(key="language_select").set_value("ja").run()
    assert not at.exception, at.exception
    assert at.title[0].value == JA.t("trends.title") == "傾向"
    figure = _figures(at)[0]
    assert figure["layout"]["yaxis"]["title"]["text"] == JA.t("trends.rate_y")
    _show(at, "incidence")
    assert _figures(at)[0]["layout"]["xaxis"]["title"]["text"] == "登録からの月数"


@pytest.mark.parametrize("username", ["nurse1", "doc1", "admin1"])
def test_other_roles_have_no_trends_page(app_db, username):
    at = login(new_app(), app_db["engine"], username)
    at.run()  # the role's own first page (its errors, if any, are that page's business)
    assert not any(EN.t("trends.title") == t.value for t in at.title)
    with pytest.raises(ValueError):
        at.switch_page("dashboard/app_pages/trends.py")


@pytest.mark.parametrize("role", [Role.NURSE, Role.ADMIN])
def test_page_run_directly_denies_other_roles(app_db, role):
    at = AppTest.from_file(TRENDS_PAGE, default_timeout=60)
    login(at, app_db["engine"], "nurse1" if role == Role.NURSE else "admin1")
    at.run()
    assert [e.value for e in at.error] == [EN.t("app.denied")]
    assert not at.get("plotly_chart")
    assert not at.dataframe


# ---------------------------------------------------------------------------
# The reads against the facts
# ---------------------------------------------------------------------------


def test_department_path_adds_up_to_the_trend_tables(app_db):
    whole = data.sre_trend(LEAD, site=None, department=None, months=60, definition="extended", today=TODAY)
    assert whole.source == "aggregate"
    counts, days = None, None
    for department in ("oncology", "orthopaedics"):
        part = data.sre_trend(LEAD, site=None, department=department, months=60, definition="extended", today=TODAY)
        assert part.source == "facts"
        counts = part.monthly.counts if counts is None else counts + part.monthly.counts
        days = part.monthly.derived["patient_days"] if days is None else days + part.monthly.derived["patient_days"]
    pd.testing.assert_frame_equal(counts, whole.monthly.counts)
    pd.testing.assert_series_equal(days, whole.monthly.derived["patient_days"])


def _facts(engine):
    with engine.connect() as conn:
        patients = [
            dict(r._mapping)
            for r in conn.execute(
                text(
                    "SELECT p.id, p.registered_on, p.status, p.status_on, p.deceased_on, p.zoledronic_regimen, "
                    "s.tier, ps.lesion_count, ps.extraspinal_bone_metastases, ps.bma_last_on FROM patient p "
                    "LEFT JOIN risk_snapshot s ON s.patient_id = p.id JOIN patient_state ps ON ps.patient_id = p.id"
                )
            )
        ]
        events = [
            dict(r._mapping)
            for r in conn.execute(text("SELECT patient_id, occurred_on, event_type FROM skeletal_event"))
        ]
        doses = [
            dict(r._mapping)
            for r in conn.execute(
                text("SELECT id, patient_id, given_on, agent, sre_prevention FROM bma_administration")
            )
        ]
    day = lambda v: v if isinstance(v, date) or v is None else date.fromisoformat(str(v)[:10])  # noqa: E731
    for row in patients:
        for key in ("registered_on", "status_on", "deceased_on", "bma_last_on"):
            row[key] = day(row[key])
    for row in events:
        row["occurred_on"] = day(row["occurred_on"])
    for row in doses:
        row["given_on"] = day(row["given_on"])
    return patients, events, doses


def _end(p):
    return None if p["status"] == "active" else (p["deceased_on"] or p["status_on"])


PATHS = ("facts", "tables")


def _use(engine, path: str) -> None:
    """Make the reads take ``path``: the monthly trend tables (rebuilt now) or the facts (tables not current)."""
    import streamlit as st

    if path == "tables":
        refresh_trend_tables(engine, TODAY, now=NOW)
    else:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM trend_refresh"))
    st.cache_data.clear()
    with engine.connect() as conn:
        assert data.tables_current(conn, TODAY) == (path == "tables")


def _incidence_rows(engine, path: str, types: list[str], definition: str) -> list[tuple]:
    """(tier, follow-up month, outcome, n) of every patient, from either source."""
    since = date(2000, 1, 1)
    with engine.connect() as conn, conn.begin():
        sql = data._Sql(conn)
        if path == "tables":
            frame = data._incidence_from_tables(conn, None, None, 0, definition)
            return [tuple(r) for r in frame.itertuples(index=False)]
        return conn.execute(
            text(data._incidence_sql(sql, "1 = 1", types)), {"today": sql.value(TODAY), "since": sql.value(since)}
        ).all()


def test_incidence_counts_match_a_plain_reckoning(app_db):
    engine = app_db["engine"]
    patients, events, _ = _facts(engine)
    core = {t.value for t in DEFINITIONS[SreDefinition.CORE]}
    expected, excluded = Counter(), 0
    for p in patients:
        firsts = [
            e["occurred_on"]
            for e in events
            if e["patient_id"] == p["id"] and e["event_type"] in core and e["occurred_on"] >= p["registered_on"]
        ]
        first, end = min(firsts, default=None), _end(p)
        if first is not None and (end is None or first <= end):
            stop, code = first, 1
        else:
            stop, code = (TODAY, 0) if p["status"] == "active" else (end, 2 if p["status"] == "deceased" else 0)
        if stop is None or stop < p["registered_on"]:
            excluded += 1
            continue
        expected[int(calc.follow_up_month((stop - p["registered_on"]).days))] += 1 if code == 1 else 0
        expected[("code", code)] += 1
    for path in PATHS:
        _use(engine, path)
        result = data.incidence(LEAD, site=None, department=None, months=120, definition="core", today=TODAY)
        assert result.excluded == excluded, path
        assert result.patients == len(patients) - excluded, path
        assert result.curves.patients[calc.ALL] == len(patients) - excluded, path
        got = Counter()
        for _tier, month, code, n in _incidence_rows(engine, path, sorted(core), "core"):
            if month < 0:
                continue
            got[("code", code)] += n
            got[int(month)] += n if code == 1 else 0
        assert +got == +expected, path


def test_bma_measures_match_a_plain_reckoning(app_db):
    engine = app_db["engine"]
    patients, _, doses = _facts(engine)
    allowed = data.bma_allowed_days()
    months = data.period_months(24, TODAY)
    tables = {}
    for path in PATHS:
        _use(engine, path)
        tables[path] = data.bma(LEAD, site=None, department=None, months=24, today=TODAY).counts
    pd.testing.assert_frame_equal(tables["tables"], tables["facts"])
    table = tables["facts"]
    by_patient = {p["id"]: p for p in patients}
    given = {}
    for d in sorted((d for d in doses if d["sre_prevention"]), key=lambda d: (d["given_on"], d["id"])):
        given.setdefault(d["patient_id"], []).append(d)
    for month in months:
        first = date.fromisoformat(month + "-01")
        end_of_month = (pd.Timestamp(first) + pd.offsets.MonthEnd(0)).date()
        moment = min(end_of_month, TODAY)
        eligible = covered = 0
        for p in patients:
            bone = p["lesion_count"] > 0 or (p["extraspinal_bone_metastases"] or 0) > 0
            end = _end(p)
            if not bone or p["registered_on"] > moment or (end is not None and end <= moment):
                continue
            eligible += 1
            if any(
                moment - timedelta(days=calc.BMA_COVER_DAYS) < d["given_on"] <= moment for d in given.get(p["id"], [])
            ):
                covered += 1
        evaluated = on_time = 0
        for pid, series in given.items():
            for previous, dose in zip(series, series[1:], strict=False):
                if dose["given_on"].isoformat()[:7] != month:
                    continue
                evaluated += 1
                regimen = by_patient[pid]["zoledronic_regimen"]
                limit = (
                    allowed["zoledronic_q12w"]
                    if dose["agent"] == "zoledronic_acid" and regimen == "q12w"
                    else allowed["zoledronic_q4w"]
                    if dose["agent"] == "zoledronic_acid"
                    else allowed["denosumab"]
                )
                on_time += (dose["given_on"] - previous["given_on"]).days <= limit
        assert (table.loc[month, "eligible"], table.loc[month, "covered"]) == (eligible, covered), month
        assert (table.loc[month, "evaluated"], table.loc[month, "on_time"]) == (evaluated, on_time), month


def test_reads_refuse_other_roles(app_db):
    nurse = Identity(1, "n", "N", Role.NURSE)
    with pytest.raises(PermissionError):
        data.sre_trend(nurse, site=None, department=None, months=12, definition="core", today=TODAY)
    with pytest.raises(PermissionError):
        data.alert_burden(nurse, site=None, department=None)


def test_alert_response_measures(app_db):
    """Work a few alerts of last month, then the response table counts them with the documented definitions."""
    import streamlit as st

    engine = app_db["engine"]
    opened = (NOW.replace(day=1) - timedelta(days=20)).replace(hour=8, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:
        ids = [
            r[0] for r in conn.execute(text("SELECT id FROM alert WHERE severity = 'high' ORDER BY id LIMIT 12")).all()
        ]
        assert len(ids) == 12
        listed = "(" + ", ".join(map(str, ids)) + ")"
        conn.execute(text(f"UPDATE alert SET opened_at = :o WHERE id IN {listed}"), {"o": opened})
        for k, alert_id in enumerate(ids[:6]):  # acknowledged after 2 h, done after 24 + k hours (in target)
            conn.execute(
                text("UPDATE alert SET status = 'done', acknowledged_at = :a, closed_at = :c WHERE id = :i"),
                {"a": opened + timedelta(hours=2), "c": opened + timedelta(hours=24 + k), "i": alert_id},
            )
        for alert_id in ids[6:8]:  # done after 8 days without acknowledgement (late)
            conn.execute(
                text("UPDATE alert SET status = 'done', closed_at = :c WHERE id = :i"),
                {"c": opened + timedelta(days=8), "i": alert_id},
            )
        conn.execute(
            text("UPDATE alert SET status = 'resolved', closed_at = :c WHERE id = :i"),
            {"c": opened + timedelta(days=1), "i": ids[8]},
        )  # condition cleared in time: not judged
        conn.execute(
            text("UPDATE alert SET status = 'dismissed', closed_at = :c WHERE id = :i"),
            {"c": opened + timedelta(days=9), "i": ids[9]},
        )  # dismissed late: responded, not acted
    for path in PATHS:
        _use(engine, path)
        st.cache_data.clear()
        table = data.alert_response(LEAD, site=None, department=None, months=12, now=NOW)
        key = (opened.strftime("%Y-%m"), "high")
        row, derived = table.counts.loc[key], table.derived.loc[key]
        assert row["opened"] == 12, path
        assert row["responded"] == 9 and row["done"] == 8, path
        assert row["judged"] == 11 and row["acted"] == 6 and row["not_acted"] == 5, path
        assert derived["acted_share"] == pytest.approx(6 / 11), path
        assert derived["median_response_hours"] == 2, path  # 2 h ×6, 192 h ×2, 216 h: the 5th of 9
        assert derived["median_done_hours"] == 27, path  # 24, 25, 26, 27 | 28, 29, 192, 192: the lower middle


@pytest.mark.parametrize(
    ("site", "department"),
    [(None, None), ("breast", None), (None, "orthopaedics"), (data.NO_SITE, None), ("lung_nsclc", "oncology")],
)
def test_monthly_tables_give_the_live_numbers(app_db, site, department):
    """The page's two sources agree for every filter: the tables rebuilt today and the live aggregates."""
    engine = app_db["engine"]
    results = {}
    for path in PATHS:
        _use(engine, path)
        results[path] = (
            data.bma(LEAD, site=site, department=department, months=120, today=TODAY),
            data.alert_response(LEAD, site=site, department=department, months=24, now=NOW),
            *(
                data.incidence(LEAD, site=site, department=department, months=m, definition=d, today=TODAY)
                for m in (12, 60)
                for d in ("core", "extended")
            ),
        )
    tables, facts = results["tables"], results["facts"]
    for got, want in zip(tables[:2], facts[:2], strict=True):
        pd.testing.assert_frame_equal(got.counts, want.counts)
        pd.testing.assert_frame_equal(got.derived, want.derived)
    assert tables[0].counts["eligible"].sum() > 0 or site == data.NO_SITE  # the comparison is not of empty tables
    for got, want in zip(tables[2:], facts[2:], strict=True):
        assert (got.excluded, got.patients) == (want.excluded, want.patients)
        pd.testing.assert_frame_equal(got.curves.incidence, want.curves.incidence)
        pd.testing.assert_frame_equal(got.curves.at_risk, want.curves.at_risk)


def test_tables_serve_the_page_only_while_current(app_db):
    """Rebuilt today or yesterday in the same month: tables; older, or last month: the facts."""
    engine = app_db["engine"]
    day = date(2026, 5, 2)
    # (as of, page day, current): the clinic's day may run a day ahead of the page's UTC day
    cases = [
        (day, day, True),
        (date(2026, 5, 1), day, True),
        (date(2026, 4, 30), date(2026, 5, 1), False),
        (date(2026, 5, 3), day, True),
        (date(2026, 4, 29), date(2026, 4, 30), True),
        (date(2026, 5, 29), date(2026, 5, 31), False),
    ]
    for as_of, page_day, current in cases:
        refresh_trend_tables(engine, as_of, now=NOW)
        with engine.connect() as conn:
            assert data.tables_current(conn, page_day) == current, (as_of, page_day)


def test_empty_database_shows_every_view_without_error(db_url, monkeypatch):
    import streamlit as st

    from db.engine import get_engine
    from surveillance.pipeline import recompute
    from tests import factories

    engine = get_engine(db_url)
    factories.add_users(engine)
    recompute(engine, full=True, now=NOW)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SURVEILLANCE_INPROCESS_SCHEDULER", "0")
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        at = _open(engine)
        for view in VIEWS:
            _show(at, view)
        assert any(EN.t("trends.too_few") == i.value for i in at.info) or at.get("plotly_chart")
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()
