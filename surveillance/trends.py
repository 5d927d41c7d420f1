"""Department trends for leads: rates, cumulative incidence and small-cell suppression (pure).

No database, no Streamlit, no clock: the page's reads (``dashboard/data/trends.py``)
aggregate in SQL and hand counts to these functions.

Definitions (one place; the page captions quote them):

* **Rate** — events per 100 patient-years = ``events / patient_days × 36,525``
  (100 × 365.25 days).  Patient-days are the days a patient is under surveillance:
  registration to death, transfer, hold or today, both ends counted (the
  pipeline's ``person_time_monthly``).  95% intervals for the period rates use
  Byar's approximation to the exact Poisson interval (Rothman & Greenland,
  *Modern Epidemiology*), accurate to a few per cent from one event up.
* **Follow-up month** — time since ``patient.registered_on`` in months of
  365.25 / 12 days; an event on day ``d`` falls in month ``floor(d / 30.4375) + 1``
  and curves step at the end of that month (so nothing happens at time 0).
  Censoring in the same month counts the patient at risk for that month's
  events (the Kaplan–Meier convention for ties).
* **Kaplan–Meier** — ``S(t) = Π (1 − d/n)``; 95% band by the exponential
  Greenwood (log(−log)) formula, as ``lifelines.KaplanMeierFitter``.
* **Aalen–Johansen** — cumulative incidence of the event of interest with a
  competing event: ``F(t) = Σ S(t_j−) d₁ⱼ / nⱼ`` with ``S`` the all-cause
  Kaplan–Meier; variance by the delta method (Collett, *Modelling Survival Data*,
  3rd ed., p. 411) and a log(−log) band, as ``lifelines.AalenJohansenFitter``
  (which jitters tied times of different event types; grouped counts need no
  jitter, the formula is exact for ties).
* **Small cells** — a count of 1–4 is hidden and shown as ``<5``; **0 is shown**
  (it describes nobody).  Wherever counts add up to a shown total (a row's
  total, a period total, emergency + non-emergency = all), a second cell is
  hidden too so the first cannot be recovered by subtraction (complementary
  suppression); such cells are marked ``•``.  Shares and rates built from a
  hidden count are hidden.  Curves are pooled over follow-up months so that
  every step reflects 0 or at least 5 events, and stop when fewer than 5
  patients remain at risk; numbers at risk are shown at landmark months only.
  This guards against recovery by subtraction within a table or series; it is
  not a full audit against linear-programming attacks across tables.
* **Action targets** — :data:`ACTION_TARGET_HOURS`: how soon an alert of each
  severity should be acted on (shared/surveillance-rules.md: critical same day,
  high within a week, routine on the worklist — 30 days here).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

#: Days in 100 patient-years (100 × 365.25).
DAYS_PER_100_PATIENT_YEARS = 36525.0
#: Mean days per month (365.25 / 12): the unit of the follow-up axis.
DAYS_PER_MONTH = 30.4375
#: Counts below this (and above zero) are hidden.
SMALL_CELL = 5
#: How a hidden small count is shown.
SUPPRESSED = "<5"
#: How a cell hidden only so that a small count cannot be recovered by subtraction is shown.
COMPLEMENTARY = "•"
#: How soon an alert should be acted on, by severity (hours).  "info" has no target.
ACTION_TARGET_HOURS: dict[str, int] = {"critical": 24, "high": 7 * 24, "routine": 30 * 24}
#: Days of cover one SRE-prevention dose gives for the coverage measure.
BMA_COVER_DAYS = 90
#: Grace added to the regimen interval for the on-time dose measure.
BMA_GRACE_DAYS = 7
#: Landmark follow-up months for the numbers-at-risk table.
LANDMARK_MONTHS = (0, 6, 12, 18, 24, 36, 48, 60, 72, 84, 96, 108, 120)


def z_value(alpha: float = 0.05) -> float:
    return NormalDist().inv_cdf(1 - alpha / 2)


# ---------------------------------------------------------------------------
# Rates
# ---------------------------------------------------------------------------


def rate_per_100py(events, patient_days) -> np.ndarray:
    """Events per 100 patient-years; NaN where there is no person-time."""
    events = np.asarray(events, dtype=float)
    days = np.asarray(patient_days, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = events / days * DAYS_PER_100_PATIENT_YEARS
    return np.where(days > 0, rate, np.nan)


def poisson_rate_interval(events, patient_days, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) limits of the rate per 100 patient-years: the exact Poisson interval below
    :data:`EXACT_BELOW` events, Byar's approximation above it (within 0.5% there)."""
    x = np.atleast_1d(np.asarray(events, dtype=float))
    z = z_value(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(x > 0, x * (1 - 1 / (9 * x) - z / (3 * np.sqrt(x))) ** 3, 0.0)
        upper = (x + 1) * (1 - 1 / (9 * (x + 1)) + z / (3 * np.sqrt(x + 1))) ** 3
    for i, count in enumerate(x):
        if count < EXACT_BELOW:
            lower[i], upper[i] = _exact_poisson(int(count), alpha)
    return rate_per_100py(lower, patient_days), rate_per_100py(upper, patient_days)


#: Below this many events the exact (Garwood) Poisson interval is computed.
EXACT_BELOW = 20


def _poisson_cdf(k: int, mean: float) -> float:
    term = total = math.exp(-mean)
    for j in range(1, k + 1):
        term *= mean / j
        total += term
    return total


def _exact_poisson(count: int, alpha: float) -> tuple[float, float]:
    """Garwood's exact limits: P(X ≥ count | lower) = α/2 and P(X ≤ count | upper) = α/2, by bisection."""

    def solve(target) -> float:
        lo, hi = 0.0, 10.0 * (count + 5)
        for _ in range(100):
            mid = (lo + hi) / 2
            if target(mid) > 0:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    lower = 0.0 if count == 0 else solve(lambda m: alpha / 2 - (1 - _poisson_cdf(count - 1, m)))
    upper = solve(lambda m: _poisson_cdf(count, m) - alpha / 2)
    return lower, upper


def follow_up_month(days) -> np.ndarray:
    """The follow-up month (1, 2, …) in which day ``days`` after registration falls."""
    return np.floor(np.asarray(days, dtype=float) / DAYS_PER_MONTH).astype(np.int64) + 1


# ---------------------------------------------------------------------------
# Survival from grouped counts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """Distinct times (ascending) with the events, competing events and censorings at each."""

    time: np.ndarray
    events: np.ndarray
    competing: np.ndarray
    censored: np.ndarray

    @property
    def at_risk(self) -> np.ndarray:
        removed = self.events + self.competing + self.censored
        return removed[::-1].cumsum()[::-1]

    @property
    def total(self) -> int:
        return int((self.events + self.competing + self.censored).sum())


def grouped_counts(time, code, weight=None) -> Counts:
    """Sum per distinct time: ``code`` 1 = event of interest, 2 = competing event, 0 = censored.

    ``weight`` (default 1) lets a caller pass counts already grouped in SQL
    (one row per time and code).
    """
    time = np.asarray(time, dtype=float)
    code = np.asarray(code, dtype=np.int64)
    weight = np.ones(len(time), dtype=np.int64) if weight is None else np.asarray(weight, dtype=np.int64)
    if len(time) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Counts(np.zeros(0), empty, empty, empty)
    if not np.isin(code, (0, 1, 2)).all():
        raise ValueError("codes must be 0 (censored), 1 (event) or 2 (competing event)")
    times, index = np.unique(time, return_inverse=True)
    per = [np.bincount(index, weights=weight * (code == k), minlength=len(times)).astype(np.int64) for k in (1, 2, 0)]
    return Counts(times, per[0], per[1], per[2])


def kaplan_meier(counts: Counts, *, alpha: float = 0.05) -> pd.DataFrame:
    """Kaplan–Meier of "no event" where event = ``events`` (``competing`` are censored here; add them first
    to make a composite endpoint).  Columns: time, at_risk, events, censored, estimate, lower, upper; a first
    row at time 0 with estimate 1."""
    n = counts.at_risk.astype(float)
    d = counts.events.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        survival = np.cumprod(1 - d / n)
        greenwood_terms = d / (n * (n - d))
    greenwood = np.cumsum(np.where(np.isinf(greenwood_terms), 0.0, np.nan_to_num(greenwood_terms)))
    z = z_value(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.log(survival)
        lower = np.exp(-np.exp(np.log(-log_s) - z * np.sqrt(greenwood) / log_s))
        upper = np.exp(-np.exp(np.log(-log_s) + z * np.sqrt(greenwood) / log_s))
    lower = np.where(np.isnan(lower), 1.0, lower)  # S = 1: no uncertainty yet (lifelines fills 1 too)
    upper = np.where(np.isnan(upper), 1.0, upper)
    return _with_origin(
        pd.DataFrame({
            "time": counts.time, "at_risk": counts.at_risk, "events": counts.events,
            "censored": counts.censored + counts.competing,
            "estimate": survival, "lower": lower, "upper": upper,
        }),
        estimate=1.0,
    )


def aalen_johansen(counts: Counts, *, alpha: float = 0.05) -> pd.DataFrame:
    """Cumulative incidence of ``events`` with ``competing`` as a competing risk.

    Columns: time, at_risk, events, competing, censored, estimate, variance, lower, upper; a first row at
    time 0 with estimate 0.  The band is missing where the estimate is 0 or the variance is undefined.
    """
    n = counts.at_risk.astype(float)
    d1 = counts.events.astype(float)
    d = (counts.events + counts.competing).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        overall = np.cumprod(1 - d / n)
        lag = np.concatenate([[1.0], overall[:-1]])
        cif = np.cumsum(lag * d1 / n)
        # Var F(t) = Σ_j≤t (F(t)−F_j)² d_j/(n_j(n_j−d_j)) + Σ S_j−² d1_j(n_j−d1_j)/n_j³ − 2 Σ (F(t)−F_j) S_j− d1_j/n_j²
        a = d / (n * (n - d))
        b = lag**2 * d1 * (n - d1) / n**3
        c = lag * d1 / n**2
        first = cif**2 * np.cumsum(a) - 2 * cif * np.cumsum(a * cif) + np.cumsum(a * cif**2)
        third = cif * np.cumsum(c) - np.cumsum(c * cif)
        variance = first + np.cumsum(b) - 2 * third
        z = z_value(alpha)
        transformed = np.log(-np.log(cif))
        se = np.sqrt(variance) / (cif * np.abs(np.log(cif)))
        lower = np.exp(-np.exp(transformed + z * se))
        upper = np.exp(-np.exp(transformed - z * se))
    frame = pd.DataFrame({
        "time": counts.time, "at_risk": counts.at_risk, "events": counts.events, "competing": counts.competing,
        "censored": counts.censored, "estimate": cif, "variance": variance,
        "lower": np.where(cif > 0, lower, np.nan), "upper": np.where(cif > 0, upper, np.nan),
    })
    return _with_origin(frame, estimate=0.0)


def _with_origin(frame: pd.DataFrame, *, estimate: float) -> pd.DataFrame:
    if len(frame) and frame["time"].iloc[0] == 0:
        return frame.reset_index(drop=True)
    at_risk = int(frame["at_risk"].iloc[0]) if len(frame) else 0
    origin = {c: 0 for c in frame.columns} | {"time": 0.0, "at_risk": at_risk, "estimate": estimate,
                                               "lower": estimate if estimate == 1.0 else np.nan,
                                               "upper": estimate if estimate == 1.0 else np.nan}
    if "variance" in frame.columns:
        origin["variance"] = 0.0
    return pd.concat([pd.DataFrame([origin]), frame], ignore_index=True)


def pool_for_disclosure(counts: Counts, *, minimum: int = SMALL_CELL) -> Counts:
    """Merge consecutive times so every step has 0 or ≥ ``minimum`` events and 0 or ≥ ``minimum`` competing events.

    A pooled step sits at the last time it covers; censorings inside it count
    as at risk for its events (the same convention as ties).  A remainder with
    1–4 events at the end joins the step before; if the whole series has 1–4
    events, they are pooled into one step that :func:`curve_is_disclosive`
    then rejects.
    """
    if not len(counts.time):
        return counts
    def fine(bucket: list[int]) -> bool:
        e, c = int(counts.events[bucket].sum()), int(counts.competing[bucket].sum())
        return (e == 0 or e >= minimum) and (c == 0 or c >= minimum)

    buckets: list[list[int]] = []
    current: list[int] = []
    for i in range(len(counts.time)):
        current.append(i)
        if fine(current):
            buckets.append(current)
            current = []
    while current and buckets and not fine(current):
        current = buckets.pop() + current
    if current:
        buckets.append(current)
    time = np.array([counts.time[b[-1]] for b in buckets], dtype=float)
    return Counts(
        time,
        np.array([counts.events[b].sum() for b in buckets], dtype=np.int64),
        np.array([counts.competing[b].sum() for b in buckets], dtype=np.int64),
        np.array([counts.censored[b].sum() for b in buckets], dtype=np.int64),
    )


def curve_is_disclosive(counts: Counts, *, minimum: int = SMALL_CELL) -> bool:
    """True when a curve cannot be shown: fewer than ``minimum`` patients, or a step with 1–4 events."""
    if counts.total < minimum:
        return True
    for values in (counts.events, counts.competing):
        if ((values > 0) & (values < minimum)).any():
            return True
    return False


def truncate_at_risk(curve: pd.DataFrame, *, minimum: int = SMALL_CELL) -> pd.DataFrame:
    """Drop the tail of a curve where fewer than ``minimum`` patients remain at risk."""
    keep = curve["at_risk"].to_numpy() >= minimum
    keep[0] = True
    if not keep.all():
        keep[np.argmin(keep):] = False
    return curve[keep].reset_index(drop=True)


def at_risk_at(counts: Counts, months: Iterable[int]) -> list[int]:
    """Patients still at risk at the start of each landmark month (followed for at least that long)."""
    out = []
    for month in months:
        out.append(int(counts.at_risk[counts.time > month][0]) if (counts.time > month).any() else 0)
    return out


# ---------------------------------------------------------------------------
# Small-cell suppression
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Suppression:
    """Which cells of a count table are hidden: ``primary`` (1–4) and ``complementary`` (to stop subtraction)."""

    primary: pd.DataFrame
    complementary: pd.DataFrame

    @property
    def hidden(self) -> pd.DataFrame:
        return self.primary | self.complementary


def suppress(
    table: pd.DataFrame,
    *,
    row_groups: Sequence[tuple[Sequence[str], str]] = (),
    total_row: object | None = None,
    minimum: int = SMALL_CELL,
    force: pd.DataFrame | None = None,
) -> Suppression:
    """Hide small counts, and enough other cells that none can be recovered by subtraction.

    ``table`` holds non-negative integer counts.  ``row_groups`` lists, for each
    row, groups of columns that add up to a total column shown alongside
    (``(["vertebral", "cord", ...], "total")``, ``(["emergency", "other"], "total")``).
    ``total_row`` names a row holding each column's total over the other rows.
    Counts 1..minimum-1 are hidden (primary); then, until nothing changes,
    every sum with exactly one hidden term gets a second hidden term: the
    smallest visible non-zero term (so a hidden cell is never alone in a sum
    whose other terms are shown); and while some combination of sums still
    determines a hidden cell (linear algebra on the hidden cells), one more
    term of that cell's sums is hidden.  ``force`` marks cells to hide whatever
    their value (a total already hidden in a sibling table).
    """
    values = table.to_numpy(dtype=np.int64, copy=True)
    if (values < 0).any():
        raise ValueError("counts must not be negative")
    primary = (values > 0) & (values < minimum)
    hidden = primary.copy()
    if force is not None:
        hidden |= force.reindex(index=table.index, columns=table.columns, fill_value=False).to_numpy(dtype=bool)
    columns = {c: i for i, c in enumerate(table.columns)}
    rows = {r: i for i, r in enumerate(table.index)}
    equations: list[list[tuple[int, int]]] = []
    for r in range(len(table.index)):
        for members, total in row_groups:
            equations.append([(r, columns[m]) for m in members] + [(r, columns[total])])
    if total_row is not None:
        t = rows[total_row]
        for c in range(len(table.columns)):
            equations.append([(r, c) for r in range(len(table.index)) if r != t] + [(t, c)])
    while True:
        changed = True
        while changed:
            changed = False
            for terms in equations:
                if sum(hidden[t] for t in terms) == 1:
                    changed |= _hide_partner(terms, hidden, values)
        # Sums and differences of several lines can still pin a cell down (a hidden cell alone in the
        # combination); hide one more cell on a line of each such cell and check again.
        pinned = _pinned(equations, hidden)
        if not pinned or not any(_hide_partner(t, hidden, values) for t in equations if pinned[0] in t):
            break
    return Suppression(
        pd.DataFrame(primary, index=table.index, columns=table.columns),
        pd.DataFrame(hidden & ~primary, index=table.index, columns=table.columns),
    )


def _hide_partner(terms, hidden: np.ndarray, values: np.ndarray) -> bool:
    """Hide the smallest visible non-zero term of a sum (else any visible term); False if none is left."""
    visible = [t for t in terms if not hidden[t]]
    if not visible:
        return False
    nonzero = [t for t in visible if values[t] > 0]
    pick = min(nonzero or visible, key=lambda t: (values[t], t))
    hidden[pick] = True
    return True


def _pinned(equations, hidden: np.ndarray) -> list[tuple[int, int]]:
    """Hidden cells whose value follows from the shown ones through any combination of the sums.

    The hidden cells satisfy ``A x = b`` (``b`` from shown cells); a cell is
    determined exactly when every solution agrees on it, i.e. when the null
    space of ``A`` is zero in its coordinate.
    """
    cells = sorted({t for terms in equations for t in terms if hidden[t]})
    if not cells:
        return []
    position = {cell: k for k, cell in enumerate(cells)}
    rows = []
    for terms in equations:
        row = np.zeros(len(cells))
        for k, term in enumerate(terms):
            if term in position:
                row[position[term]] = -1.0 if k == len(terms) - 1 else 1.0
        if row.any():
            rows.append(row)
    if not rows:
        return []
    matrix = np.array(rows)
    _, singular, vt = np.linalg.svd(matrix)
    rank = int((singular > 1e-9).sum())
    null = vt[rank:].T
    return [cell for cell, k in position.items() if null.shape[1] == 0 or np.abs(null[k]).max() < 1e-9]


def recoverable_cells(table: pd.DataFrame, hidden: pd.DataFrame, *, row_groups=(), total_row=None) -> list[tuple]:
    """Hidden cells that are the only hidden term of some row or column sum ([] when none)."""
    out = []
    for r in table.index:
        for members, total in row_groups:
            terms = [(r, m) for m in members] + [(r, total)]
            shown = [t for t in terms if hidden.loc[t]]
            if len(shown) == 1:
                out.append(shown[0])
    if total_row is not None:
        for c in table.columns:
            terms = [(r, c) for r in table.index]
            shown = [t for t in terms if hidden.loc[t]]
            if len(shown) == 1:
                out.append(shown[0])
    return out


def show_counts(table: pd.DataFrame, suppression: Suppression) -> pd.DataFrame:
    """The table as text: hidden small counts as ``<5``, complementary cells as ``•``, others as integers."""
    out = table.astype(np.int64).astype(object)
    out = out.mask(suppression.primary, SUPPRESSED)
    return out.mask(suppression.complementary, COMPLEMENTARY)


def hide(values: pd.Series | pd.DataFrame, hidden) -> pd.Series | pd.DataFrame:
    """Derived numbers (rates, shares) with NaN where their count is hidden."""
    return values.mask(hidden)


# ---------------------------------------------------------------------------
# Medians from histograms (alert response times)
# ---------------------------------------------------------------------------


def histogram_median(upper_bounds: Sequence[float], counts: Sequence[int]) -> float:
    """The median of values known only by bucket: the upper bound of the bucket holding the middle value.

    Buckets are ``(previous bound, bound]``; reporting the upper bound makes
    the median exact to the bucket width and never optimistic.
    """
    bounds = np.asarray(upper_bounds, dtype=float)
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    order = np.argsort(bounds)
    cumulative = np.cumsum(counts[order])
    return float(bounds[order][np.searchsorted(cumulative, total / 2)])


def response_bucket_hours(hours: float) -> float:
    """Upper bound of the response-time bucket of ``hours``: whole hours up to 72 h, whole days after."""
    if hours <= 72:
        return float(max(1, np.ceil(hours)))
    return float(np.ceil(hours / 24) * 24)


# ---------------------------------------------------------------------------
# Page tables: counts in, suppressed tables and derived numbers out
# ---------------------------------------------------------------------------

#: Column of the period totals row in the monthly tables.
PERIOD = "period"
#: Row of the all-groups total in the per-group tables.
ALL = "all"


@dataclass(frozen=True)
class CountTable:
    """Counts (``counts``), which are hidden (``suppression``) and numbers derived from visible counts (``derived``)."""

    counts: pd.DataFrame
    suppression: Suppression
    derived: pd.DataFrame


def _share(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (numerator.astype(float) / denominator.astype(float)).where(denominator > 0)


def sre_rate_tables(
    events: pd.DataFrame, person_days: pd.DataFrame, *, months: Sequence[str], types: Sequence[str],
) -> tuple[CountTable, CountTable]:
    """SRE counts and rates by month and type, and by primary site over the period.

    ``events``: month (``YYYY-MM``), primary_site, event_type, events, emergency_events;
    ``person_days``: month, primary_site, patient_days.  Types outside ``types``
    (the chosen definition) are ignored.  Returns (monthly, by_site):

    * monthly — rows = months + :data:`PERIOD`; counts = each type, ``total``,
      ``emergency``, ``non_emergency``; derived = ``patient_days``, ``rate_<type>``,
      ``rate_total``, ``emergency_share``;
    * by_site — rows = sites + :data:`ALL`; counts = ``events``; derived =
      ``patient_days``, ``rate``, ``lower``, ``upper``.

    The two tables share the grand total, so it is hidden in both or neither.
    """
    types = list(types)
    events = events[events["event_type"].isin(types)]
    grid = pd.DataFrame(0, index=list(months), columns=types, dtype=np.int64)
    if len(events):
        pivot = events.pivot_table(index="month", columns="event_type", values="events", aggfunc="sum", fill_value=0)
        grid = grid.add(pivot.reindex(index=grid.index, columns=types, fill_value=0), fill_value=0).astype(np.int64)
    emergency = events.groupby("month")["emergency_events"].sum().reindex(grid.index, fill_value=0).astype(np.int64)
    monthly = grid.copy()
    monthly["total"] = grid.sum(axis=1)
    monthly["emergency"] = emergency
    monthly["non_emergency"] = monthly["total"] - monthly["emergency"]
    monthly.loc[PERIOD] = monthly.sum(axis=0)
    days = person_days.groupby("month")["patient_days"].sum().reindex(list(months), fill_value=0)
    days.loc[PERIOD] = days.sum()

    site_events = events.groupby("primary_site")["events"].sum()
    site_days = person_days.groupby("primary_site")["patient_days"].sum()
    sites = sorted(set(site_events.index) | set(site_days.index))
    by_site = pd.DataFrame({"events": site_events.reindex(sites, fill_value=0).astype(np.int64)})
    by_site.loc[ALL] = int(by_site["events"].sum())
    site_days = site_days.reindex(sites, fill_value=0)
    site_days.loc[ALL] = site_days.sum()

    groups = [(types, "total"), (["emergency", "non_emergency"], "total")]
    forced_monthly = forced_site = None
    while True:
        s_month = suppress(monthly, row_groups=groups, total_row=PERIOD, force=forced_monthly)
        s_site = suppress(by_site, total_row=ALL, force=forced_site)
        grand_month = bool(s_month.hidden.loc[PERIOD, "total"])
        grand_site = bool(s_site.hidden.loc[ALL, "events"])
        if grand_month == grand_site:
            break
        forced_monthly = pd.DataFrame(False, index=monthly.index, columns=monthly.columns)
        forced_monthly.loc[PERIOD, "total"] = True
        forced_site = pd.DataFrame(False, index=by_site.index, columns=by_site.columns)
        forced_site.loc[ALL, "events"] = True

    hidden = s_month.hidden
    derived = pd.DataFrame({"patient_days": days.astype(np.int64)}, index=monthly.index)
    for column in [*types, "total"]:
        derived[f"rate_{column}"] = hide(pd.Series(rate_per_100py(monthly[column], days), index=monthly.index),
                                         hidden[column])
    share = _share(monthly["emergency"], monthly["total"])
    derived["emergency_share"] = share.mask(hidden["emergency"] | hidden["total"] | hidden["non_emergency"])

    lower, upper = poisson_rate_interval(by_site["events"], site_days)
    site_hidden = s_site.hidden["events"]
    site_derived = pd.DataFrame({
        "patient_days": site_days.astype(np.int64),
        "rate": hide(pd.Series(rate_per_100py(by_site["events"], site_days), index=by_site.index), site_hidden),
        "lower": hide(pd.Series(lower, index=by_site.index), site_hidden),
        "upper": hide(pd.Series(upper, index=by_site.index), site_hidden),
    }, index=by_site.index)
    return CountTable(monthly, s_month, derived), CountTable(by_site, s_site, site_derived)


def two_part_table(counts: pd.DataFrame, *, parts: Sequence[tuple[str, str, str, str]]) -> CountTable:
    """Rows of (yes, no, total) triples with a share each: ``parts`` = (yes, no, total, share column).

    ``counts`` holds each ``yes`` and ``total``; ``no`` is computed.  Suppressed
    per row (yes + no = total); a share is shown only when all three are.
    """
    table = pd.DataFrame(index=counts.index)
    for yes, no, total, _ in parts:
        table[yes] = counts[yes].astype(np.int64)
        table[no] = (counts[total] - counts[yes]).astype(np.int64)
        table[total] = counts[total].astype(np.int64)
    s = suppress(table, row_groups=[([yes, no], total) for yes, no, total, _ in parts])
    derived = pd.DataFrame(index=table.index)
    for yes, no, total, share in parts:
        visible = ~(s.hidden[yes] | s.hidden[no] | s.hidden[total])
        derived[share] = _share(table[yes], table[total]).where(visible)
    return CountTable(table, s, derived)


def bma_monthly(frame: pd.DataFrame, *, months: Sequence[str]) -> CountTable:
    """BMA coverage and on-time doses per month from SQL aggregates.

    ``frame`` rows: measure, month, n, where measure is one of
    ``eligible_start`` / ``eligible_stop`` (patients entering / leaving the
    denominator that month), ``cover_start`` / ``cover_stop`` (covered
    segments starting / ending), ``evaluated`` / ``on_time`` (doses with a
    previous dose / given within the interval).  Stops in a month mean "no
    longer counted at the month's end"; the SQL leaves out stops after today.
    Months before the period still feed the running totals.
    """
    months = list(months)
    every = sorted(set(frame["month"]) | set(months)) if len(frame) else months
    pivot = frame.pivot_table(index="month", columns="measure", values="n", aggfunc="sum", fill_value=0) \
        if len(frame) else pd.DataFrame(index=every)
    pivot = pivot.reindex(index=every, fill_value=0)
    for measure in ("eligible_start", "eligible_stop", "cover_start", "cover_stop", "evaluated", "on_time"):
        if measure not in pivot.columns:
            pivot[measure] = 0
    counts = pd.DataFrame({
        "covered": (pivot["cover_start"].cumsum() - pivot["cover_stop"].cumsum()),
        "eligible": (pivot["eligible_start"].cumsum() - pivot["eligible_stop"].cumsum()),
        "on_time": pivot["on_time"],
        "evaluated": pivot["evaluated"],
    }).reindex(months).fillna(0).astype(np.int64)
    return two_part_table(counts, parts=[("covered", "not_covered", "eligible", "coverage"),
                                         ("on_time", "late", "evaluated", "on_time_share")])


#: Overdue-imaging buckets: (label, lowest days overdue, highest) — "not_due" when the due date is in the future.
OVERDUE_BUCKETS = (("not_due", None, -1), ("d0_7", 0, 7), ("d8_30", 8, 30), ("d31_90", 31, 90),
                   ("d91_180", 91, 180), ("d181_plus", 181, None))


def imaging_table(frame: pd.DataFrame, *, tiers: Sequence[str]) -> CountTable:
    """Active patients with an imaging clock by tier and days overdue; share not overdue.

    ``frame`` rows: tier, bucket (a label of :data:`OVERDUE_BUCKETS`), n.
    """
    buckets = [b[0] for b in OVERDUE_BUCKETS]
    table = pd.DataFrame(0, index=list(tiers), columns=buckets, dtype=np.int64)
    if len(frame):
        pivot = frame.pivot_table(index="tier", columns="bucket", values="n", aggfunc="sum", fill_value=0)
        table = table.add(pivot.reindex(index=table.index, columns=buckets, fill_value=0), fill_value=0)
    table = table.astype(np.int64)
    table["total"] = table[buckets].sum(axis=1)
    table = table[table["total"] > 0] if (table["total"] > 0).any() else table.iloc[0:0]
    table.loc[ALL] = table.sum(axis=0) if len(table) else 0
    table = table.astype(np.int64)
    s = suppress(table, row_groups=[(buckets, "total")], total_row=ALL)
    derived = pd.DataFrame({"not_overdue_share": _share(table["not_due"], table["total"]).where(
        ~(s.hidden["not_due"] | s.hidden["total"]))}, index=table.index)
    return CountTable(table, s, derived)


def burden_table(frame: pd.DataFrame, *, severities: Sequence[str]) -> CountTable:
    """Open alerts per holder (rows) and severity (columns), with totals; ``frame``: holder, severity, n."""
    severities = list(severities)
    if len(frame):
        table = frame.pivot_table(index="holder", columns="severity", values="n", aggfunc="sum", fill_value=0)
        table = table.reindex(columns=severities, fill_value=0)
    else:
        table = pd.DataFrame(columns=severities, dtype=np.int64)
    table = table.astype(np.int64)
    table["total"] = table[severities].sum(axis=1)
    table.loc[ALL] = table.sum(axis=0)
    table = table.astype(np.int64)
    s = suppress(table, row_groups=[(severities, "total")], total_row=ALL)
    return CountTable(table, s, pd.DataFrame(index=table.index))


def alert_response_table(frame: pd.DataFrame, *, months: Sequence[str], severities: Sequence[str]) -> CountTable:
    """Clinical-inertia measures per month opened and severity.

    ``frame`` rows: month, severity, measure, bucket, n, with measure one of
    ``opened`` (bucket unused), ``response`` / ``done`` (bucket = upper bound
    of the hours bucket, see :func:`response_bucket_hours`), ``judged``
    (bucket 1 = acted within target, 0 = not).  Medians from fewer than
    :data:`SMALL_CELL` alerts are hidden.
    """
    index = pd.MultiIndex.from_product([list(months), list(severities)], names=["month", "severity"])
    counts = pd.DataFrame(0, index=index, columns=["opened", "responded", "done", "acted", "judged"], dtype=np.int64)
    medians = pd.DataFrame(np.nan, index=index, columns=["median_response_hours", "median_done_hours"])
    if len(frame):
        frame = frame[frame["month"].isin(months) & frame["severity"].isin(severities)]
        opened = frame[frame["measure"] == "opened"].groupby(["month", "severity"])["n"].sum()
        counts["opened"] = opened.reindex(index, fill_value=0)
        judged = frame[frame["measure"] == "judged"]
        counts["judged"] = judged.groupby(["month", "severity"])["n"].sum().reindex(index, fill_value=0)
        counts["acted"] = judged[judged["bucket"] == 1].groupby(["month", "severity"])["n"].sum().reindex(
            index, fill_value=0)
        for measure, count_column, median_column in (("response", "responded", "median_response_hours"),
                                                     ("done", "done", "median_done_hours")):
            part = frame[frame["measure"] == measure]
            counts[count_column] = part.groupby(["month", "severity"])["n"].sum().reindex(index, fill_value=0)
            for key, group in part.groupby(["month", "severity"]):
                medians.loc[key, median_column] = histogram_median(group["bucket"], group["n"])
    counts = counts.astype(np.int64)
    table = two_part_table(counts, parts=[("acted", "not_acted", "judged", "acted_share")])
    extra = counts[["opened", "responded", "done"]]
    s_extra = suppress(extra)
    merged_counts = pd.concat([extra, table.counts], axis=1)
    suppression = Suppression(pd.concat([s_extra.primary, table.suppression.primary], axis=1),
                              pd.concat([s_extra.complementary, table.suppression.complementary], axis=1))
    derived = table.derived.copy()
    derived["median_response_hours"] = medians["median_response_hours"].where(counts["responded"] >= SMALL_CELL)
    derived["median_done_hours"] = medians["median_done_hours"].where(counts["done"] >= SMALL_CELL)
    return CountTable(merged_counts, suppression, derived)


@dataclass(frozen=True)
class Curves:
    """Shown curves per group, the numbers at risk at landmarks, and the groups that could not be shown."""

    incidence: pd.DataFrame  # group, time, estimate, lower, upper (Aalen–Johansen)
    sre_free: pd.DataFrame  # group, time, estimate, lower, upper (Kaplan–Meier, SRE or death)
    at_risk: pd.DataFrame  # index = group; columns = landmark months; counts
    at_risk_suppression: Suppression
    withheld: tuple[str, ...]
    patients: dict[str, int]


def incidence_curves(frame: pd.DataFrame, *, groups: Sequence[str], horizon: int | None = None) -> Curves:
    """Aalen–Johansen and Kaplan–Meier curves per group from (group, month, code, n) counts.

    ``code`` 1 = first SRE, 2 = death without an SRE, 0 = censored; ``month``
    = follow-up month (:func:`follow_up_month`).  The group :data:`ALL` is the
    sum of all groups.  Each curve is pooled (:func:`pool_for_disclosure`) and
    truncated where fewer than 5 remain at risk; a group whose curve would
    still show a step of 1–4 events is withheld.
    """
    columns = ["group", "time", "estimate", "lower", "upper"]
    incidence, sre_free, at_risk_rows, withheld, patients = [], [], {}, [], {}
    top = int(frame["month"].max()) if len(frame) else 0
    horizon = top if horizon is None else min(horizon, top)
    landmarks = [m for m in LANDMARK_MONTHS if m <= max(horizon, 0)]
    for group in [ALL, *groups]:
        part = frame if group == ALL else frame[frame["group"] == group]
        counts = grouped_counts(part["month"], part["code"], part["n"])
        patients[group] = counts.total
        if counts.total == 0:
            continue
        at_risk_rows[group] = at_risk_at(counts, landmarks)
        pooled = pool_for_disclosure(counts)
        composite = pool_for_disclosure(Counts(counts.time, counts.events + counts.competing,
                                               np.zeros_like(counts.events), counts.censored))
        if curve_is_disclosive(pooled) or curve_is_disclosive(composite):
            withheld.append(group)
            continue
        aj = truncate_at_risk(aalen_johansen(pooled))
        km = truncate_at_risk(kaplan_meier(composite))
        incidence.append(aj.assign(group=group)[columns])
        sre_free.append(km.assign(group=group)[columns])
    at_risk = pd.DataFrame.from_dict(at_risk_rows, orient="index", columns=landmarks).astype(np.int64) \
        if at_risk_rows else pd.DataFrame(columns=landmarks, dtype=np.int64)
    empty = pd.DataFrame(columns=columns)
    return Curves(
        pd.concat(incidence, ignore_index=True) if incidence else empty,
        pd.concat(sre_free, ignore_index=True) if sre_free else empty,
        at_risk, suppress(at_risk), tuple(withheld), patients,
    )
