"""The demo generator: exact patient_state, plausible cohort, valid data, reproducible, consumable.

Every test runs on SQLite and on PostgreSQL (the ``engine`` / ``db_url``
fixtures).  Expected shares come from the distributions the module docstring
documents (and perf.md "Synthetic data"), with margins wide enough for a
seeded 2,000-patient cohort; no test looks at the clock or at timings.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import text

import surveillance.demo as demo
from db import models as m
from db.engine import get_engine, write_session
from db.schema import upgrade
from surveillance.auth import verify_password
from surveillance.demo import DEMO_USERS, FACT_TABLES, FILLED_TABLES, generate_demo
from surveillance.labs import LABS, LabTest
from surveillance.locomo import LocomoCondition
from surveillance.scoring.histology import normalise_histology
from surveillance.scoring.sre import SreType
from surveillance.scoring.vocab import (
    LEVEL_ORDER,
    Alignment,
    Ambulation,
    BilskyGrade,
    Collapse,
    Frankel,
    LesionType,
    Level,
    Pain,
    Posterolateral,
    PrimarySite,
    VisceralStatus,
)
from surveillance.state import STATE_COLUMNS, refresh_patient_state

pytestmark = pytest.mark.db

ROOT = Path(__file__).parents[1]
TODAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
TABLES = m.SQLModel.metadata.tables


def _rows(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def _value(engine, sql: str, **params):
    return _rows(engine, sql, **params)[0][0]


def _day(value) -> date | None:
    """A date column as a date on either backend (SQLite returns ISO text through a raw ``text()`` query)."""
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


def _state(engine) -> list[tuple]:
    return _rows(engine, f"SELECT patient_id, {', '.join(STATE_COLUMNS)} FROM patient_state ORDER BY patient_id")


@pytest.fixture
def cohort(engine):
    """A seeded 2,000-patient demo on each backend."""
    summary = generate_demo(engine, patients=2000, seed=7, today=TODAY)
    return engine, summary


# ---------------------------------------------------------------------------
# patient_state is exactly what refresh_patient_state derives from the facts
# ---------------------------------------------------------------------------


def test_patient_state_equals_refresh_patient_state_in_every_row_and_column(engine):
    generate_demo(engine, patients=300, seed=11, today=TODAY)
    generated = _state(engine)
    assert len(generated) == 300
    # not vacuous: every column takes at least two different values (NULL counts as one)
    flat = list(zip(*generated, strict=True))
    dull = [name for name, values in zip(["patient_id", *STATE_COLUMNS], flat, strict=True) if len(set(values)) < 2]
    assert dull == []

    with write_session(engine) as session:
        ids = [r[0] for r in session.execute(text("SELECT id FROM patient"))]
        refresh_patient_state(session, ids)
    refreshed = _state(engine)

    mismatches = [
        (row[0], name, mine, theirs)
        for row, other in zip(generated, refreshed, strict=True)
        for name, mine, theirs in zip(["patient_id", *STATE_COLUMNS], row, other, strict=True)
        if mine != theirs or type(mine) is not type(theirs)
    ]
    assert mismatches == [], mismatches[:20]


# ---------------------------------------------------------------------------
# The cohort is plausible
# ---------------------------------------------------------------------------


def test_counts_and_distributions_are_plausible(cohort):
    engine, summary = cohort
    n = 2000
    for table in (*FILLED_TABLES, "app_user"):
        assert _value(engine, f"SELECT COUNT(*) FROM {table}") == summary.rows[table], table
    assert summary.patients == n and summary.rows["patient_state"] == n
    assert 26.0 <= summary.facts_per_patient <= 30.0  # perf.md: about 28 rows per patient

    statuses = Counter(dict(_rows(engine, "SELECT status, COUNT(*) FROM patient GROUP BY status")))
    assert 0.81 <= statuses["active"] / n <= 0.89
    assert 0.07 <= statuses["deceased"] / n <= 0.13
    assert 0.015 <= statuses["transferred"] / n <= 0.05
    assert 0.005 <= statuses["on_hold"] / n <= 0.04
    assert _value(engine, "SELECT COUNT(*) FROM patient WHERE (status = 'deceased') != (deceased_on IS NOT NULL)") == 0

    sites = Counter(dict(_rows(engine, "SELECT primary_site, COUNT(*) FROM patient GROUP BY primary_site")))
    assert 0.18 <= sites["breast"] / n <= 0.26
    lung = sites["lung_nsclc"] + sites["lung_sclc"]
    assert 0.16 <= lung / n <= 0.24 and 0.75 <= sites["lung_nsclc"] / lung <= 0.93
    assert 0.12 <= sites["prostate"] / n <= 0.20
    assert sites["unknown_primary"] > 0 and sites["kidney"] > sites["thyroid"] > 0
    assert set(sites) - {None} <= {s.value for s in PrimarySite}
    for site, histology in _rows(engine, "SELECT primary_site, primary_histology FROM patient "
                                         "WHERE primary_histology IS NOT NULL GROUP BY primary_site, primary_histology"):
        assert site is None or site in {s.value for s in normalise_histology(histology).sites}, (site, histology)
    histology_only = _value(engine, "SELECT COUNT(*) FROM patient WHERE primary_site IS NULL")
    assert 0 < histology_only == _value(engine, "SELECT COUNT(*) FROM patient WHERE primary_site IS NULL "
                                                "AND primary_histology IS NOT NULL")
    assert _value(engine, "SELECT COUNT(*) FROM patient WHERE hormone_dependent IS NOT NULL "
                          "AND primary_site NOT IN ('breast', 'prostate')") == 0

    # lesions: ~25% of patients none, about 2 per patient, thoracic > lumbar > cervical, some spans
    with_lesions = _value(engine, "SELECT COUNT(DISTINCT patient_id) FROM spinal_lesion")
    assert 0.70 <= with_lesions / n <= 0.80
    assert 1.8 <= summary.rows["spinal_lesion"] / n <= 2.2
    levels = [LEVEL_ORDER[Level(lv)] for (lv,) in _rows(engine, "SELECT level FROM spinal_lesion")]
    region = Counter("C" if i <= 7 else "T" if i <= 19 else "L" if i <= 24 else "S" for i in levels)
    assert 0 not in levels  # never the occiput
    assert region["T"] > region["L"] > region["C"] > 0 and 0.45 <= region["T"] / len(levels) <= 0.65
    spans = _rows(engine, "SELECT level, level_span_end FROM spinal_lesion WHERE level_span_end IS NOT NULL")
    assert 0.06 <= len(spans) / len(levels) <= 0.14
    assert all(1 <= LEVEL_ORDER[Level(end)] - LEVEL_ORDER[Level(start)] <= 2 for start, end in spans)
    pain_unknown = _value(engine, "SELECT COUNT(*) FROM spinal_lesion WHERE pain IS NULL") / len(levels)
    assert 0.15 <= pain_unknown <= 0.25

    # skeletal events: ~0.3 per patient; SRE in 12–20% of patients with spinal metastases; ~30% emergencies
    assert 0.22 <= summary.rows["skeletal_event"] / n <= 0.38
    with_sre = _value(engine, "SELECT COUNT(DISTINCT e.patient_id) FROM skeletal_event e "
                              "WHERE e.patient_id IN (SELECT patient_id FROM spinal_lesion)")
    assert 0.12 <= with_sre / with_lesions <= 0.22
    emergencies = _value(engine, "SELECT COUNT(*) FROM skeletal_event WHERE emergency")
    assert 0.2 <= emergencies / summary.rows["skeletal_event"] <= 0.4
    types = Counter(dict(_rows(engine, "SELECT event_type, COUNT(*) FROM skeletal_event GROUP BY event_type")))
    assert set(types) <= {t.value for t in SreType} and len(types) >= 6

    # bone-modifying agents: about one in five patients with spinal metastases never gets one
    never = _value(engine, "SELECT COUNT(DISTINCT patient_id) FROM spinal_lesion WHERE patient_id NOT IN "
                           "(SELECT patient_id FROM bma_administration WHERE sre_prevention)")
    assert 0.14 <= never / with_lesions <= 0.30
    doses = set(_rows(engine, "SELECT agent, dose_mg, sre_prevention FROM bma_administration GROUP BY 1, 2, 3"))
    assert {("denosumab", 120.0), ("zoledronic_acid", 4.0), ("denosumab", 60.0)} <= {(a, d) for a, d, _ in doses}
    assert all(bool(p) == (not (a == "denosumab" and d == 60.0)) for a, d, p in doses)
    regimens = Counter(r for (r,) in _rows(engine, "SELECT zoledronic_regimen FROM patient WHERE id IN "
                                                   "(SELECT patient_id FROM bma_administration WHERE agent = 'zoledronic_acid')"))
    assert regimens["q4w"] > 0 and regimens["q12w"] > 0 and None not in regimens

    # nurses: round-robin, about 5% unassigned, the patient in the nurse's department
    nurse_ids = dict(_rows(engine, "SELECT id, department FROM app_user WHERE role = 'nurse'"))
    assigned = Counter(nurse for (nurse,) in _rows(engine, "SELECT assigned_nurse_id FROM patient"))
    assert 0.03 <= assigned[None] / n <= 0.07
    assert set(assigned) - {None} == set(nurse_ids) and max(assigned.values()) - min(
        v for k, v in assigned.items() if k is not None) < 0.05 * n
    mismatched = [r for r in _rows(engine, "SELECT assigned_nurse_id, department FROM patient "
                                           "WHERE assigned_nurse_id IS NOT NULL") if nurse_ids[r[0]] != r[1]]
    assert mismatched == []
    assert {d for (d,) in _rows(engine, "SELECT DISTINCT department FROM patient")} == set(demo.DEPARTMENTS)


def test_values_dates_keys_and_lesions_are_valid(cohort):
    """One cohort, four families of checks (each is a helper below)."""
    engine, summary = cohort
    _check_values(engine)
    _check_dates(engine)
    _check_foreign_keys(engine)
    _check_lesions(engine, summary)


def _check_values(engine):
    vocabularies = {
        ("spinal_lesion", "pain"): Pain, ("spinal_lesion", "lesion_type"): LesionType,
        ("spinal_lesion", "alignment"): Alignment, ("spinal_lesion", "collapse"): Collapse,
        ("spinal_lesion", "posterolateral"): Posterolateral, ("spinal_lesion", "bilsky_escc"): BilskyGrade,
        ("spinal_lesion", "level"): Level, ("spinal_lesion", "level_span_end"): Level,
        ("lesion_assessment", "bilsky_escc"): BilskyGrade, ("lesion_assessment", "pain"): Pain,
        ("neuro_status", "frankel_grade"): Frankel, ("neuro_status", "ambulatory_status"): Ambulation,
        ("metastatic_status", "visceral_status"): VisceralStatus, ("skeletal_event", "level"): Level,
        ("treatment", "level"): Level, ("locomo_condition", "condition"): LocomoCondition,
        ("skeletal_event", "event_type"): SreType, ("lab_result", "test"): LabTest,
    }
    for (table, column), vocabulary in vocabularies.items():
        values = {v for (v,) in _rows(engine, f"SELECT DISTINCT {column} FROM {table}")} - {None}
        assert values and values <= {e.value for e in vocabulary}, (table, column, values)
    from surveillance.service import IMAGING_MODALITIES, IMAGING_REGIONS, TREATMENTS

    assert {v for (v,) in _rows(engine, "SELECT DISTINCT modality FROM imaging_study")} == set(IMAGING_MODALITIES)
    assert {v for (v,) in _rows(engine, "SELECT DISTINCT region FROM imaging_study")} <= set(IMAGING_REGIONS)
    for kind, modality, level, dose, fractions, margin, start, end in _rows(
        engine, "SELECT kind, modality, level, dose_gy, fractions, separation_margin_mm, started_on, ended_on FROM treatment"
    ):
        assert modality in TREATMENTS[kind]
        assert (level is None) == (kind == "systemic")
        assert (dose is not None) == (fractions is not None) == (kind == "radiotherapy")
        assert margin is None or modality == "separation"
        assert end is None or _day(end) >= _day(start)
    assert _value(engine, "SELECT COUNT(*) FROM treatment WHERE kind = 'systemic' AND ended_on IS NULL") > 0
    margins = [v for (v,) in _rows(engine, "SELECT separation_margin_mm FROM treatment WHERE modality = 'separation' "
                                           "AND separation_margin_mm IS NOT NULL")]
    assert margins and any(v < 3 for v in margins) and any(v >= 3 for v in margins)

    for test, value, unit, loinc in _rows(engine, "SELECT test, value, unit, loinc FROM lab_result"):
        definition = LABS[LabTest(test)]
        assert unit == definition.unit and loinc == definition.loinc[0]
        assert definition.plausible[0] <= value <= definition.plausible[1], (test, value)
    # values fall on both sides of the Katagiri cut-offs
    for test, cut in (("albumin", 3.7), ("crp", 0.4), ("ldh", 250), ("platelets", 100000), ("calcium", 10.3),
                      ("bilirubin", 1.4)):
        low = _value(engine, "SELECT COUNT(*) FROM lab_result WHERE test = :t AND value < :c", t=test, c=cut)
        high = _value(engine, "SELECT COUNT(*) FROM lab_result WHERE test = :t AND value >= :c", t=test, c=cut)
        assert low > 0 and high > 0, test

    ecog = Counter(e for (e,) in _rows(engine, "SELECT ecog FROM performance_status"))
    assert set(ecog) - {None} == {0, 1, 2, 3, 4} and ecog[None] > 0
    assert all(k % 10 == 0 and 10 <= k <= 100 for (k,) in _rows(engine, "SELECT kps FROM performance_status "
                                                                          "WHERE kps IS NOT NULL"))
    assert _value(engine, "SELECT COUNT(*) FROM performance_status WHERE ecog IS NULL AND kps IS NULL") == 0
    assert _value(engine, "SELECT COUNT(*) FROM neuro_status WHERE frankel_grade IS NULL AND ambulatory_status IS NULL "
                          "AND NOT new_deficit AND NOT pain_suggests_cord_compression AND NOT new_spinal_pain") == 0
    assert _value(engine, "SELECT COUNT(*) FROM metastatic_status WHERE vertebral_body_metastases < 1 "
                          "OR vertebral_body_metastases > 30") == 0

    for (mrn,) in _rows(engine, "SELECT mrn FROM patient ORDER BY id LIMIT 3"):
        assert len(mrn) == 8 and mrn[0] == "D" and mrn[1:].isdigit()
    assert _value(engine, "SELECT mrn FROM patient ORDER BY id LIMIT 1") == "D0000001"
    names = _rows(engine, "SELECT family_name, given_name FROM patient")
    assert any(f.isascii() for f, _ in names) and any(not f.isascii() for f, _ in names)


def _check_dates(engine):
    """Nothing after today, nothing before the patient's birth; ages 30–90; registration in the last 5 years."""
    births = {pid: _day(b) for pid, b in _rows(engine, "SELECT id, birth_date FROM patient")}
    ages = [(TODAY - b).days / 365.25 for b in births.values()]
    assert 30 <= min(ages) and max(ages) <= 90
    registered = [_day(r) for (r,) in _rows(engine, "SELECT registered_on FROM patient")]
    assert min(registered) >= date(TODAY.year - 5, TODAY.month, TODAY.day)
    checked = 0
    for table in FACT_TABLES:
        date_columns = [c.name for c in TABLES[table].columns if isinstance(c.type, sa.Date)]
        owner = "id" if table == "patient" else "patient_id"
        for column in date_columns:
            for pid, value in _rows(engine, f"SELECT {owner}, {column} FROM {table} WHERE {column} IS NOT NULL"):
                day = _day(value)
                assert births[pid] <= day <= TODAY, (table, column, pid, day)
                checked += 1
    assert checked > 50_000


def _check_foreign_keys(engine):
    for table in FILLED_TABLES:
        for fk in TABLES[table].foreign_keys:
            child, parent = fk.parent.name, fk.column
            orphans = _value(
                engine,
                f"SELECT COUNT(*) FROM {table} t WHERE t.{child} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {parent.table.name} p WHERE p.{parent.name} = t.{child})",
            )
            assert orphans == 0, (table, child)
    if engine.dialect.name == "sqlite":
        assert _rows(engine, "PRAGMA foreign_key_check") == []
    # the assessment belongs to the lesion's patient and to a study of that patient on the same day
    assert _value(engine, "SELECT COUNT(*) FROM lesion_assessment a JOIN spinal_lesion l ON l.id = a.lesion_id "
                          "JOIN imaging_study i ON i.id = a.imaging_study_id WHERE l.patient_id != a.patient_id "
                          "OR i.patient_id != a.patient_id OR i.performed_on != a.assessed_on "
                          "OR i.modality NOT IN ('mri', 'ct')") == 0


def _check_lesions(engine, summary):
    """Every lesion's current columns are those of its latest assessment (by date, then id)."""
    components = ["pain", "lesion_type", "alignment", "collapse", "posterolateral", "bilsky_escc"]
    assessments: dict[int, list[tuple]] = {}
    for row in _rows(engine, f"SELECT lesion_id, assessed_on, id, {', '.join(components)} FROM lesion_assessment"):
        assessments.setdefault(row[0], []).append(row)
    lesions = _rows(engine, f"SELECT id, assessed_on, first_seen_on, {', '.join(components)} FROM spinal_lesion")
    assert len(assessments) == len(lesions) == summary.rows["spinal_lesion"]
    assert summary.rows["lesion_assessment"] > 1.2 * len(lesions)  # some lesions re-assessed
    for lesion_id, assessed_on, first_seen, *current in lesions:
        history = sorted(assessments[lesion_id], key=lambda r: (_day(r[1]), r[2]))
        latest = history[-1]
        assert _day(assessed_on) == _day(latest[1]) and list(latest[3:]) == current, lesion_id
        assert _day(history[0][1]) == _day(first_seen)


# ---------------------------------------------------------------------------
# Accounts, refusal, reproducibility, schema
# ---------------------------------------------------------------------------


def test_demo_accounts_can_log_in(engine):
    summary = generate_demo(engine, patients=20, today=TODAY)
    assert summary.users == len(DEMO_USERS)
    assert {u.role for u in DEMO_USERS} == {"admin", "lead", "physician", "nurse"}
    assert sum(u.role == "nurse" for u in DEMO_USERS) == 6
    stored = {r[0]: r[1:] for r in _rows(engine, "SELECT username, password_hash, role, department, active FROM app_user")}
    verified: set[tuple[str, str]] = set()
    for user in DEMO_USERS:
        password_hash, role, department, active = stored[user.username]
        assert len(user.password) >= 10
        assert password_hash.startswith("$argon2id$")
        assert (role, department, bool(active)) == (user.role, user.department, True)
        if (password_hash, user.password) not in verified:  # a shared password is hashed once (argon2 is slow)
            assert verify_password(password_hash, user.password)
            verified.add((password_hash, user.password))
    assert not verify_password(stored["nurse1"][0], "nurse-demo-pass!")
    assert len({h for h, *_ in stored.values()}) == len({u.password for u in DEMO_USERS})


def test_refuses_a_database_that_already_holds_patients(engine):
    with write_session(engine) as session:
        session.add(m.Patient(mrn="X1", family_name="Ito", given_name="Aki", birth_date=date(1950, 1, 2)))
    with pytest.raises(ValueError, match="already holds patients"):
        generate_demo(engine, patients=10, today=TODAY)
    assert _value(engine, "SELECT COUNT(*) FROM app_user") == 0  # nothing written
    assert _value(engine, "SELECT COUNT(*) FROM patient") == 1


def test_refuses_a_second_run(engine):
    generate_demo(engine, patients=10, today=TODAY)
    with pytest.raises(ValueError, match="already holds patients"):
        generate_demo(engine, patients=10, today=TODAY)
    assert _value(engine, "SELECT COUNT(*) FROM patient") == 10


def _dump(engine) -> dict[str, list[tuple]]:
    """Every generated row, in a backend-neutral form (password hashes are salted, so left out)."""
    def norm(value):
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, str) and len(value) == 26 and value[4] == "-" and value[10] == " ":
            return datetime.fromisoformat(value).isoformat(" ")  # SQLite's stored timestamp
        return value

    out = {}
    for table in (*FILLED_TABLES, "app_user"):
        columns = [c.name for c in TABLES[table].columns if c.name != "password_hash"]
        key = "patient_id" if table == "patient_state" else "id"
        out[table] = [tuple(norm(v) for v in row)
                      for row in _rows(engine, f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}")]
    return out


def test_same_seed_gives_the_same_data_on_any_backend_and_with_the_producer_thread(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "CHUNK", 120)  # several blocks, so the producer thread has work to hand over
    generate_demo(engine, patients=300, seed=5, today=TODAY, parallel=True)
    other = get_engine(f"sqlite:///{tmp_path / 'second.db'}")
    upgrade(other)
    generate_demo(other, patients=300, seed=5, today=TODAY, parallel=False)
    mine, theirs = _dump(engine), _dump(other)
    for table in mine:
        assert mine[table] == theirs[table], table

    third = get_engine(f"sqlite:///{tmp_path / 'third.db'}")
    upgrade(third)
    generate_demo(third, patients=300, seed=6, today=TODAY)
    assert _dump(third)["lab_result"] != mine["lab_result"]


def test_schema_is_still_the_alembic_head_and_settings_are_restored(db_url):
    from db.engine import SQLITE_CACHE_KIB

    engine = get_engine(db_url)
    generate_demo(engine, patients=50, today=TODAY)
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("alembic")), "-x", f"url={db_url}", "check"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No new upgrade operations detected" in proc.stdout + proc.stderr
    if engine.dialect.name == "sqlite":
        connections = [engine.connect() for _ in range(3)]  # the pooled one the load used among them
        try:
            for conn in connections:
                settings = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                            for p in ("journal_mode", "synchronous", "foreign_keys", "cache_size", "threads")}
                assert settings == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "cache_size": -SQLITE_CACHE_KIB,
                                    "threads": 0}
        finally:
            for conn in connections:
                conn.close()
    else:  # the sequences moved past the explicit ids: the next ordinary insert works
        with write_session(engine) as session:
            session.add(m.Patient(mrn="NEW1", family_name="Ito", given_name="Aki", birth_date=date(1950, 1, 2)))
        assert _value(engine, "SELECT id FROM patient WHERE mrn = 'NEW1'") == 51


# ---------------------------------------------------------------------------
# The pipeline consumes it
# ---------------------------------------------------------------------------


def test_the_recompute_consumes_the_demo(cohort):
    from surveillance.pipeline import recompute

    engine, _ = cohort
    result = recompute(engine, full=True, now=NOW)
    assert result.status == "success" and result.patients == 2000
    assert _value(engine, "SELECT COUNT(*) FROM risk_snapshot") == 2000
    rules = Counter(dict(_rows(engine, "SELECT rule_id, COUNT(*) FROM alert GROUP BY rule_id")))
    assert len(rules) >= 12, rules
    assert {"imaging-overdue", "sins-potentially-unstable", "escc-high-grade", "bma-indicated-none",
            "bma-dose-overdue", "board-candidate"} <= set(rules)
    tiers = {t for (t,) in _rows(engine, "SELECT DISTINCT tier FROM risk_snapshot")}
    assert {"high", "intermediate", "low", "screening"} <= tiers
    overdue = _value(engine, "SELECT COUNT(*) FROM risk_snapshot WHERE active AND next_imaging_due < :d", d=TODAY)
    active = _value(engine, "SELECT COUNT(*) FROM risk_snapshot WHERE active")
    assert 0.1 <= overdue / active <= 0.5  # some, not most, are overdue
