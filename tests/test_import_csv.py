"""CSV template import on both backends: every template's example imports; a bad row rejects the whole file
with its row, column and message; --partial keeps the good rows; a re-import changes nothing.

Expectations are the requirements (shared/design.md "Imports are transactional"; security.md tests 17, 18)
and rows counted in the database here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from surveillance.importing import import_file
from surveillance.importing.csv_templates import TEMPLATES, parse, template_csv

pytestmark = pytest.mark.db
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PATIENTS = (
    "mrn,family_name,given_name,birth_date,sex,department,primary_site,status\r\n"
    "C001,Yamada,Hanako,1958-04-02,female,oncology,breast,active\r\n"
    "C002,Sato,Taro,1949-11-30,male,oncology,prostate,active\r\n"
)
ECOG_HEADER = "mrn,recorded_on,ecog,kps\r\n"


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar())


def _import(engine, body: str | bytes, name: str, **kw):
    data = body.encode("utf-8") if isinstance(body, str) else body
    return import_file(engine, data, name=name, actor="tester", now=NOW, **kw)


def test_every_template_example_imports(engine):
    assert _import(engine, template_csv("patient"), "patient.csv").status == "imported"
    for kind in TEMPLATES:
        if kind == "patient":
            continue
        result = _import(engine, template_csv(kind), f"{kind}.csv")
        assert result.status == "imported", (kind, [i.as_dict() for i in result.issues])
        assert _count(engine, kind) == 1, kind


def test_a_bad_row_rejects_the_whole_file_with_row_column_and_message(engine):
    _import(engine, PATIENTS, "patients.csv")
    body = ECOG_HEADER + "C001,2026-10-01,1,80\r\nC002,2026-10-02,7,\r\nC002,2026-10-03,x,\r\n"
    result = _import(engine, body, "ecog.csv")
    assert result.status == "rejected"
    assert _count(engine, "performance_status") == 0, "nothing of the file is written"
    errors = {(i.entry_index, i.location): i.message for i in result.errors}
    assert errors[(4, "ecog.csv:row 4:ecog")] == "performance_status: ecog: 'x' is not a number"
    (row3,) = [m for (k, _), m in errors.items() if k == 3]
    assert "ecog" in row3 and "7" in row3 and "0–4" in row3


def test_dates_in_the_future_or_before_birth_and_unknown_codes_are_refused_per_row(engine):
    _import(engine, PATIENTS, "patients.csv")
    body = ("mrn,given_on,agent,dose_mg\r\n"
            "C001,2027-01-01,denosumab,120\r\n"      # future
            "C001,1950-01-01,denosumab,120\r\n"      # before birth (1958)
            "C001,2026-01-01,aspirin,100\r\n"        # unknown agent
            "C009,2026-01-01,denosumab,120\r\n")     # unknown patient
    result = _import(engine, body, "bma.csv")
    assert result.status == "rejected"
    assert sorted({i.entry_index for i in result.errors}) == [2, 3, 4, 5]


def test_partial_keeps_the_good_rows_and_reports_the_bad(engine):
    _import(engine, PATIENTS, "patients.csv")
    body = ECOG_HEADER + "C001,2026-10-01,1,80\r\nC002,2026-10-02,7,\r\nC002,2026-10-04,2,\r\n"
    result = _import(engine, body, "ecog.csv", partial=True)
    assert result.status == "partial"
    assert [i.entry_index for i in result.errors] == [3]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT ecog FROM performance_status ORDER BY recorded_on")).scalars().all()
    assert rows == [1, 2]


def test_reimport_changes_nothing_even_as_another_file(engine):
    _import(engine, PATIENTS, "patients.csv")
    body = "mrn,collected_on,test,value,unit\r\nC001,2026-10-01,albumin,38,g/L\r\nC002,2026-10-01,calcium,2.4,mmol/L\r\n"
    assert _import(engine, body, "labs.csv").status == "imported"
    assert _import(engine, body, "labs.csv").status == "unchanged"
    # the same rows with one more, as a new file: only the new row is added
    again = _import(engine, body + "C002,2026-10-05,albumin,35,g/L\r\n", "labs-2.csv")
    assert again.status == "imported"
    assert _count(engine, "lab_result") == 3
    with engine.connect() as conn:
        calcium = conn.execute(text("SELECT value, unit FROM lab_result WHERE test = 'calcium'")).one()
    assert calcium.unit == "mg/dL" and calcium.value == pytest.approx(2.4 * 4.008, rel=1e-3), "mmol/L converted"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"mrn;recorded_on;ecog\r\nC001;2026-10-01;1\r\n", "commas"),
        (b"mrn,recorded_on,ecog,ecog\r\nC001,2026-10-01,1,1\r\n", "duplicate column"),
        (b"mrn,recorded_on,ecog,colour\r\nC001,2026-10-01,1,red\r\n", "unknown column(s) colour"),
        (ECOG_HEADER.encode(), "no data rows"),
        ("mrn,family_name,given_name\r\nC003,Müller,Anna\r\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_malformed_files_are_refused_with_a_clear_message_and_nothing_written(engine, data, message):
    result = parse("x.csv", data)
    assert not result.records and result.issues and message in result.issues[0].message
    assert _import(engine, data, "x.csv").status == "rejected"
    assert _count(engine, "patient") == 0
