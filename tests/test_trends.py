"""Pure trend computations: rates, Kaplan–Meier and Aalen–Johansen (against lifelines), suppression."""

from __future__ import annotations

import warnings

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
    return pd.DataFrame([
        ("2026-01", "breast", "radiation_to_bone", 6, jan_emergency),
        ("2026-01", "lung_nsclc", "radiation_to_bone", 4, 0),
        ("2026-01", "breast", "hypercalcaemia_of_malignancy", 5, 0),
        ("2026-02", "breast", "spinal_cord_compression", 7, 7),
    ], columns=["month", "primary_site", "event_type", "events", "emergency_events"])


DAYS = pd.DataFrame([("2026-01", "breast", 36525), ("2026-01", "lung_nsclc", 36525), ("2026-02", "breast", 36525)],
                    columns=["month", "primary_site", "patient_days"])
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
    np.testing.assert_allclose(calc.aalen_johansen(counts)["estimate"],
                               1 - calc.kaplan_meier(counts)["estimate"], atol=1e-12)


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
