"""Pure trend computations: rates, Kaplan–Meier and Aalen–Johansen (against lifelines), suppression."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
from lifelines import AalenJohansenFitter, KaplanMeierFitter

from surveillance import trends as calc

# ---------------------------------------------------------------------------
# Rates
# ---------------------------------------------------------------------------


def test_rate_per_100_patient_years_by_hand():
    # 3 events over 365.25 patient-days = 3 per patient-year = 300 per 100 patient-years
    assert calc.rate_per_100py(3, 365.25)[()] == pytest.approx(300)
    # 12 events over 20 patients followed a full year each (7305 days) = 60 per 100 patient-years
    assert calc.rate_per_100py(12, 20 * 365.25)[()] == pytest.approx(60)
    # 1 event in 36,525 patient-days = exactly 1 per 100 patient-years
    assert calc.rate_per_100py(1, 36525)[()] == 1.0
    rates = calc.rate_per_100py([0, 5, 2], [1000, 36525, 0])
    assert rates[0] == 0 and rates[1] == 5 and np.isnan(rates[2])


def test_poisson_interval_brackets_the_rate_and_is_close_to_exact():
    # Garwood's exact limits (published tables): 0 → 0–3.689, 1 → 0.0253–5.572, 10 → 4.795–18.39, 100 → 81.36–121.6
    lower, upper = calc.poisson_rate_interval([0, 1, 10, 100], [36525] * 4)
    assert lower[0] == 0 and upper[0] == pytest.approx(3.689, abs=0.001)
    assert lower[1] == pytest.approx(0.0253, abs=0.0001) and upper[1] == pytest.approx(5.572, abs=0.001)
    assert lower[2] == pytest.approx(4.795, abs=0.001) and upper[2] == pytest.approx(18.39, abs=0.01)
    assert lower[3] == pytest.approx(81.36, rel=0.005) and upper[3] == pytest.approx(121.6, rel=0.005)


def test_follow_up_month():
    assert list(calc.follow_up_month([0, 30, 31, 365, 366])) == [1, 1, 2, 12, 13]


def _sre_events(jan_emergency: int) -> pd.DataFrame:
    return pd.DataFrame(
        [
            ("2026-01", "breast", "radiation_to_bone", 6, jan_emergency),
            ("2026-01", "lung_nsclc", "radiation_to_bone", 4, 0),
            ("2026-01", "breast", "hypercalcaemia_of_malignancy", 5, 0),
            ("2026-02", "breast", "spinal_cord_compression", 7, 7),
        ],
        columns=["month", "primary_site", "event_type", "events", "emergency_events"],
    )


DAYS = pd.DataFrame(
    [("2026-01", "breast", 36525), ("2026-01", "lung_nsclc", 36525), ("2026-02", "breast", 36525)],
    columns=["month", "primary_site", "patient_days"],
)
CORE = ["radiation_to_bone", "spinal_cord_compression"]


def test_sre_rate_tables_by_hand():
    monthly, by_site = calc.sre_rate_tables(_sre_events(5), DAYS, months=["2026-01", "2026-02"], types=CORE)
    assert monthly.counts.loc["2026-01", "radiation_to_bone"] == 10  # hypercalcaemia is not a core SRE
    assert monthly.counts.loc["2026-01", "total"] == 10 and monthly.counts.loc[calc.PERIOD, "total"] == 17
    assert monthly.derived.loc["2026-01", "rate_total"] == pytest.approx(10 / 2)  # 10 SREs in 200 patient-years
    assert monthly.derived.loc["2026-02", "rate_total"] == pytest.approx(7)  # 7 in 100
    assert monthly.derived.loc[calc.PERIOD, "rate_total"] == pytest.approx(17 / 3)
    assert monthly.derived.loc["2026-01", "emergency_share"] == 0.5
    assert monthly.derived.loc["2026-02", "emergency_share"] == 1.0  # non-emergency 0 is shown
    assert not monthly.suppression.hidden.any().any()
    # by site: lung 4 is hidden, so breast (13) goes too, and the total of 17 (shown above) stays
    assert by_site.suppression.primary.loc["lung_nsclc", "events"]
    assert by_site.suppression.complementary.loc["breast", "events"]
    assert not by_site.suppression.hidden.loc[calc.ALL, "events"]
    assert np.isnan(by_site.derived.loc["lung_nsclc", "rate"]) and np.isnan(by_site.derived.loc["breast", "rate"])
    assert by_site.derived.loc[calc.ALL, "rate"] == pytest.approx(17 / 3)


def test_small_emergency_count_hides_its_complement_and_the_share():
    monthly, _ = calc.sre_rate_tables(_sre_events(3), DAYS, months=["2026-01", "2026-02"], types=CORE)
    hidden = monthly.suppression.hidden
    assert monthly.suppression.primary.loc["2026-01", "emergency"]
    assert hidden.loc["2026-01", "non_emergency"] or hidden.loc["2026-01", "total"]
    assert np.isnan(monthly.derived.loc["2026-01", "emergency_share"])


# ---------------------------------------------------------------------------
# Kaplan–Meier and Aalen–Johansen against lifelines
# ---------------------------------------------------------------------------


def _data(seed: int, n: int = 80, ties: bool = True):
    rng = np.random.default_rng(seed)
    if ties:  # many ties between events of one type and censorings (lifelines handles those exactly)
        time = rng.integers(1, 30, n).astype(float)
    else:
        time = rng.permutation(np.arange(1, n + 1)).astype(float) * 0.7
    code = rng.choice([0, 1, 2], n, p=[0.4, 0.35, 0.25])
    return time, code


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kaplan_meier_equals_lifelines(seed):
    time, code = _data(seed)
    event = code > 0
    mine = calc.kaplan_meier(calc.grouped_counts(time, event.astype(int))).set_index("time")
    ref = KaplanMeierFitter().fit(time, event)
    assert list(mine.index) == list(ref.survival_function_.index)
    np.testing.assert_allclose(mine["estimate"], ref.survival_function_.iloc[:, 0], atol=1e-9, rtol=0)
    np.testing.assert_allclose(mine["lower"], ref.confidence_interval_.iloc[:, 0], atol=1e-9, rtol=0)
    np.testing.assert_allclose(mine["upper"], ref.confidence_interval_.iloc[:, 1], atol=1e-9, rtol=0)
    np.testing.assert_array_equal(mine["at_risk"].iloc[1:], ref.event_table["at_risk"].iloc[1:])


def test_kaplan_meier_from_counts_equals_per_patient():
    time, code = _data(4)
    grouped = pd.DataFrame({"t": time, "e": (code > 0).astype(int)}).value_counts().reset_index(name="n")
    a = calc.kaplan_meier(calc.grouped_counts(grouped["t"], grouped["e"], grouped["n"]))
    b = calc.kaplan_meier(calc.grouped_counts(time, (code > 0).astype(int)))
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_aalen_johansen_equals_lifelines(seed):
    # lifelines jitters ties between different event types, so its data has none; ties with censoring are fine
    time, code = _data(seed, ties=False)
    mine = calc.aalen_johansen(calc.grouped_counts(time, code)).set_index("time")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no jitter warning: lifelines ran on exactly these times
        ref = AalenJohansenFitter(calculate_variance=True).fit(time, code, event_of_interest=1)
    assert list(mine.index) == list(ref.cumulative_density_.index)
    np.testing.assert_allclose(mine["estimate"], ref.cumulative_density_.iloc[:, 0], atol=1e-9, rtol=0)
    np.testing.assert_allclose(mine["variance"], ref.variance_, atol=1e-9, rtol=0, equal_nan=True)
    band = ref.confidence_interval_
    np.testing.assert_allclose(mine["lower"].iloc[1:], band.min(axis=1).iloc[1:], atol=1e-9, rtol=0, equal_nan=True)
    np.testing.assert_allclose(mine["upper"].iloc[1:], band.max(axis=1).iloc[1:], atol=1e-9, rtol=0, equal_nan=True)


def test_aalen_johansen_on_tied_event_times_by_hand():
    # At t=1 one SRE and one death among 4 at risk; at t=2 one SRE among 2; one censored at 3.
    counts = calc.grouped_counts([1, 1, 2, 3], [1, 2, 1, 0])
    aj = calc.aalen_johansen(counts).set_index("time")["estimate"]
    assert aj[1] == pytest.approx(1 / 4)  # S(0-) = 1, 1 of 4
    assert aj[2] == pytest.approx(1 / 4 + (2 / 4) * (1 / 2))  # S(1) = 1 - 2/4
    assert aj[3] == aj[2]


def test_incidence_without_competing_events_is_one_minus_kaplan_meier():
    time, code = _data(5)
    code = np.where(code == 2, 0, code)
    counts = calc.grouped_counts(time, code)
    np.testing.assert_allclose(
        calc.aalen_johansen(counts)["estimate"], 1 - calc.kaplan_meier(counts)["estimate"], atol=1e-12
    )


# ---------------------------------------------------------------------------
# Small cells
# ---------------------------------------------------------------------------

# Zero is shown: it describes nobody.  A count of 1–4 is hidden ("<5").  A
# second cell is hidden wherever the first could be recovered from a total.


def test_counts_one_to_four_hidden_zero_shown():
    table = pd.DataFrame({"a": [0, 1, 4, 5, 30]})
    shown = calc.show_counts(table, calc.suppress(table))
    assert list(shown["a"]) == [0, "<5", "<5", 5, 30]


def test_complementary_cell_hidden_so_a_row_total_cannot_recover_the_small_one():
    table = pd.DataFrame({"x": [3, 10], "y": [12, 20], "z": [9, 0]})
    table["total"] = table.sum(axis=1)
    s = calc.suppress(table, row_groups=[(["x", "y", "z"], "total")])
    assert s.primary.loc[0, "x"] and s.complementary.loc[0, "z"]  # 9 < 12: the smallest visible non-zero cell
    assert not s.hidden.loc[1].any()
    assert calc.recoverable_cells(table, s.hidden, row_groups=[(["x", "y", "z"], "total")]) == []
    shown = calc.show_counts(table, s)
    assert list(shown.loc[0]) == ["<5", 12, "•", 24]


def test_total_hidden_when_the_only_other_cells_are_zero():
    table = pd.DataFrame({"x": [7], "y": [0], "z": [2]})
    table["total"] = table.sum(axis=1)
    s = calc.suppress(table, row_groups=[(["x", "y", "z"], "total")])
    # z is small; x is the only visible non-zero term, so x goes; then nothing is alone
    assert s.hidden.loc[0, "z"] and s.hidden.loc[0, "x"] and not s.hidden.loc[0, "y"]


def test_rows_and_columns_together_never_leave_a_lone_hidden_cell():
    rng = np.random.default_rng(11)
    for _ in range(200):
        table = pd.DataFrame(rng.choice([0, 0, 1, 2, 3, 4, 5, 8, 20], size=(6, 4)), columns=list("abcd"))
        table["total"] = table.sum(axis=1)
        table.loc["all"] = table.sum(axis=0)
        groups = [(list("abcd"), "total")]
        s = calc.suppress(table, row_groups=groups, total_row="all")
        assert calc.recoverable_cells(table, s.hidden, row_groups=groups, total_row="all") == []
        small = (table > 0) & (table < calc.SMALL_CELL)
        assert not (small & ~s.hidden).any().any(), "every count of 1–4 is hidden"


def _determined(table: pd.DataFrame, hidden: pd.DataFrame, equations) -> list:
    """Hidden cells whose value follows from the shown cells by linear algebra (sums and differences)."""
    cells = [(r, c) for r in table.index for c in table.columns if hidden.loc[r, c]]
    if not cells:
        return []
    position = {cell: k for k, cell in enumerate(cells)}
    rows = []
    for terms in equations:
        row = np.zeros(len(cells))
        for k, cell in enumerate(terms):
            if cell in position:
                row[position[cell]] = -1 if k == len(terms) - 1 else 1
        if row.any():
            rows.append(row)
    matrix = np.array(rows) if rows else np.zeros((0, len(cells)))
    rank = np.linalg.matrix_rank(matrix) if len(rows) else 0
    out = []
    for cell, k in position.items():
        unit = np.zeros(len(cells))
        unit[k] = 1
        if np.linalg.matrix_rank(np.vstack([matrix, unit])) == rank:
            out.append(cell)
    return out


def test_no_hidden_cell_follows_from_the_shown_ones_by_sums_and_differences():
    """Stronger than one line at a time: combining every row and column equation recovers no hidden cell."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        shape = rng.integers(2, 6), rng.integers(2, 5)
        columns = [f"c{k}" for k in range(shape[1])]
        table = pd.DataFrame(rng.choice([0, 0, 1, 2, 3, 4, 5, 7, 12, 40], size=shape), columns=columns)
        table["total"] = table.sum(axis=1)
        table.loc["all"] = table.sum(axis=0)
        s = calc.suppress(table, row_groups=[(columns, "total")], total_row="all")
        equations = [[(r, c) for c in columns] + [(r, "total")] for r in table.index]
        equations += [[(r, c) for r in table.index if r != "all"] + [("all", c)] for c in table.columns]
        assert _determined(table, s.hidden, equations) == [], table


def test_force_hides_a_total_shared_with_another_table():
    table = pd.DataFrame({"n": [10, 12]}, index=["a", "b"])
    table.loc["all"] = table.sum(axis=0)
    force = pd.DataFrame(False, index=table.index, columns=table.columns)
    force.loc["all", "n"] = True
    s = calc.suppress(table, total_row="all", force=force)
    assert s.hidden.loc["all", "n"] and s.hidden[["n"]].sum().item() == 2  # one of the parts goes with it


def test_two_part_table_share_only_when_all_visible():
    counts = pd.DataFrame({"yes": [3, 40, 40], "total": [50, 44, 40]})
    t = calc.two_part_table(counts, parts=[("yes", "no", "total", "share")])
    assert np.isnan(t.derived.loc[0, "share"])  # yes = 3 hidden
    assert np.isnan(t.derived.loc[1, "share"])  # no = 4 hidden
    assert t.derived.loc[2, "share"] == 1.0  # no = 0 shown


# ---------------------------------------------------------------------------
# Curves for the page
# ---------------------------------------------------------------------------


def test_pooling_leaves_only_steps_of_five_or_more_events_and_keeps_totals():
    rng = np.random.default_rng(7)
    time = rng.integers(1, 40, 300)
    code = rng.choice([0, 1, 2], 300, p=[0.6, 0.25, 0.15])
    counts = calc.grouped_counts(time, code)
    pooled = calc.pool_for_disclosure(counts)
    for values in (pooled.events, pooled.competing):
        assert ((values == 0) | (values >= 5)).all()
    assert pooled.events.sum() == counts.events.sum() and pooled.censored.sum() == counts.censored.sum()
    assert pooled.at_risk[0] == counts.at_risk[0] == 300
    assert not calc.curve_is_disclosive(pooled)
    assert calc.curve_is_disclosive(calc.pool_for_disclosure(calc.grouped_counts([1, 2, 3], [1, 1, 0])))


def test_incidence_curves_truncate_and_withhold():
    rows = [("high", m, 1, 3) for m in range(1, 13)] + [("high", m, 0, 20) for m in range(1, 13)]
    rows += [("low", 2, 1, 2), ("low", 5, 0, 1), ("low", 8, 0, 2)]
    frame = pd.DataFrame(rows, columns=["group", "month", "code", "n"])
    curves = calc.incidence_curves(frame, groups=["high", "low"])
    assert "low" in curves.withheld and "high" not in curves.withheld  # low: one step of 2 SREs
    high = curves.incidence[curves.incidence["group"] == "high"]
    assert high["estimate"].is_monotonic_increasing and high["estimate"].iloc[0] == 0
    assert set(curves.incidence["group"]) == {calc.ALL, "high"}
    assert list(curves.at_risk.columns) == [0, 6, 12]
    assert curves.at_risk.loc[calc.ALL, 0] == 12 * 23 + 5 and curves.at_risk.loc["low", 0] == 5
    assert curves.at_risk.loc["low", 6] == 2 and curves.at_risk_suppression.primary.loc["low", 6]
    assert curves.at_risk.loc["low", 12] == 0 and not curves.at_risk_suppression.hidden.loc["low", 12]
    assert curves.patients == {calc.ALL: 281, "high": 276, "low": 5}


def test_histogram_median():
    assert calc.histogram_median([1, 2, 27], [3, 1, 5]) == 27
    assert calc.histogram_median([2, 192], [6, 2]) == 2
    assert np.isnan(calc.histogram_median([], []))
    assert calc.response_bucket_hours(0.2) == 1 and calc.response_bucket_hours(72) == 72
    assert calc.response_bucket_hours(73) == 96


# ---------------------------------------------------------------------------
# The trend tables (surveillance.trend_tables), on SQLite and PostgreSQL
# ---------------------------------------------------------------------------
#
# One small cohort, every expectation worked out by hand from the definitions
# (surveillance/trend_tables.py's docstring), with today = Sunday 10 March 2024:
# February 2024 has 29 days.


TODAY = date(2024, 3, 10)
NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)

# name: (site, department, registered, status, status_on, deceased_on, zoledronic regimen)
PATIENTS = {
    "P1": ("breast", "oncology", date(2024, 1, 30), "active", None, None, None),
    "P2": ("breast", "oncology", date(2024, 2, 15), "deceased", None, date(2024, 2, 20), None),
    "P3": ("lung_nsclc", None, date(2023, 12, 31), "transferred", date(2024, 2, 1), None, "q12w"),
    "P4": (None, "oncology", date(2024, 3, 10), "active", None, None, None),
    "P5": ("prostate", "oncology", date(2024, 3, 11), "active", None, None, None),  # registers tomorrow
    "P6": ("breast", "orthopaedics", date(2024, 2, 29), "on_hold", date(2024, 3, 1), None, None),
    "P7": ("breast", "oncology", date(2024, 1, 10), "deceased", None, date(2024, 1, 5), None),  # death before
    "P8": ("breast", "oncology", date(2024, 3, 9), "transferred", date(2024, 4, 2), None, None),  # end after today
    "P9": ("kidney", "oncology", date(2024, 3, 1), "deceased", None, None, None),  # no date recorded
    "P10": ("thyroid", "oncology", date(2024, 2, 1), "active", None, date(2024, 2, 10), None),  # active wins
    "P11": ("lung_nsclc", "oncology", date(2023, 6, 1), "deceased", None, date(2024, 1, 20), None),
    "P12": ("melanoma", "oncology", date(2019, 1, 15), "deceased", None, date(2019, 3, 1), None),  # 5 years ago
}


def _add_cohort(engine) -> dict[str, int]:
    from db import models as m
    from db.engine import write_session

    ids = {}
    with write_session(engine) as session:
        for k, (name, (site, department, registered, status, status_on, deceased_on, regimen)) in enumerate(
            PATIENTS.items()
        ):
            patient = m.Patient(
                mrn=f"TT{k:03d}",
                family_name="Trend",
                given_name=name,
                primary_site=site,
                department=department,
                registered_on=registered,
                status=status,
                status_on=status_on,
                deceased_on=deceased_on,
                zoledronic_regimen=regimen,
            )
            session.add(patient)
            session.flush()
            ids[name] = patient.id
    return ids


@pytest.fixture
def cohort(engine):
    return engine, _add_cohort(engine)


def _rows(engine, sql: str) -> list[tuple]:
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text(sql)).all()

    def plain(v):
        return str(v)[:10] if isinstance(v, date) or (isinstance(v, str) and len(v) >= 10 and v[4] == "-") else v

    return sorted(tuple(plain(v) for v in row) for row in rows)


@pytest.mark.db
def test_patient_days_by_month_and_site_by_hand(cohort):
    from surveillance.trend_tables import refresh_trend_tables

    engine, _ = cohort
    refresh_trend_tables(engine, TODAY, now=NOW)
    got = _rows(engine, "SELECT month, primary_site, patient_days FROM person_time_monthly")
    assert got == sorted(
        [
            # P1 from 30 Jan: 30–31 Jan, all 29 days of February, 1–10 March
            # P2 15–20 Feb (death day counted); P6 29 Feb and 1 Mar (hold on 1 Mar); P8 9–10 Mar (its end is after today)
            # P7 died before registering: nothing
            ("2024-01-01", "breast", 2),
            ("2024-02-01", "breast", 29 + 6 + 1),
            ("2024-03-01", "breast", 10 + 1 + 2),
            # P11 from 1 Jun 2023 to death on 20 Jan 2024; P3 from 31 Dec 2023 to transfer on 1 Feb 2024
            ("2023-06-01", "lung_nsclc", 30),
            ("2023-07-01", "lung_nsclc", 31),
            ("2023-08-01", "lung_nsclc", 31),
            ("2023-09-01", "lung_nsclc", 30),
            ("2023-10-01", "lung_nsclc", 31),
            ("2023-11-01", "lung_nsclc", 30),
            ("2023-12-01", "lung_nsclc", 31 + 1),
            ("2024-01-01", "lung_nsclc", 20 + 31),
            ("2024-02-01", "lung_nsclc", 1),
            ("2024-03-01", "unknown", 1),  # P4 registered today, no coded site
            ("2019-01-01", "melanoma", 17),  # P12: 15–31 Jan 2019, February, 1 March
            ("2019-02-01", "melanoma", 28),
            ("2019-03-01", "melanoma", 1),
            ("2024-03-01", "kidney", 10),  # P9 deceased without a date: followed to today
            # P10 is active: followed to today whatever its recorded death date; P5 registers tomorrow: nothing
            ("2024-02-01", "thyroid", 29),
            ("2024-03-01", "thyroid", 10),
        ]
    )


@pytest.mark.db
def test_patient_days_add_up_to_each_patients_days_under_surveillance(cohort):
    """Cross-check by a different route: each patient's days, summed per site, whatever the months."""
    from surveillance.trend_tables import refresh_trend_tables

    engine, _ = cohort
    refresh_trend_tables(engine, TODAY, now=NOW)
    per_site: dict[str, int] = {}
    for site, _dept, registered, status, status_on, deceased_on, _ in PATIENTS.values():
        end = None if status == "active" else (deceased_on or status_on)
        last = min(end or TODAY, TODAY)
        per_site[site or "unknown"] = per_site.get(site or "unknown", 0) + max((last - registered).days + 1, 0)
    got = dict(_rows(engine, "SELECT primary_site, SUM(patient_days) FROM person_time_monthly GROUP BY primary_site"))
    assert got == {site: days for site, days in per_site.items() if days}
    assert got["breast"] == 51 and got["lung_nsclc"] == 267  # 51 = 41 + 6 + 2 + 2; 267 = 234 (P11) + 33 (P3)


@pytest.mark.db
def test_sre_counts_by_month_site_type_and_emergency(cohort):
    from db import models as m
    from db.engine import write_session
    from surveillance.trend_tables import refresh_trend_tables

    engine, ids = cohort
    with write_session(engine) as session:
        for name, day, kind, emergency in [
            ("P1", date(2024, 2, 3), "radiation_to_bone", True),
            ("P1", date(2024, 2, 28), "radiation_to_bone", False),
            ("P2", date(2024, 2, 18), "spinal_cord_compression", True),
            ("P3", date(2024, 1, 15), "pathological_fracture_vertebral", False),
            ("P4", date(2024, 3, 10), "hypercalcaemia_of_malignancy", False),
            ("P10", date(2024, 1, 20), "surgery_to_bone", False),
            ("P6", date(2024, 3, 5), "radiation_to_bone", False),
        ]:
            session.add(m.SkeletalEvent(patient_id=ids[name], occurred_on=day, event_type=kind, emergency=emergency))
    refresh_trend_tables(engine, TODAY, now=NOW)
    refresh_trend_tables(engine, TODAY, now=NOW)  # a second refresh replaces, never adds
    got = _rows(engine, "SELECT month, primary_site, event_type, events, emergency_events FROM sre_monthly")
    assert got == sorted(
        [
            ("2024-02-01", "breast", "radiation_to_bone", 2, 1),
            ("2024-02-01", "breast", "spinal_cord_compression", 1, 1),
            ("2024-03-01", "breast", "radiation_to_bone", 1, 0),
            ("2024-01-01", "lung_nsclc", "pathological_fracture_vertebral", 1, 0),
            ("2024-03-01", "unknown", "hypercalcaemia_of_malignancy", 1, 0),
            ("2024-01-01", "thyroid", "surgery_to_bone", 1, 0),
        ]
    )
    # Time to first SRE (core: no hypercalcaemia) — (registered within the last … months, site, department, tier,
    # follow-up month, outcome); all but P12 registered within the last 12 months (April 2023 – March 2024)
    incidence = _rows(
        engine,
        "SELECT registered_within, primary_site, department, tier, follow_up_month, outcome, "
        "patients FROM sre_incidence WHERE definition = 'core'",
    )
    core = [
        (12, "breast", "oncology", "unknown", 1, 1, 1),  # P1: SRE on day 4
        (12, "breast", "oncology", "unknown", 1, 1, 1),  # P2: SRE on day 3, before death
        (12, "lung_nsclc", "", "unknown", 1, 1, 1),  # P3: SRE on day 15, before transfer
        (12, "prostate", "oncology", "unknown", -1, 0, 1),  # P5: registers after today
        (12, "breast", "orthopaedics", "unknown", 1, 0, 1),  # P6: SRE after the hold: censored on day 1
        (12, "breast", "oncology", "unknown", -1, 2, 1),  # P7: death before registration
        (12, "breast", "oncology", "unknown", 1, 0, 1),  # P8: censored at transfer, day 24
        (12, "kidney", "oncology", "unknown", -1, 2, 1),  # P9: death without a date
        (12, "thyroid", "oncology", "unknown", 2, 0, 1),  # P10: SRE before registration; day 38 today
        (12, "lung_nsclc", "oncology", "unknown", 8, 2, 1),  # P11: died on day 233 (floor(233/30.4375)=7)
        (120, "melanoma", "oncology", "unknown", 2, 2, 1),  # P12: January 2019 is 62 months back; died on day 45
    ]

    def grouped(rows):  # P1, P2 and P8 share a group: counts add up
        out: dict[tuple, int] = {}
        for *key, n in rows:
            out[tuple(key)] = out.get(tuple(key), 0) + n
        return out

    assert grouped(incidence) == grouped([*core, (12, "unknown", "oncology", "unknown", 1, 0, 1)])  # P4: day 0
    extended = _rows(
        engine,
        "SELECT registered_within, primary_site, department, tier, follow_up_month, outcome, "
        "patients FROM sre_incidence WHERE definition = 'extended'",
    )
    assert grouped(extended) == grouped([*core, (12, "unknown", "oncology", "unknown", 1, 1, 1)])  # hypercalcaemia


@pytest.mark.db
def test_incidence_tier_is_the_last_tier_while_active(cohort):
    from db import models as m
    from db.engine import write_session
    from surveillance.trend_tables import refresh_trend_tables

    engine, ids = cohort
    with write_session(engine) as session:
        for name, tier in [("P1", "high"), ("P11", "inactive"), ("P2", "inactive")]:
            session.add(
                m.RiskSnapshot(
                    patient_id=ids[name],
                    run_id=3,
                    computed_at=NOW,
                    content_hash="x",
                    active=tier != "inactive",
                    tier=tier,
                )
            )
        for run, tier in [(1, "low"), (2, "intermediate"), (3, "inactive")]:  # P11's last tier while active: run 2
            session.add(
                m.RiskSnapshotHistory(patient_id=ids["P11"], run_id=run, computed_at=NOW, content_hash="x", tier=tier)
            )
    refresh_trend_tables(engine, TODAY, now=NOW)
    tiers = _rows(
        engine,
        "SELECT primary_site, follow_up_month, outcome, tier FROM sre_incidence WHERE definition = 'core' "
        "AND primary_site IN ('lung_nsclc', 'breast') AND department = 'oncology'",
    )
    assert tiers == sorted(
        [
            # (no SRE recorded in this test)
            ("breast", 2, 0, "high"),  # P1: active, day 40 today
            ("breast", 1, 2, "unknown"),  # P2: inactive, never another tier; died on day 5
            ("breast", -1, 2, "unknown"),  # P7: no snapshot; died before registering
            ("breast", 1, 0, "unknown"),  # P8: no snapshot; transferred on day 24
            ("lung_nsclc", 8, 2, "intermediate"),  # P11: the last tier while active
        ]
    )


@pytest.mark.db
def test_bma_measures_by_hand(cohort):
    from db import models as m
    from db.engine import write_session
    from surveillance import trends
    from surveillance.trend_tables import BMA_MEASURES, refresh_trend_tables

    engine, ids = cohort
    # state: (lesions, extraspinal bone metastases, last SRE-prevention dose)
    states = {
        "P11": (1, None, date(2023, 12, 7)),
        "P3": (0, 2, date(2024, 1, 10)),
        "P1": (0, None, date(2024, 3, 5)),
        "P10": (2, None, None),
    }
    doses = [  # denosumab gaps allowed: 35 days; zoledronic acid q12w: 91 days (rule bma-dose-overdue)
        ("P11", date(2023, 11, 1), "denosumab", True),
        ("P11", date(2023, 12, 7), "denosumab", True),  # 36: late
        ("P3", date(2023, 12, 20), "zoledronic_acid", True),
        ("P3", date(2024, 1, 10), "zoledronic_acid", True),
        ("P1", date(2024, 2, 1), "denosumab", True),
        ("P1", date(2024, 3, 5), "denosumab", True),  # 33: on time
        ("P1", date(2024, 2, 20), "denosumab", False),  # osteoporosis dose: not part of any measure
        ("P5", date(2024, 3, 1), "denosumab", True),
        ("P5", date(2024, 3, 8), "denosumab", True),  # no state row
    ]
    with write_session(engine) as session:
        for name, (lesions, extraspinal, last) in states.items():
            session.add(
                m.PatientState(
                    patient_id=ids[name],
                    lesion_count=lesions,
                    extraspinal_bone_metastases=extraspinal,
                    bma_last_on=last,
                )
            )
        for name, day, agent, prevention in doses:
            session.add(
                m.BmaAdministration(
                    patient_id=ids[name],
                    given_on=day,
                    agent=agent,
                    dose_mg=120 if agent == "denosumab" and prevention else 4,
                    sre_prevention=prevention,
                )
            )
    refresh_trend_tables(engine, TODAY, now=NOW)
    got = {
        (r[0], r[1], r[2]): dict(zip(BMA_MEASURES, r[3:], strict=True))
        for r in _rows(engine, f"SELECT month, primary_site, department, {', '.join(BMA_MEASURES)} FROM bma_monthly")
    }

    def row(**counts):
        return {m: counts.get(m, 0) for m in BMA_MEASURES}

    assert got == {
        # P11 (bone, registered Jun 2023, died 20 Jan): cover 1 Nov–7 Dec (cut by the next dose), then 7 Dec–20 Jan
        # (cut by death); the December dose came 36 days after November's: late
        ("2023-06-01", "lung_nsclc", "oncology"): row(eligible_start=1),
        ("2023-11-01", "lung_nsclc", "oncology"): row(cover_start=1),
        ("2023-12-01", "lung_nsclc", "oncology"): row(cover_start=1, cover_stop=1, evaluated=1),
        ("2024-01-01", "lung_nsclc", "oncology"): row(eligible_stop=1, cover_stop=1),
        # P3 (bone, registered 31 Dec, transferred 1 Feb, q12w): the pre-registration dose covers from 31 Dec to
        # the next dose on 10 Jan (21 days later: on time), which covers to the transfer
        ("2023-12-01", "lung_nsclc", ""): row(eligible_start=1, cover_start=1),
        ("2024-01-01", "lung_nsclc", ""): row(cover_start=1, cover_stop=1, evaluated=1, on_time=1),
        ("2024-02-01", "lung_nsclc", ""): row(eligible_stop=1, cover_stop=1),
        # P1: no bone metastasis recorded, so outside the coverage measure; its March dose is on time
        ("2024-03-01", "breast", "oncology"): row(evaluated=1, on_time=1),
        # P10: bone metastasis, no dose
        ("2024-02-01", "thyroid", "oncology"): row(eligible_start=1),
    }
    frame = pd.DataFrame(
        [(m, month[:7], n) for (month, _, _), counts in got.items() for m, n in counts.items() if n],
        columns=["measure", "month", "n"],
    )
    table = trends.bma_monthly(frame, months=["2023-11", "2023-12", "2024-01", "2024-02", "2024-03"]).counts
    # at each month's end (10 Mar for March): eligible = P11 (to Jan), P3 (Dec–Jan), P10 (from Feb)
    assert list(table["eligible"]) == [1, 2, 1, 1, 1]
    # covered: a dose in the 90 days up to the month's end while eligible
    assert list(table["covered"]) == [1, 2, 1, 0, 0]
    assert list(table["evaluated"]) == [0, 1, 1, 0, 1] and list(table["on_time"]) == [0, 0, 1, 0, 1]


@pytest.mark.db
def test_alert_response_buckets_and_targets_by_hand(cohort):
    from db import models as m
    from db.engine import write_session
    from surveillance.trend_tables import refresh_trend_tables

    engine, ids = cohort

    def at(day, hour, minute=0, second=0):
        return datetime(2024, *day, hour, minute, second, tzinfo=UTC)

    # (patient, rule, severity, status, opened, acknowledged, closed)
    alerts = [
        ("P1", "r1", "critical", "done", at((2, 1), 8), at((2, 1), 9, 30), at((2, 1), 20)),  # 1.5 h; done in 12 h
        ("P1", "r2", "high", "dismissed", at((2, 10), 8), None, at((2, 14), 8)),  # response 96 h; not acted
        ("P1", "r3", "routine", "open", at((3, 5), 10), None, None),  # 5 days old: target (30 days) not passed
        ("P1", "r4", "high", "resolved", at((2, 20), 8), None, at((2, 21), 8)),  # cleared within target: not judged
        ("P1", "r5", "info", "open", at((2, 2), 0, 30), None, None),  # no target
        ("P3", "r6", "critical", "acknowledged", at((1, 31), 23, 30), at((2, 1), 0, 30), None),  # exactly 1 h
        ("P1", "r7", "high", "done", at((2, 10), 8), None, at((2, 13), 8, 0, 1)),  # 72 h + 1 s: the 96-h bucket
        ("P1", "r8", "routine", "acknowledged", at((1, 5), 0), at((1, 8), 0), None),  # exactly 72 h
    ]
    with write_session(engine) as session:
        for name, rule, severity, status, opened, acknowledged, closed in alerts:
            session.add(
                m.Alert(
                    patient_id=ids[name],
                    rule_id=rule,
                    rule_version="1",
                    severity=severity,
                    status=status,
                    title=rule,
                    evidence_key=rule,
                    source="test",
                    opened_at=opened,
                    acknowledged_at=acknowledged,
                    closed_at=closed,
                )
            )
    refresh_trend_tables(engine, TODAY, now=NOW)
    got = _rows(
        engine, "SELECT month, severity, primary_site, department, measure, bucket, alerts FROM alert_response_monthly"
    )
    b, onc = "breast", "oncology"
    assert got == sorted(
        [
            ("2024-02-01", "critical", b, onc, "opened", 0, 1),
            ("2024-02-01", "critical", b, onc, "response", 2, 1),
            ("2024-02-01", "critical", b, onc, "done", 12, 1),
            ("2024-02-01", "critical", b, onc, "judged", 1, 1),
            ("2024-02-01", "high", b, onc, "opened", 0, 3),
            ("2024-02-01", "high", b, onc, "response", 96, 2),  # dismissed after 4 days; done after 72 h + 1 s
            ("2024-02-01", "high", b, onc, "done", 96, 1),
            ("2024-02-01", "high", b, onc, "judged", 0, 1),  # dismissed
            ("2024-02-01", "high", b, onc, "judged", 1, 1),  # done within 7 days
            ("2024-03-01", "routine", b, onc, "opened", 0, 1),
            ("2024-02-01", "info", b, onc, "opened", 0, 1),
            ("2024-01-01", "critical", "lung_nsclc", "", "opened", 0, 1),  # opened 31 Jan 23:30 UTC
            ("2024-01-01", "critical", "lung_nsclc", "", "response", 1, 1),
            ("2024-01-01", "critical", "lung_nsclc", "", "judged", 0, 1),  # acknowledged, never done
            ("2024-01-01", "routine", b, onc, "opened", 0, 1),
            ("2024-01-01", "routine", b, onc, "response", 72, 1),
            ("2024-01-01", "routine", b, onc, "judged", 0, 1),
        ]
    )


def test_registered_within_counts_months_back_from_this_month():
    from surveillance.trend_tables import registered_within

    # The last 12 months ending with March 2024 are April 2023 – March 2024; the last 120 start in April 2014.
    days = np.array(
        ["2024-03-31", "2024-03-01", "2023-04-01", "2023-03-31", "2014-04-01", "2014-03-31", "2024-04-02"],
        dtype="datetime64[D]",
    )
    assert registered_within(days, np.datetime64(TODAY)).tolist() == [12, 12, 12, 24, 120, 0, 12]


@pytest.mark.db
def test_refresh_marks_the_tables_current_and_a_core_only_refresh_does_not(cohort):
    from surveillance.trend_tables import refresh_trend_tables, tables_as_of

    engine, _ = cohort
    with engine.connect() as conn:
        assert tables_as_of(conn) is None
    refresh_trend_tables(engine, TODAY, now=NOW)
    with engine.connect() as conn:
        assert tables_as_of(conn) == TODAY
    result = refresh_trend_tables(engine, date(2024, 3, 11), page_tables=False)
    assert "sre_incidence" not in result.rows and result.rows["person_time_monthly"] > 0
    with engine.connect() as conn:
        assert tables_as_of(conn) is None  # the page tables still describe 10 March: not current any more


@pytest.mark.db
def test_refresh_in_slices_of_patients_gives_the_same_tables_as_one_pass(engine):
    """The refresh counts a slice of patients at a time (to bound memory at a million patients).

    Counted one patient at a time or all at once, every table must hold the same rows.
    """
    from datetime import datetime as dt

    from surveillance.demo import generate_demo
    from surveillance.pipeline import recompute
    from surveillance.trend_tables import PAGE_TABLES, refresh_trend_tables

    generate_demo(engine, patients=120, seed=5, today=TODAY)
    recompute(engine, full=True, now=dt(2024, 3, 10, 9, tzinfo=UTC), refresh_trends=False)

    def tables() -> dict[str, list[tuple]]:
        return {table: _rows(engine, f"SELECT * FROM {table}") for table in (*PAGE_TABLES, "sre_monthly")}

    refresh_trend_tables(engine, TODAY, now=NOW, chunk_patients=10**9)
    whole = tables()
    refresh_trend_tables(engine, TODAY, now=NOW, chunk_patients=1)
    assert tables() == whole
    refresh_trend_tables(engine, TODAY, now=NOW, chunk_patients=7)
    assert tables() == whole
    assert all(whole[table] for table in PAGE_TABLES), {t: len(r) for t, r in whole.items()}
