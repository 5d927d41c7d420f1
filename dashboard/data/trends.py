"""Reads for the Trends page (role lead): aggregates only, never a patient row.

Every query here ends in a ``GROUP BY`` and returns counts per month, tier,
severity or follow-up month — no identifier ever leaves the database — and
every result is small-cell suppressed by :mod:`surveillance.trends` before it
is returned, so a page cannot show a count of 1–4 by mistake.  Cached per
filter combination and per recompute run (``data_version()``); aggregates are
the same for every lead, so the scope key is the role only.

Sources: ``sre_monthly`` and ``person_time_monthly`` (the pipeline's trend
tables) for the SRE rates; with a department filter, which those tables do not
carry, the same numbers are aggregated from ``skeletal_event`` and ``patient``
(``tests/dashboard/test_trends_page.py`` proves both paths agree).  The
incidence curves, BMA and alert-response measures read the monthly tables of
:mod:`surveillance.trend_tables` (``sre_incidence``, ``bma_monthly``,
``alert_response_monthly``, per site and department) while they are current —
rebuilt as of a day at most one day from today, in the same month — and otherwise aggregate
the fact tables, the snapshots and the alerts directly with the same
definitions (the tests prove both paths agree).  Imaging and the alert burden
(current workload) always read the snapshots and the alerts directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd
import streamlit as st
from sqlalchemy import text
from sqlalchemy.engine import Connection

from dashboard.data.common import CACHE_SECONDS, data_version, engine
from db.models import ACTIVE_ALERT_SQL as ACTIVE_ALERT  # spelled as the partial alert indexes are
from surveillance import trend_tables as tables
from surveillance import trends as calc
from surveillance.access import Action, Identity, require
from surveillance.scoring.sre import DEFINITIONS, SreDefinition, SreType

#: Tiers in display order; ``unknown`` = no tier recorded while the patient was active.
TIERS = ("high", "intermediate", "low", "screening", "none", "unknown")
SEVERITIES = ("critical", "high", "routine", "info")
#: Period choices (months, ending with the current month).
PERIODS = tables.PERIOD_MONTHS
#: Site code of patients without a coded primary site in the trend tables.
NO_SITE = tables.NO_SITE
#: The monthly tables serve the page while they describe today or at most this many days before (same month).
MAX_TABLE_AGE_DAYS = 1


def sre_types(definition: str) -> list[str]:
    """Event types counted by ``definition`` (core or extended), in the vocabulary's order."""
    counted = DEFINITIONS[SreDefinition(definition)]
    return [t.value for t in SreType if t in counted]


def period_months(months: int, today: date) -> list[str]:
    last = pd.Period(today, "M")
    return [str(last - k) for k in range(months - 1, -1, -1)]


# ---------------------------------------------------------------------------
# SQL that reads the same on SQLite and PostgreSQL
# ---------------------------------------------------------------------------


class _Sql:
    def __init__(self, conn: Connection):
        self.pg = conn.dialect.name == "postgresql"
        if self.pg:
            # JIT compilation costs more than these one-off aggregates, and the planner, which cannot
            # guess how few groups a CASE produces, would otherwise sort 100k rows on disk.
            conn.exec_driver_sql("SET LOCAL jit = off")
            conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")

    def month(self, column: str, *, timestamp: bool = False) -> str:
        """The month of a date (or UTC timestamp) column; its text starts ``YYYY-MM`` (see ``_months_text``).

        PostgreSQL: ``date_trunc`` on a plain timestamp, three times cheaper than ``to_char``.
        """
        if not self.pg:
            return f"substr({column}, 1, 7)"
        plain = f"({column} AT TIME ZONE 'UTC')" if timestamp else f"CAST({column} AS TIMESTAMP)"
        return f"date_trunc('month', {plain})"

    def days(self, later: str, earlier: str) -> str:
        return f"({later} - {earlier})" if self.pg else f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"

    def hours(self, later: str, earlier: str) -> str:
        if self.pg:
            return f"(EXTRACT(EPOCH FROM ({later} - {earlier})) / 3600.0)"
        return f"((julianday({later}) - julianday({earlier})) * 24.0)"

    def plus_days(self, column: str, days: str) -> str:
        return f"({column} + {days})" if self.pg else f"date({column}, '+' || ({days}) || ' days')"

    def date(self, name: str) -> str:
        return f"CAST(:{name} AS DATE)" if self.pg else f":{name}"

    def timestamp(self, name: str) -> str:
        return f"CAST(:{name} AS TIMESTAMPTZ)" if self.pg else f":{name}"

    def least(self, *values: str) -> str:
        """Smallest value, NULL if any is NULL (SQLite's ``min``; PostgreSQL's LEAST would skip NULLs)."""
        return self._null_if_any(values, f"LEAST({', '.join(values)})") if self.pg else f"min({', '.join(values)})"

    def greatest(self, *values: str) -> str:
        return self._null_if_any(values, f"GREATEST({', '.join(values)})") if self.pg else f"max({', '.join(values)})"

    @staticmethod
    def _null_if_any(values, expression: str) -> str:
        return f"CASE WHEN {' OR '.join(f'({v}) IS NULL' for v in values)} THEN NULL ELSE {expression} END"

    def ceil(self, value: str) -> str:
        return f"CEIL({value})" if self.pg else f"(CAST({value} AS INTEGER) + ({value} > CAST({value} AS INTEGER)))"

    def value(self, day: date | datetime) -> date | datetime | str:
        if self.pg:
            return day
        if isinstance(day, datetime):
            return day.isoformat(sep=" ")
        return day.isoformat()


def _patient_filter(site: str | None, department: str | None, alias: str = "p") -> tuple[str, dict]:
    where, params = ["1 = 1"], {}
    if site == NO_SITE:
        where.append(f"{alias}.primary_site IS NULL")
    elif site:
        where.append(f"{alias}.primary_site = :site")
        params["site"] = site
    if department:
        where.append(f"{alias}.department = :department")
        params["department"] = department
    return " AND ".join(where), params


def _frame(conn: Connection, sql: str, params: dict, columns: list[str]) -> pd.DataFrame:
    rows = conn.execute(text(sql), params).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def _months_text(frame: pd.DataFrame, column: str = "month") -> pd.DataFrame:
    if len(frame):
        frame[column] = frame[column].map(lambda v: str(v)[:7])
    return frame


def _end_on(alias: str = "p") -> str:
    """The day surveillance ended (death, transfer, hold); NULL while active."""
    return f"CASE WHEN {alias}.status = 'active' THEN NULL ELSE COALESCE({alias}.deceased_on, {alias}.status_on) END"


def tables_current(conn: Connection, today: date) -> bool:
    """True when the monthly trend tables describe a day at most one day from ``today`` (the clinic's time zone
    may put the refresh's day ahead of the page's UTC day), in the same month: the months match the page's."""
    as_of = tables.tables_as_of(conn)
    if as_of is None:
        return False
    return (as_of.year, as_of.month) == (today.year, today.month) and abs((today - as_of).days) <= MAX_TABLE_AGE_DAYS


def _table_filter(site: str | None, department: str | None) -> tuple[str, dict]:
    """The WHERE terms of a monthly trend table for the page's filters (sites and departments as stored there)."""
    where, params = ["1 = 1"], {}
    if site:
        where.append("primary_site = :site")
        params["site"] = site
    if department:
        where.append("department = :department")
        params["department"] = department
    return " AND ".join(where), params


# ---------------------------------------------------------------------------
# 0. Filter choices
# ---------------------------------------------------------------------------


@st.cache_data(ttl=300, show_spinner=False)
def _departments(version: int) -> list[str]:
    with engine().connect() as conn:
        rows = conn.execute(
            text("SELECT department FROM patient WHERE department IS NOT NULL GROUP BY department ORDER BY department")
        ).all()
    return [r[0] for r in rows]


def departments(identity: Identity) -> list[str]:
    require(identity, Action.VIEW_TRENDS)
    return _departments(data_version())


# ---------------------------------------------------------------------------
# 1. SRE rates
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SreTrend:
    monthly: calc.CountTable
    by_site: calc.CountTable
    types: tuple[str, ...]
    source: str  # "aggregate" | "facts"


def _sre_counts_from_tables(conn: Connection, sql: _Sql, since: date, site: str | None):
    site_sql = " AND primary_site = :site" if site else ""
    params = {"since": sql.value(since), "site": site}
    events = _frame(
        conn,
        (
            "SELECT month, primary_site, event_type, SUM(events), SUM(emergency_events) FROM sre_monthly "
            f"WHERE month >= {sql.date('since')}{site_sql} GROUP BY month, primary_site, event_type"
        ),
        params,
        ["month", "primary_site", "event_type", "events", "emergency_events"],
    )
    days = _frame(
        conn,
        (
            "SELECT month, primary_site, SUM(patient_days) FROM person_time_monthly "
            f"WHERE month >= {sql.date('since')}{site_sql} GROUP BY month, primary_site"
        ),
        params,
        ["month", "primary_site", "patient_days"],
    )
    return _months_text(events), _months_text(days)


def _sre_counts_from_facts(
    conn: Connection, sql: _Sql, since: date, today: date, site: str | None, department: str | None
):
    """The trend tables' numbers for a cohort they cannot filter (department): the same definitions.

    Patient-days come from how many patients start and end surveillance on each
    day (two small GROUP BYs), turned into a daily census with cumulative sums.
    """
    where, params = _patient_filter(site, department)
    params.update(since=sql.value(since))
    events = _frame(
        conn,
        (
            f"SELECT {sql.month('e.occurred_on')}, COALESCE(p.primary_site, '{NO_SITE}'), e.event_type, COUNT(*), "
            "SUM(CASE WHEN e.emergency THEN 1 ELSE 0 END) FROM skeletal_event e JOIN patient p ON p.id = e.patient_id "
            f"WHERE e.occurred_on >= {sql.date('since')} AND {where} GROUP BY 1, 2, 3"
        ),
        params,
        ["month", "primary_site", "event_type", "events", "emergency_events"],
    )
    events = _months_text(events)
    ends = _frame(
        conn,
        (
            f"SELECT COALESCE(p.primary_site, '{NO_SITE}'), p.registered_on, {_end_on()}, COUNT(*) FROM patient p "
            f"WHERE {where} GROUP BY 1, 2, 3"
        ),
        params,
        ["primary_site", "start", "end", "n"],
    )
    return events, _person_days(ends, since, today)


def _person_days(frame: pd.DataFrame, since: date, today: date) -> pd.DataFrame:
    """Patient-days per month and site from (site, start, end, n), ``since`` to ``today``.

    The trend tables' own census (:func:`surveillance.trend_tables.person_time_rows`),
    on the department's patients grouped by (site, start, end).
    """
    columns = ["month", "primary_site", "patient_days"]
    if not len(frame):
        return pd.DataFrame(columns=columns)
    start = pd.to_datetime(frame["start"].map(lambda v: str(v)[:10])).to_numpy("datetime64[D]")
    end = pd.to_datetime(frame["end"].map(lambda v: None if v is None else str(v)[:10])).to_numpy("datetime64[D]")
    codes, sites = pd.factorize(frame["primary_site"].to_numpy(dtype=object))
    rows = tables.person_time_rows(
        codes.astype(np.int64),
        np.asarray(sites, dtype=object),
        start,
        end,
        np.datetime64(today, "D"),
        since=np.datetime64(since, "D"),
        weight=frame["n"].to_numpy(dtype=np.int64),
    )
    return pd.DataFrame([(month[:7], site, days) for month, site, days in rows], columns=columns)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=64)
def _sre_trend(version: int, site, department, months: int, definition: str, today: str) -> SreTrend:
    day = date.fromisoformat(today)
    period = period_months(months, day)
    since = date.fromisoformat(period[0] + "-01")
    with engine().connect() as conn, conn.begin():
        sql = _Sql(conn)
        if department:
            events, days = _sre_counts_from_facts(conn, sql, since, day, site, department)
            source = "facts"
        else:
            events, days = _sre_counts_from_tables(conn, sql, since, site)
            source = "aggregate"
    types = sre_types(definition)
    monthly, by_site = calc.sre_rate_tables(events, days, months=period, types=types)
    return SreTrend(monthly, by_site, tuple(types), source)


def sre_trend(
    identity: Identity, *, site: str | None, department: str | None, months: int, definition: str, today: date
) -> SreTrend:
    """SREs per 100 patient-years by month and type, emergency share, and rates by primary site."""
    require(identity, Action.VIEW_TRENDS)
    return _sre_trend(data_version(), site, department, months, definition, today.isoformat())


# ---------------------------------------------------------------------------
# 2. Cumulative incidence of the first SRE (death competing) and SRE-free survival
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Incidence:
    curves: calc.Curves
    excluded: int  # patients without a usable end date (e.g. deceased with no date)
    patients: int


def _incidence_sql(sql: _Sql, where: str, types: list[str]) -> str:
    """One row per (tier, follow-up month, outcome) — the per-patient work stays in the database.

    Outcome 1 = first SRE (of ``types``, on or after registration), 2 = death
    first, 0 = censored at transfer, hold or today.  Tier = the current tier,
    or for a patient no longer active the last tier recorded while active.
    """
    type_list = ", ".join(f"'{t}'" for t in types)
    end = "COALESCE(p.deceased_on, p.status_on)"
    # An SRE counts unless recorded after the end of follow-up (an end without a date does not hide it).
    sre_first = f"f.first_on IS NOT NULL AND (p.status = 'active' OR {end} IS NULL OR f.first_on <= {end})"
    stop = f"CASE WHEN {sre_first} THEN f.first_on WHEN p.status = 'active' THEN {sql.date('today')} ELSE {end} END"
    days = sql.days(stop, "p.registered_on")
    return (
        "SELECT tier, CASE WHEN days IS NULL OR days < 0 THEN -1 ELSE (16 * days) / 487 + 1 END AS month, code, "
        "COUNT(*) FROM ("
        "  SELECT CASE WHEN s.tier IS NULL THEN 'unknown' WHEN s.tier = 'inactive' THEN COALESCE(("
        "      SELECT h.tier FROM risk_snapshot_history h WHERE h.patient_id = p.id AND h.tier <> 'inactive' "
        "      ORDER BY h.run_id DESC LIMIT 1), 'unknown') ELSE s.tier END AS tier,"
        f"    CASE WHEN {sre_first} THEN 1 WHEN p.status = 'deceased' THEN 2 ELSE 0 END AS code,"
        f"    {days} AS days"
        "  FROM patient p LEFT JOIN risk_snapshot s ON s.patient_id = p.id"
        "  LEFT JOIN (SELECT e.patient_id, MIN(e.occurred_on) AS first_on FROM skeletal_event e"
        "             JOIN patient q ON q.id = e.patient_id"
        f"            WHERE e.event_type IN ({type_list}) AND e.occurred_on >= q.registered_on"
        "             GROUP BY e.patient_id) f ON f.patient_id = p.id"
        f"  WHERE p.registered_on >= {sql.date('since')} AND {where}"
        ") x GROUP BY 1, 2, 3"
    )


def _incidence_from_tables(conn: Connection, site, department, months: int, definition: str):
    """(tier, follow-up month, outcome, n) of patients registered in the last ``months`` months (one of
    :data:`PERIODS`; 0 = all), from ``sre_incidence``."""
    where, params = _table_filter(site, department)
    params.update(months=months or max(PERIODS), definition=definition, oldest=0 if not months else 1)
    return _frame(
        conn,
        (
            "SELECT tier, follow_up_month, outcome, SUM(patients) FROM sre_incidence "
            "WHERE definition = :definition AND registered_within BETWEEN :oldest AND :months "
            f"AND {where} GROUP BY 1, 2, 3"
        ),
        params,
        ["group", "month", "code", "n"],
    )


def _incidence_from_facts(conn: Connection, sql: _Sql, since: date, day: date, site, department, definition: str):
    where, params = _patient_filter(site, department)
    params.update(today=sql.value(day), since=sql.value(since))
    return _frame(conn, _incidence_sql(sql, where, sre_types(definition)), params, ["group", "month", "code", "n"])


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=64)
def _incidence(version: int, site, department, months: int, definition: str, today: str) -> Incidence:
    day = date.fromisoformat(today)
    since = date.fromisoformat(period_months(months, day)[0] + "-01")
    with engine().connect() as conn, conn.begin():
        sql = _Sql(conn)
        if definition in tables.INCIDENCE_DEFINITIONS and months in PERIODS and tables_current(conn, day):
            frame = _incidence_from_tables(conn, site, department, months, definition)
        else:
            frame = _incidence_from_facts(conn, sql, since, day, site, department, definition)
    frame["month"] = frame["month"].astype(np.int64)
    excluded = int(frame.loc[frame["month"] < 0, "n"].sum())
    frame = frame[frame["month"] >= 0]
    curves = calc.incidence_curves(frame, groups=[t for t in TIERS if t in set(frame["group"])])
    return Incidence(curves, excluded, int(frame["n"].sum()))


def incidence(
    identity: Identity, *, site: str | None, department: str | None, months: int, definition: str, today: date
) -> Incidence:
    """Aalen–Johansen incidence of the first SRE and SRE-free Kaplan–Meier, overall and by tier."""
    require(identity, Action.VIEW_TRENDS)
    return _incidence(data_version(), site, department, months, definition, today.isoformat())


# ---------------------------------------------------------------------------
# 3. Bone-modifying agents
# ---------------------------------------------------------------------------


def bma_allowed_days() -> dict[str, int]:
    """Longest on-time gap after a dose (regimen interval + 7 days): the overdue thresholds of ``bma-dose-overdue``."""
    return tables.bma_allowed_days()


def _bma_sql(sql: _Sql, where: str, allowed: dict[str, int]) -> tuple[str, str]:
    """Two GROUP BYs feeding :func:`surveillance.trends.bma_monthly`.

    Denominator: patients with bone metastasis now recorded (a spinal lesion or
    extraspinal bone metastases, as rule ``bma-indicated-none``), counted from
    registration until death, transfer or hold.  Covered: inside the 90 days
    after an SRE-prevention dose, clipped to that window.  Each dose's cover
    runs to the next dose, so a patient's segments never overlap and are
    counted without DISTINCT: every dose row closes its predecessor's segment
    (one ``LAG``, the only window function), and the last dose's segment comes
    from ``patient_state.bma_last_on``.  A stop after today has not happened (NULL).
    """
    far = "DATE '9999-12-31'" if sql.pg else "'9999-12-31'"
    bone = "(ps.lesion_count > 0 OR COALESCE(ps.extraspinal_bone_metastases, 0) > 0)"

    def stop_month(value: str) -> str:
        return f"CASE WHEN {value} > {sql.date('today')} THEN NULL ELSE {sql.month(value)} END"

    def segment(start: str, stop: str) -> str:
        return (
            f"CASE WHEN x.bone AND x.{start} < x.{stop} THEN {sql.month('x.' + start)} END, "
            f"CASE WHEN x.bone AND x.{start} < x.{stop} THEN {stop_month('x.' + stop)} END"
        )

    # MATERIALIZED: computed columns are evaluated once per row (SQLite would otherwise copy the
    # date arithmetic into every place the outer query uses a column).
    end_on = f"COALESCE({_end_on()}, {far})"
    patients = (
        f"SELECT p.registered_on, {end_on} AS end_on, {bone} AS bone, "
        f"{sql.greatest('ps.bma_last_on', 'p.registered_on')} AS seg_start, "
        f"{sql.least(sql.plus_days('ps.bma_last_on', str(calc.BMA_COVER_DAYS)), end_on)} AS seg_stop "
        f"FROM patient p JOIN patient_state ps ON ps.patient_id = p.id WHERE {where}"
    )
    eligible = (
        f"WITH x AS MATERIALIZED ({patients}) "
        f"SELECT CASE WHEN x.bone THEN {sql.month('x.registered_on')} END, "
        f"CASE WHEN x.bone THEN {stop_month('x.end_on')} END, {segment('seg_start', 'seg_stop')}, COUNT(*) "
        "FROM x GROUP BY 1, 2, 3, 4"
    )
    limit = (
        f"CASE WHEN d.agent = 'zoledronic_acid' AND p.zoledronic_regimen = 'q12w' "
        f"THEN {allowed['zoledronic_q12w']} WHEN d.agent = 'zoledronic_acid' "
        f"THEN {allowed['zoledronic_q4w']} ELSE {allowed['denosumab']} END"
    )
    # The window runs over the narrow dose rows alone (sorting joined rows costs twice as much); the
    # patient's columns are joined to its output.
    doses = (
        "SELECT b.patient_id, b.given_on, b.agent, "
        "LAG(b.given_on) OVER (PARTITION BY b.patient_id ORDER BY b.given_on, b.id) AS prev_on "
        "FROM bma_administration b WHERE b.sre_prevention"
    )
    gaps = (
        f"SELECT d.given_on, {bone} AS bone, {sql.greatest('d.prev_on', 'p.registered_on')} AS seg_start, "
        f"{sql.least(sql.plus_days('d.prev_on', str(calc.BMA_COVER_DAYS)), 'd.given_on', end_on)} AS seg_stop, "
        f"CASE WHEN d.prev_on IS NULL THEN NULL WHEN {sql.days('d.given_on', 'd.prev_on')} <= {limit} THEN 1 "
        f"ELSE 0 END AS on_time FROM ({doses}) d JOIN patient p ON p.id = d.patient_id "
        f"JOIN patient_state ps ON ps.patient_id = p.id WHERE {where}"
    )
    per_dose = (
        f"WITH x AS MATERIALIZED ({gaps}) "
        f"SELECT {segment('seg_start', 'seg_stop')}, {sql.month('x.given_on')}, x.on_time, COUNT(*) "
        "FROM x GROUP BY 1, 2, 3, 4"
    )
    return eligible, per_dose


def _bma_frame(eligible: pd.DataFrame, doses: pd.DataFrame) -> pd.DataFrame:
    """Long (measure, month, n) rows for :func:`surveillance.trends.bma_monthly`."""

    def by(frame: pd.DataFrame, column: str, measure: str) -> pd.DataFrame:
        part = frame.dropna(subset=[column]).groupby(column)["n"].sum()
        return part.rename_axis("month").reset_index().assign(measure=measure)

    segments = pd.concat([eligible[["seg_start", "seg_stop", "n"]], doses[["seg_start", "seg_stop", "n"]]])
    parts = [
        by(eligible, "start", "eligible_start"),
        by(eligible, "stop", "eligible_stop"),
        by(segments, "seg_start", "cover_start"),
        by(segments, "seg_stop", "cover_stop"),
        by(doses.dropna(subset=["on_time"]), "given", "evaluated"),
        by(doses[doses["on_time"] == 1], "given", "on_time"),
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=["measure", "month", "n"])
    return _months_text(pd.concat(parts, ignore_index=True))[["measure", "month", "n"]]


def _bma_from_tables(conn: Connection, site, department) -> pd.DataFrame:
    """Long (measure, month, n) rows for :func:`surveillance.trends.bma_monthly` from ``bma_monthly``."""
    where, params = _table_filter(site, department)
    measures = list(tables.BMA_MEASURES)
    wide = _frame(
        conn,
        (f"SELECT month, {', '.join(f'SUM({m})' for m in measures)} FROM bma_monthly WHERE {where} GROUP BY month"),
        params,
        ["month", *measures],
    )
    long = wide.melt(id_vars="month", value_vars=measures, var_name="measure", value_name="n")
    long = long[long["n"] > 0]
    return _months_text(long.reset_index(drop=True))[["measure", "month", "n"]]


def _bma_from_facts(conn: Connection, sql: _Sql, day: date, site, department) -> pd.DataFrame:
    where, params = _patient_filter(site, department)
    params.update(today=sql.value(day))
    eligible_sql, doses_sql = _bma_sql(sql, where, bma_allowed_days())
    eligible = _frame(conn, eligible_sql, params, ["start", "stop", "seg_start", "seg_stop", "n"])
    doses = _frame(conn, doses_sql, params, ["seg_start", "seg_stop", "given", "on_time", "n"])
    return _bma_frame(eligible, doses)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=64)
def _bma(version: int, site, department, months: int, today: str) -> calc.CountTable:
    day = date.fromisoformat(today)
    with engine().connect() as conn, conn.begin():
        sql = _Sql(conn)
        if tables_current(conn, day):
            frame = _bma_from_tables(conn, site, department)
        else:
            frame = _bma_from_facts(conn, sql, day, site, department)
    return calc.bma_monthly(frame, months=period_months(months, day))


def bma(identity: Identity, *, site: str | None, department: str | None, months: int, today: date) -> calc.CountTable:
    """BMA coverage (month end) and on-time doses per month."""
    require(identity, Action.VIEW_TRENDS)
    return _bma(data_version(), site, department, months, today.isoformat())


# ---------------------------------------------------------------------------
# 4. Imaging adherence (current snapshots)
# ---------------------------------------------------------------------------


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=64)
def _imaging(version: int, site, department, today: str) -> calc.CountTable:
    where, params = _patient_filter(site, department)
    join = " JOIN patient p ON p.id = s.patient_id" if department or site else ""
    with engine().connect() as conn, conn.begin():
        sql = _Sql(conn)
        params.update(today=sql.value(date.fromisoformat(today)))
        overdue = sql.days(sql.date("today"), "s.next_imaging_due")
        bucket = (
            "CASE "
            + " ".join(
                f"WHEN {overdue} <= {hi} THEN '{label}'" for label, _, hi in calc.OVERDUE_BUCKETS if hi is not None
            )
            + f" ELSE '{calc.OVERDUE_BUCKETS[-1][0]}' END"
        )
        frame = _frame(
            conn,
            (
                f"SELECT s.tier, {bucket}, COUNT(*) FROM risk_snapshot s{join} "
                f"WHERE s.active AND s.next_imaging_due IS NOT NULL AND {where if join else '1 = 1'} GROUP BY 1, 2"
            ),
            params,
            ["tier", "bucket", "n"],
        )
    return calc.imaging_table(frame, tiers=[t for t in TIERS if t != "unknown"])


def imaging(identity: Identity, *, site: str | None, department: str | None, today: date) -> calc.CountTable:
    """Active patients with an imaging clock by tier and days overdue."""
    require(identity, Action.VIEW_TRENDS)
    return _imaging(data_version(), site, department, today.isoformat())


# ---------------------------------------------------------------------------
# 5. Clinical inertia: alert response times and burden
# ---------------------------------------------------------------------------


def _alert_sql(sql: _Sql, where: str, join: str) -> str:
    """Per month opened and severity: opened; response and done times as hour histograms; judged vs target.

    Response = acknowledgement, or closing by a person (done, dismissed) when
    never acknowledged.  Done = closed as done (action recorded).  Judged =
    the target window (``ACTION_TARGET_HOURS``) has passed, leaving out alerts
    the pipeline closed inside the window because their condition cleared
    (nothing left to act on); acted = done inside the window.
    """
    targets = calc.ACTION_TARGET_HOURS
    target = "CASE a.severity " + " ".join(f"WHEN '{s}' THEN {h}" for s, h in targets.items()) + " END"
    response_at = (
        "CASE WHEN a.acknowledged_at IS NOT NULL THEN a.acknowledged_at "
        "WHEN a.status IN ('done', 'dismissed') THEN a.closed_at END"
    )

    def bucket(later: str) -> str:
        hours = sql.hours(later, "a.opened_at")
        return (
            f"CASE WHEN {later} IS NULL THEN NULL WHEN {hours} <= 1 THEN 1 WHEN {hours} <= 72 THEN {sql.ceil(hours)} "
            f"ELSE {sql.ceil(f'({hours}) / 24.0')} * 24 END"
        )

    done_at = "CASE WHEN a.status = 'done' THEN a.closed_at END"
    closed_h = sql.hours("a.closed_at", "a.opened_at")
    age_h = sql.hours(sql.timestamp("now"), "a.opened_at")
    judged = (
        f"CASE WHEN {target} IS NULL OR {age_h} < {target} THEN NULL "
        f"WHEN a.status = 'resolved' AND {closed_h} <= {target} THEN NULL "
        f"WHEN a.status = 'done' AND {closed_h} <= {target} THEN 1 ELSE 0 END"
    )
    return (
        f"SELECT {sql.month('a.opened_at', timestamp=True)} AS month, a.severity, {bucket(response_at)} AS response, "
        f"{bucket(done_at)} AS done, {judged} AS judged, COUNT(*) "
        f"FROM alert a{join} WHERE a.opened_at >= {sql.timestamp('since')} AND {where} GROUP BY 1, 2, 3, 4, 5"
    )


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=64)
def _alerts(version: int, site, department, months: int, now: str) -> calc.CountTable:
    moment = datetime.fromisoformat(now)
    period = period_months(months, moment.date())
    since = datetime.fromisoformat(period[0] + "-01T00:00:00+00:00")
    with engine().connect() as conn, conn.begin():
        sql = _Sql(conn)
        if tables_current(conn, moment.date()):
            frame = _alerts_from_tables(conn, sql, since.date(), site, department)
        else:
            frame = _alerts_from_facts(conn, sql, since, moment, site, department)
    frame["bucket"] = frame["bucket"].astype(float)
    return calc.alert_response_table(
        frame, months=period, severities=[s for s in SEVERITIES if s in calc.ACTION_TARGET_HOURS]
    )


def _alerts_from_tables(conn: Connection, sql: _Sql, since: date, site, department) -> pd.DataFrame:
    """(month, severity, measure, bucket, n) of alerts opened since ``since`` from ``alert_response_monthly``."""
    where, params = _table_filter(site, department)
    params.update(since=sql.value(since))
    frame = _frame(
        conn,
        (
            "SELECT month, severity, measure, bucket, SUM(alerts) FROM alert_response_monthly "
            f"WHERE month >= {sql.date('since')} AND {where} GROUP BY 1, 2, 3, 4"
        ),
        params,
        ["month", "severity", "measure", "bucket", "n"],
    )
    return _months_text(frame)


def _alerts_from_facts(
    conn: Connection, sql: _Sql, since: datetime, moment: datetime, site, department
) -> pd.DataFrame:
    where, params = _patient_filter(site, department)
    join = " JOIN patient p ON p.id = a.patient_id" if site or department else ""
    params.update(since=sql.value(since), now=sql.value(moment))
    if not sql.pg:  # stored as ISO text with "+00:00"; compare like with like
        params["since"] = since.isoformat(sep=" ")
    raw = _frame(
        conn,
        _alert_sql(sql, where if join else "1 = 1", join),
        params,
        ["month", "severity", "response", "done", "judged", "n"],
    )
    raw = _months_text(raw)
    parts = [raw.groupby(["month", "severity"], as_index=False)["n"].sum().assign(measure="opened", bucket=0)]
    for measure in ("response", "done"):
        part = raw[raw[measure].notna()].groupby(["month", "severity", measure], as_index=False)["n"].sum()
        parts.append(part.rename(columns={measure: "bucket"}).assign(measure=measure))
    part = raw[raw["judged"].notna()].groupby(["month", "severity", "judged"], as_index=False)["n"].sum()
    parts.append(part.rename(columns={"judged": "bucket"}).assign(measure="judged"))
    return pd.concat(parts, ignore_index=True)


def alert_response(
    identity: Identity, *, site: str | None, department: str | None, months: int, now: datetime
) -> calc.CountTable:
    """Opened, time to response and to action, and share acted on within target, per month and severity."""
    require(identity, Action.VIEW_TRENDS)
    # Minute resolution keeps the cache useful while "now" moves.
    return _alerts(data_version(), site, department, months, now.replace(second=0, microsecond=0).isoformat())


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=64)
def _burden(version: int, site, department) -> calc.CountTable:
    where, params = _patient_filter(site, department)
    with engine().connect() as conn, conn.begin():
        _Sql(conn)
        # Every active alert, read from the partial index that holds all the columns needed (SQLite
        # otherwise picks the status-led one and reads each alert's row: 413 instead of 310 ms at 100k).
        covering = " INDEXED BY ix_alert_rule_status_patient" if conn.dialect.name == "sqlite" else ""
        frame = _frame(
            conn,
            (
                "SELECT COALESCE(a.assigned_to_id, p.assigned_nurse_id), a.severity, COUNT(*) "
                f"FROM alert a{covering} JOIN patient p ON p.id = a.patient_id "
                f"WHERE a.status IN {ACTIVE_ALERT} AND {where} GROUP BY 1, 2"
            ),
            params,
            ["holder_id", "severity", "n"],
        )
        users = {r[0]: (r[1], r[2]) for r in conn.execute(text("SELECT id, display_name, role FROM app_user")).all()}
    frame["holder"] = frame["holder_id"].map(
        lambda v: (
            "unassigned"
            if pd.isna(v)
            else (users.get(int(v), ("", ""))[0] if users.get(int(v), ("", ""))[1] == "nurse" else "other_staff")
        )
    )
    return calc.burden_table(frame[["holder", "severity", "n"]], severities=list(SEVERITIES))


def alert_burden(identity: Identity, *, site: str | None, department: str | None) -> calc.CountTable:
    """Active (open, acknowledged, snoozed) alerts per nurse — the patient's nurse unless reassigned — by severity."""
    require(identity, Action.VIEW_TRENDS)
    return _burden(data_version(), site, department)
