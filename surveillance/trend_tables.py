"""The leads' trend tables: monthly aggregates rebuilt in one pass after a full recompute.

``refresh_trend_tables(engine, today, now=now)`` reads the facts in a few bulk
queries (plain columns, joined on primary keys), aggregates them with numpy
(day-level difference arrays and ``bincount`` over integer-coded month × site
× … keys, never a loop per month or per patient) and rewrites every trend table
in one write transaction (the SRE counts are one ``INSERT … SELECT … GROUP BY``;
the other tables ``executemany`` on SQLite, ``COPY`` on PostgreSQL):

* ``person_time_monthly`` — patient-days under surveillance per month and
  primary site: from ``registered_on`` to the end of surveillance or ``today``,
  both days counted.  The end is the death date, else the status date, for a
  patient whose status is no longer ``active`` (the Trends page's department
  path uses the same rule); a patient no longer active without either date
  counts to ``today``; an end after ``today`` is cut at ``today``.
* ``sre_monthly`` — skeletal events per month, primary site and type, and how
  many were emergency presentations.
* ``bma_monthly`` — per month, site and department, the running-count inputs of
  the BMA view (:func:`surveillance.trends.bma_monthly`): patients with bone
  metastasis entering / leaving the denominator, 90-day cover segments starting /
  ending, doses after a previous one and those on time.
* ``sre_incidence`` — per registration period (the shortest of the page's
  periods, :data:`PERIOD_MONTHS`, that holds the registration month, counted
  back from the month of ``today``), site, department, SRE definition and tier:
  patients by follow-up month and outcome (first SRE, death first, censored),
  the input of :func:`surveillance.trends.incidence_curves`.
* ``alert_response_monthly`` — per month opened, severity, site and department:
  alerts opened, response and action times as hour buckets, and whether the
  target was met.
* ``trend_refresh`` — the day (``as_of``) and instant these tables describe.

Sites are the case-format code or ``unknown`` (not coded); departments the
patient's department or ``''`` (none).  The definitions are those of
``dashboard/data/trends.py``'s live queries, which the page falls back to when
the tables are not current; ``tests/dashboard/test_trends_page.py`` checks that
both give the same numbers.  No patient identifier is written: every row is a
count over a group.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection, Engine

from db import bulk
from db.engine import derived_write
from surveillance import trends as calc
from surveillance.rules import load_rules
from surveillance.scoring.sre import DEFINITIONS, SreDefinition

#: Site code of patients without a coded primary site.
NO_SITE = "unknown"
#: Department of patients without one.
NO_DEPARTMENT = ""
#: The row of ``trend_refresh`` this module writes.
REFRESH_NAME = "trend_tables"
#: SRE definitions whose first-event counts are precomputed (the page's choices).
INCIDENCE_DEFINITIONS = ("core", "extended")
#: The Trends page's periods (months, ending with the current month); ``sre_incidence`` is bucketed by them.
PERIOD_MONTHS = (12, 24, 36, 60, 120)
#: Alert statuses that count as a person's response when there was no acknowledgement.
RESPONSE_STATUSES = ("done", "dismissed")
#: Tier written for a patient without a snapshot, or inactive with no earlier tier.
UNKNOWN_TIER = "unknown"

#: Stand-in for a missing instant (instants are int64 microseconds since the epoch).
MISSING = np.iinfo(np.int64).min

_DAY = np.timedelta64(1, "D")
_FAR = np.datetime64("9999-12-31", "D")


def bma_allowed_days() -> dict[str, int]:
    """Longest on-time gap after a dose (regimen interval + 7 days): the overdue thresholds of ``bma-dose-overdue``."""
    params = load_rules().rule("bma-dose-overdue").params
    return {
        "denosumab": int(params["denosumab_overdue_days"]),
        "zoledronic_q4w": int(params["zoledronic_q4w_overdue_days"]),
        "zoledronic_q12w": int(params["zoledronic_q12w_overdue_days"]),
    }


@dataclass
class RefreshResult:
    """Rows written per table and seconds per stage (``core``: person-time and SRE counts; ``page``: the rest)."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


#: Columns of each table this module rebuilds from arrays.
COLUMNS: dict[str, tuple[str, ...]] = {
    "person_time_monthly": ("month", "primary_site", "patient_days"),
    "bma_monthly": (
        "month",
        "primary_site",
        "department",
        "eligible_start",
        "eligible_stop",
        "cover_start",
        "cover_stop",
        "evaluated",
        "on_time",
    ),
    "sre_incidence": (
        "registered_within",
        "primary_site",
        "department",
        "definition",
        "tier",
        "follow_up_month",
        "outcome",
        "patients",
    ),
    "alert_response_monthly": ("month", "severity", "primary_site", "department", "measure", "bucket", "alerts"),
}
#: The measures of ``bma_monthly`` (the inputs of :func:`surveillance.trends.bma_monthly`).
BMA_MEASURES = COLUMNS["bma_monthly"][3:]
#: Tables built from per-patient reads, and how many trailing columns of each row are counts.
VALUE_COLUMNS = {"person_time_monthly": 1, "bma_monthly": len(BMA_MEASURES), "sre_incidence": 1,
                 "alert_response_monthly": 1}
PAGE_TABLES = tuple(VALUE_COLUMNS)


#: Patients read at once by the refresh: bounds its memory (a million patients' alerts and doses
#: at once peaked at 3.2 GB), while each slice is still large enough to be set-based.
REFRESH_CHUNK_PATIENTS = 200_000


def _id_slices(conn: Connection, size: int) -> list[tuple[int, int]]:
    """Consecutive patient-id ranges of at most ``size`` patients each, covering every patient."""
    ids = np.asarray([r[0] for r in bulk.fetchall(conn, "SELECT id FROM patient ORDER BY id")], dtype=np.int64)
    return [(int(ids[k]), int(ids[min(k + size, len(ids)) - 1])) for k in range(0, len(ids), size)]


def merge_counts(rows: list[tuple], values: int) -> list[tuple]:
    """Rows with the same key (all but the last ``values`` columns) merged by adding their counts."""
    merged: dict[tuple, list[int]] = {}
    for row in rows:
        key = row[:-values]
        counts = merged.get(key)
        if counts is None:
            merged[key] = list(row[-values:])
        else:
            for k, v in enumerate(row[-values:]):
                counts[k] += v
    return [(*key, *counts) for key, counts in merged.items()]


def refresh_trend_tables(
    engine: Engine,
    today: date,
    *,
    now: datetime | None = None,
    page_tables: bool = True,
    chunk_patients: int = REFRESH_CHUNK_PATIENTS,
) -> RefreshResult:
    """Rebuild the trend tables as of ``today``; alert ages as of ``now`` (default: the start of ``today``, UTC).

    ``page_tables=False`` rebuilds only ``person_time_monthly`` and ``sre_monthly``
    (the Trends page then reads the incidence, BMA and alert-response views live
    until the next full refresh marks the tables current again).  The page tables
    are counted ``chunk_patients`` patients at a time and the counts added up.
    """
    now = now or datetime.combine(today, clock_time(0), UTC)
    day = np.datetime64(today, "D")
    result = RefreshResult()
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        result.seconds[stage] = result.seconds.get(stage, 0.0) + time.perf_counter() - clock
        clock = time.perf_counter()

    rows: dict[str, list[tuple]] = {}
    with engine.connect() as conn:
        if _pg(conn):  # JIT compiling these one-off scans costs more than running them
            bulk.execute(conn, "SET LOCAL jit = off")
        if not page_tables:
            site, sites, start, end = _read_person_time(conn)
            rows["person_time_monthly"] = person_time_rows(site, sites, start, end, day)
            lap("core")
        else:  # one pass over the patients serves every table, a slice of patients at a time
            for table in PAGE_TABLES:
                rows[table] = []
            for lo, hi in _id_slices(conn, chunk_patients):
                where = f"BETWEEN {lo} AND {hi}"
                patients = _read_patients(conn, where)
                rows["person_time_monthly"] += person_time_rows(
                    patients.site, patients.sites, patients.registered, patients.end, day
                )
                lap("core")
                doses = _read_doses(conn, where)
                events = _read_events(conn, where)
                alerts = _read_alerts(conn, where)
                lap("page_read")
                rows["bma_monthly"] += bma_rows(patients, doses, day, bma_allowed_days())
                rows["sre_incidence"] += incidence_rows(patients, events, day)
                rows["alert_response_monthly"] += alert_rows(patients, alerts, now)
                del patients, doses, events, alerts
                lap("page_compute")
            # Every row is a count (or counts) over the slice's patients: the slices add up.
            for table in PAGE_TABLES:
                rows[table] = merge_counts(rows[table], VALUE_COLUMNS[table])
        conn.rollback()
    with derived_write(engine) as conn:
        bulk.execute(conn, "DELETE FROM sre_monthly")
        result.rows["sre_monthly"] = bulk.execute(
            conn,
            "INSERT INTO sre_monthly (month, primary_site, event_type, events, emergency_events) "
            f"SELECT {_month_sql(conn, 'e.occurred_on')}, COALESCE(p.primary_site, '{NO_SITE}'), e.event_type, "
            "COUNT(*), SUM(CASE WHEN e.emergency THEN 1 ELSE 0 END) "
            "FROM skeletal_event e JOIN patient p ON p.id = e.patient_id GROUP BY 1, 2, 3",
        )
        for table, table_rows in rows.items():
            bulk.execute(conn, f"DELETE FROM {table}")
            result.rows[table] = _insert(conn, table, COLUMNS[table], table_rows)
        bulk.execute(conn, "DELETE FROM trend_refresh WHERE name = ?", (REFRESH_NAME,))
        if page_tables:
            bulk.execute(
                conn,
                bulk.insert_sql("trend_refresh", ["name", "as_of", "as_of_at"]),
                (REFRESH_NAME, today.isoformat(), now.astimezone(UTC)),
            )
    lap("write")
    return result


def _insert(conn: Connection, table: str, columns: Sequence[str], rows: list[tuple]) -> int:
    """Bulk insert: ``COPY`` on PostgreSQL (several times faster than ``executemany``), else ``executemany``."""
    if not _pg(conn):
        return bulk.executemany(conn, bulk.insert_sql(table, columns), rows)
    cursor = conn.connection.cursor()
    try:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    finally:
        cursor.close()
    return len(rows)


def tables_as_of(conn: Connection) -> date | None:
    """The day the page tables describe, or None if they were never (or not completely) rebuilt."""
    rows = bulk.fetchall(conn, "SELECT as_of FROM trend_refresh WHERE name = ?", (REFRESH_NAME,))
    if not rows or rows[0][0] is None:
        return None
    value = rows[0][0]
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


# ---------------------------------------------------------------------------
# Bulk reads: few columns, small integer codes, dates as text, instants as integer microseconds
# ---------------------------------------------------------------------------


def _pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _date_sql(conn: Connection, column: str) -> str:
    return f"CAST({column} AS TEXT)" if _pg(conn) else column


def _month_sql(conn: Connection, column: str) -> str:
    return f"CAST(date_trunc('month', {column}) AS date)" if _pg(conn) else f"strftime('%Y-%m-01', {column})"


def _columns(conn: Connection, sql: str, n: int) -> list[np.ndarray]:
    """The result's columns as object arrays (one C-level transpose, not a Python zip)."""
    rows = bulk.fetchall(conn, sql)
    if not rows:
        return [np.zeros(0, dtype=object) for _ in range(n)]
    table = np.array(rows, dtype=object)
    return [table[:, k] for k in range(n)]


def _days(values: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD`` texts (None = NaT) as ``datetime64[D]``."""
    try:
        return np.array(values, dtype="datetime64[D]")
    except (TypeError, ValueError):  # dates, or texts longer than a day
        return np.array([None if v is None else str(v)[:10] for v in values], dtype="datetime64[D]")


def _ints(values: np.ndarray) -> np.ndarray:
    return values.astype(np.int64) if len(values) else np.zeros(0, dtype=np.int64)


def _end_sql(conn: Connection) -> str:
    """End of surveillance: death, else the status date, once the patient is no longer active (NULL while active)."""
    return _date_sql(conn, "CASE WHEN status = 'active' THEN NULL ELSE COALESCE(deceased_on, status_on) END")


def _read_person_time(conn: Connection) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(site codes, sites, registration days, end days) of every patient: the lean read of the core tables."""
    site, start, end = _columns(
        conn,
        f"SELECT COALESCE(primary_site, '{NO_SITE}'), {_date_sql(conn, 'registered_on')}, {_end_sql(conn)} "
        "FROM patient",
        3,
    )
    codes, sites = pd.factorize(site)
    return codes.astype(np.int64), np.asarray(sites, dtype=object), _days(start), _days(end)


#: Patient status codes read by :func:`_read_patients`.
ACTIVE, DECEASED, OTHER_STATUS = 0, 1, 2


@dataclass(frozen=True)
class Patients:
    """One entry per patient, and ``row[id]`` = that patient's position (−1 for no such id)."""

    row: np.ndarray
    site: np.ndarray  # int codes into ``sites``
    sites: np.ndarray  # object: case-format code or NO_SITE
    department: np.ndarray  # int codes into ``departments``
    departments: np.ndarray  # object: department or NO_DEPARTMENT
    registered: np.ndarray  # datetime64[D]
    status: np.ndarray  # ACTIVE | DECEASED | OTHER_STATUS
    end_any: np.ndarray  # COALESCE(deceased_on, status_on), whatever the status
    q12w: np.ndarray  # bool: zoledronic acid every 12 weeks
    has_state: np.ndarray  # bool: a patient_state row exists
    bone: np.ndarray  # bool: bone metastasis recorded (a spinal lesion or extraspinal bone metastases)
    last_dose: np.ndarray  # datetime64[D]: patient_state.bma_last_on
    tier: np.ndarray  # object: current tier, or the last while active, or UNKNOWN_TIER

    def __len__(self) -> int:
        return len(self.site)

    @property
    def end(self) -> np.ndarray:
        """End of surveillance once no longer active; NaT while active (or no date)."""
        return np.where(self.status == ACTIVE, np.datetime64("NaT", "D"), self.end_any)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Positions of patient ids (−1 for an id with no patient)."""
        if not len(ids):
            return np.zeros(0, dtype=np.int64)
        inside = (ids >= 0) & (ids < len(self.row))
        return np.where(inside, self.row[np.where(inside, ids, 0)], -1)


def _read_patients(conn: Connection, ids: str = "IS NOT NULL") -> Patients:
    """Patients with their state (bone metastasis, last dose) and tier: one pass, joined on primary keys."""
    sql = (
        f"SELECT p.id, COALESCE(p.primary_site, '{NO_SITE}'), COALESCE(p.department, '{NO_DEPARTMENT}'), "
        f"{_date_sql(conn, 'p.registered_on')}, "
        # flags = status + 3 × (q12w regimen) + 6 × (0 no state, 1 state, 2 state with bone metastasis)
        f"CASE p.status WHEN 'active' THEN {ACTIVE} WHEN 'deceased' THEN {DECEASED} ELSE {OTHER_STATUS} END "
        "+ CASE WHEN p.zoledronic_regimen = 'q12w' THEN 3 ELSE 0 END "
        "+ CASE WHEN ps.patient_id IS NULL THEN 0 "
        "WHEN ps.lesion_count > 0 OR COALESCE(ps.extraspinal_bone_metastases, 0) > 0 THEN 12 ELSE 6 END, "
        f"{_date_sql(conn, 'COALESCE(p.deceased_on, p.status_on)')}, {_date_sql(conn, 'ps.bma_last_on')}, "
        "CASE WHEN s.tier = 'inactive' THEN COALESCE((SELECT h.tier FROM risk_snapshot_history h "
        "WHERE h.patient_id = p.id AND h.tier <> 'inactive' ORDER BY h.run_id DESC LIMIT 1), "
        f"'{UNKNOWN_TIER}') ELSE COALESCE(s.tier, '{UNKNOWN_TIER}') END "
        "FROM patient p LEFT JOIN patient_state ps ON ps.patient_id = p.id "
        "LEFT JOIN risk_snapshot s ON s.patient_id = p.id "
        f"WHERE p.id {ids}"
    )
    ids, site, department, registered, flags, end_any, last_dose, tier = _columns(conn, sql, 8)
    ids, flags = _ints(ids), _ints(flags)
    status, q12w, state = flags % 3, flags // 3 % 2, flags // 6
    row = np.full(int(ids.max()) + 1 if len(ids) else 1, -1, dtype=np.int64)
    row[ids] = np.arange(len(ids))
    site_code, sites = pd.factorize(site)
    department_code, departments = pd.factorize(department)
    return Patients(
        row=row,
        site=site_code.astype(np.int64),
        sites=np.asarray(sites, dtype=object),
        department=department_code.astype(np.int64),
        departments=np.asarray(departments, dtype=object),
        registered=_days(registered),
        status=status,
        end_any=_days(end_any),
        q12w=q12w == 1,
        has_state=state > 0,
        bone=state == 2,
        last_dose=_days(last_dose),
        tier=tier,
    )


def _read_events(conn: Connection, ids: str = "IS NOT NULL") -> dict[str, np.ndarray]:
    """Skeletal events of the types any precomputed definition counts."""
    counted = sorted({t.value for d in INCIDENCE_DEFINITIONS for t in DEFINITIONS[SreDefinition(d)]})
    listed = ", ".join(f"'{t}'" for t in counted)
    pid, occurred, kind = _columns(
        conn,
        f"SELECT patient_id, {_date_sql(conn, 'occurred_on')}, event_type FROM skeletal_event "
        f"WHERE event_type IN ({listed}) AND patient_id {ids}",
        3,
    )
    return {"patient": _ints(pid), "day": _days(occurred), "type": kind}


def _read_doses(conn: Connection, ids: str = "IS NOT NULL") -> dict[str, np.ndarray]:
    """SRE-prevention doses in (patient, day, id) order: the order that decides which dose follows which."""
    pid, given, zoledronic = _columns(
        conn,
        f"SELECT patient_id, {_date_sql(conn, 'given_on')}, CASE WHEN agent = 'zoledronic_acid' THEN 1 ELSE 0 END "
        f"FROM bma_administration WHERE sre_prevention AND patient_id {ids} ORDER BY patient_id, given_on, id",
        3,
    )
    return {"patient": _ints(pid), "day": _days(given), "zoledronic": _ints(zoledronic) == 1}


def _instant_sql(conn: Connection, column: str) -> str:
    if _pg(conn):
        return f"CAST(ROUND(EXTRACT(EPOCH FROM {column}) * 1000000) AS BIGINT)"
    return column


def _instants(values: np.ndarray) -> np.ndarray:
    """Microseconds since the epoch (int64), :data:`MISSING` for None."""
    present = ~pd.isna(values)
    out = np.full(len(values), MISSING, dtype=np.int64)
    if not present.any():
        return out
    given = values[present]
    if isinstance(given[0], str):  # SQLite: ISO text with an offset
        parsed = pd.to_datetime(pd.Series(given, dtype=object), format="ISO8601", utc=True)
        out[present] = parsed.to_numpy("datetime64[us]").astype(np.int64)
    else:
        out[present] = given.astype(np.int64)
    return out


#: Alert status codes read by :func:`_read_alerts`.
ALERT_STATUSES = ("open", "acknowledged", "snoozed", "resolved", "dismissed", "done")


def _read_alerts(conn: Connection, ids: str = "IS NOT NULL") -> dict[str, np.ndarray]:
    codes = " ".join(f"WHEN '{s}' THEN {k}" for k, s in enumerate(ALERT_STATUSES))
    pid, severity, status, opened, acknowledged, closed = _columns(
        conn,
        f"SELECT patient_id, severity, CASE status {codes} ELSE -1 END, {_instant_sql(conn, 'opened_at')}, "
        f"{_instant_sql(conn, 'acknowledged_at')}, {_instant_sql(conn, 'closed_at')} FROM alert WHERE patient_id {ids}",
        6,
    )
    return {
        "patient": _ints(pid),
        "severity": severity,
        "status": _ints(status),
        "opened": _instants(opened),
        "acknowledged": _instants(acknowledged),
        "closed": _instants(closed),
    }


# ---------------------------------------------------------------------------
# Aggregates (pure: arrays in, rows out)
# ---------------------------------------------------------------------------


def _codes(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes 0..k-1, values): integers of a small range by offset, anything else by hashing."""
    if column.dtype.kind in "iu" and len(column):
        low, high = int(column.min()), int(column.max())
        if high - low < 4 * len(column) + 1024:
            return column - low, np.arange(low, high + 1, dtype=np.int64)
    codes, values = pd.factorize(column)
    return codes, np.asarray(values)


def _group(columns: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct combinations of ``columns`` and, per row, the position of its combination."""
    if not len(columns[0]):
        return [np.zeros(0, dtype=np.asarray(c).dtype) for c in columns], np.zeros(0, dtype=np.int64)
    coded = [_codes(np.asarray(c)) for c in columns]
    dims = tuple(len(values) for _, values in coded)
    flat = np.ravel_multi_index(tuple(codes for codes, _ in coded), dims)
    cells = int(np.prod(dims, dtype=np.float64))
    if cells <= max(4 * len(flat), 1 << 22):  # few possible combinations: count them in place of a sort
        keys = np.flatnonzero(np.bincount(flat, minlength=cells))
        position = np.zeros(cells, dtype=np.int64)
        position[keys] = np.arange(len(keys))
        inverse = position[flat]
    else:
        keys, inverse = np.unique(flat, return_inverse=True)
    index = np.unravel_index(keys, dims)
    return [values[i] for (_, values), i in zip(coded, index, strict=True)], inverse


def _tally(columns: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct combinations of ``columns`` and how many rows have each."""
    keys, inverse = _group(columns)
    return keys, np.bincount(inverse, minlength=len(keys[0])).astype(np.int64)


def _month(days: np.ndarray) -> np.ndarray:
    """Months since 1970-01 (int64) of ``datetime64`` values."""
    return days.astype("datetime64[M]").astype(np.int64)


def _month_text(months: np.ndarray) -> list[str]:
    """Months since 1970-01 → ``YYYY-MM-01`` texts."""
    return [m + "-01" for m in np.datetime_as_string(np.asarray(months, dtype=np.int64).astype("datetime64[M]"))]


def person_time_rows(
    site: np.ndarray,
    sites: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    today: np.datetime64,
    *,
    since: np.datetime64 | None = None,
    weight: np.ndarray | None = None,
) -> list[tuple]:
    """(month, site, patient-days) for every month with person-time, from a daily census per site.

    ``site`` = codes into ``sites``; ``start`` = registration, ``end`` = end of
    surveillance (NaT: still followed).
    Each patient adds +1 to their site's census on ``start`` and −1 the day
    after ``min(end, today)``; a cumulative sum gives the patients under
    surveillance each day, summed per calendar month.  Nothing is counted for a
    patient who starts after that last day.  ``since`` counts only from that
    day on; ``weight`` lets one row stand for several identical patients.
    """
    stop = np.minimum(np.where(np.isnat(end), today, end), today)
    if since is not None:
        start = np.maximum(start, since)
    keep = ~np.isnat(start) & (stop >= start)
    if not keep.any():
        return []
    start, stop, site_code = start[keep], stop[keep], site[keep]
    counts = None if weight is None else np.asarray(weight, dtype=np.int64)[keep]
    first = since if since is not None else start.astype("datetime64[M]").min().astype("datetime64[D]")
    width = int((today - first) // _DAY) + 2  # days first..today, and the day after today
    offset = site_code * width
    size = len(sites) * width
    census = np.bincount(offset + (start - first) // _DAY, weights=counts, minlength=size).astype(np.int64)
    census -= np.bincount(offset + (stop - first) // _DAY + 1, weights=counts, minlength=size).astype(np.int64)
    daily = census.reshape(len(sites), width).cumsum(axis=1)[:, : width - 1]
    months, month_starts = np.unique(_month(first + np.arange(width - 1) * _DAY), return_index=True)
    per_month = np.add.reduceat(daily, month_starts, axis=1)
    site_index, month_index = np.nonzero(per_month)
    labels = _month_text(months)
    return [(labels[m], sites[s], int(per_month[s, m])) for s, m in zip(site_index, month_index, strict=True)]


def bma_rows(
    patients: Patients, doses: dict[str, np.ndarray], today: np.datetime64, allowed: dict[str, int]
) -> list[tuple]:
    """(month, site, department, *BMA_MEASURES) — the running-count inputs of the BMA view.

    Patients with a ``patient_state`` row only.  Denominator: patients with
    bone metastasis recorded now, entering in the month of registration and
    leaving in the month surveillance ended (not yet if after ``today``).
    Cover: each SRE-prevention dose covers up to 90 days, cut at the next dose
    and at the end of surveillance, from registration on; a segment leaves the
    count in the month it ends (not yet if after ``today``); the last dose's
    segment starts at ``patient_state.bma_last_on``.  On time: a dose after a
    previous one, within the regimen's allowed gap (whatever the bone status).
    """
    has_state, bone, registered = patients.has_state, patients.bone, patients.registered
    end = patients.end
    end = np.where(np.isnat(end), _FAR, end)
    cover = np.timedelta64(calc.BMA_COVER_DAYS, "D")
    parts: list[tuple[int, np.ndarray, np.ndarray]] = []  # (measure, patient rows, day)

    def add(measure: str, rows: np.ndarray, days: np.ndarray) -> None:
        parts.append((BMA_MEASURES.index(measure), rows, days))

    eligible = np.nonzero(has_state & bone)[0]
    add("eligible_start", eligible, registered[eligible])
    leaving = eligible[end[eligible] <= today]
    add("eligible_stop", leaving, end[leaving])

    def segments(rows: np.ndarray, start: np.ndarray, stop: np.ndarray) -> None:
        counted = bone[rows] & (start < stop)
        rows, start, stop = rows[counted], start[counted], stop[counted]
        add("cover_start", rows, start)
        ended = stop <= today
        add("cover_stop", rows[ended], stop[ended])

    last = np.nonzero(has_state & ~np.isnat(patients.last_dose))[0]
    last_dose = patients.last_dose[last]
    segments(last, np.maximum(last_dose, registered[last]), np.minimum(last_dose + cover, end[last]))

    rows = patients.rows_of(doses["patient"])
    known = rows >= 0
    known[known] = has_state[rows[known]]
    rows, given, zoledronic = rows[known], doses["day"][known], doses["zoledronic"][known]
    follows = np.zeros(len(rows), dtype=bool)
    follows[1:] = rows[1:] == rows[:-1]  # doses arrive in (patient, day, id) order
    later, at, zoledronic = rows[follows], given[follows], zoledronic[follows]
    prev = given[np.nonzero(follows)[0] - 1]
    segments(later, np.maximum(prev, registered[later]), np.minimum(np.minimum(prev + cover, at), end[later]))
    limit = np.where(
        zoledronic & patients.q12w[later],
        allowed["zoledronic_q12w"],
        np.where(zoledronic, allowed["zoledronic_q4w"], allowed["denosumab"]),
    )
    add("evaluated", later, at)
    on_time = (at - prev) // _DAY <= limit
    add("on_time", later[on_time], at[on_time])

    parts = [p for p in parts if len(p[1])]
    if not parts:
        return []
    rows = np.concatenate([r for _, r, _ in parts])
    measure = np.concatenate([np.full(len(r), m) for m, r, _ in parts])
    (month, site, department), group = _group(
        [np.concatenate([_month(d) for _, _, d in parts]), patients.site[rows], patients.department[rows]]
    )
    width = len(BMA_MEASURES)
    wide = np.bincount(group * width + measure, minlength=len(month) * width).reshape(len(month), width)
    labels = zip(
        _month_text(month), patients.sites[site].tolist(), patients.departments[department].tolist(), strict=True
    )
    return [(*label, *counts) for label, counts in zip(labels, wide.tolist(), strict=True)]


def registered_within(registered: np.ndarray, today: np.datetime64) -> np.ndarray:
    """The shortest period of :data:`PERIOD_MONTHS` (months ending with the month of ``today``) holding each
    registration month; 0 for a registration before the longest period."""
    back = _month(np.array([today])).item() - _month(registered)  # 0 = this month; negative = later
    within = np.zeros(len(registered), dtype=np.int64)
    for months in sorted(PERIOD_MONTHS, reverse=True):
        within[back < months] = months
    return within


def incidence_rows(patients: Patients, events: dict[str, np.ndarray], today: np.datetime64) -> list[tuple]:
    """(registered within, site, department, definition, tier, follow-up month, outcome, patients).

    Registered within = the shortest period of :data:`PERIOD_MONTHS` whose
    months (ending with the month of ``today``) include the registration month
    (a registration after ``today`` counts in the shortest); 0 when registered
    before the longest.

    Outcome 1 = first SRE of the definition on or after registration (unless
    recorded after a dated end of follow-up), 2 = died first, 0 = censored at
    transfer, hold or ``today``.  Follow-up month = ``floor(days / 30.4375) + 1``;
    −1 when there is no usable stop day (no end date, or one before registration).
    """
    if not len(patients):
        return []
    event_rows = patients.rows_of(events["patient"])
    active, end, registered = patients.status == ACTIVE, patients.end_any, patients.registered
    keys = [registered_within(registered, today), patients.site, patients.department, patients.tier]
    out: list[tuple] = []
    for definition in INCIDENCE_DEFINITIONS:
        types = sorted(t.value for t in DEFINITIONS[SreDefinition(definition)])
        mask = (event_rows >= 0) & np.isin(events["type"], types)
        mask[mask] = events["day"][mask] >= registered[event_rows[mask]]
        first = np.full(len(patients), _FAR)
        np.minimum.at(first, event_rows[mask], events["day"][mask])
        sre_first = (first != _FAR) & (active | np.isnat(end) | (first <= end))
        code = np.where(sre_first, 1, np.where(patients.status == DECEASED, 2, 0))
        stop = np.where(sre_first, first, np.where(active, today, end))
        usable = ~np.isnat(stop) & (stop >= registered)
        days = (np.where(usable, stop, registered) - registered) // _DAY
        follow_up = np.where(usable, (16 * days) // 487 + 1, -1)  # floor(days / 30.4375) + 1
        (within, site, department, tier, follow_up, code), n = _tally([*keys, follow_up, code])
        out.extend(
            zip(
                within.tolist(),
                patients.sites[site].tolist(),
                patients.departments[department].tolist(),
                [definition] * len(n),
                tier.tolist(),
                follow_up.tolist(),
                code.tolist(),
                n.tolist(),
                strict=True,
            )
        )
    return out


_HOUR_US = 3_600_000_000


def response_buckets(later: np.ndarray, opened: np.ndarray) -> np.ndarray:
    """Upper bound of the hours bucket from ``opened`` to ``later`` (µs): 1 h at most, whole hours to 72, then days."""
    elapsed = np.where(later == MISSING, opened, later) - opened
    hours_up = -(-elapsed // _HOUR_US)  # ceiling in whole hours, exact
    days_up = -(-elapsed // (24 * _HOUR_US))
    return np.where(elapsed <= _HOUR_US, 1, np.where(elapsed <= 72 * _HOUR_US, hours_up, days_up * 24))


def alert_rows(patients: Patients, alerts: dict[str, np.ndarray], now: datetime) -> list[tuple]:
    """(month opened, severity, site, department, measure, bucket, alerts).

    Measures: ``opened`` (bucket 0); ``response`` — acknowledgement, or closing as
    done or dismissed without one — and ``done`` (closed as done), bucket = hours
    bucket (:func:`response_buckets`); ``judged`` once the severity's target
    (``ACTION_TARGET_HOURS``) has passed since opening, bucket 1 = closed as done
    within the target, 0 = not; an alert the system resolved within its target
    is not judged.  Months are UTC.
    """
    rows = patients.rows_of(alerts["patient"])
    ok = rows >= 0
    if not ok.any():
        return []
    rows = rows[ok]
    severity, status = alerts["severity"][ok], alerts["status"][ok]
    opened, acknowledged, closed = alerts["opened"][ok], alerts["acknowledged"][ok], alerts["closed"][ok]
    done_code, resolved_code = ALERT_STATUSES.index("done"), ALERT_STATUSES.index("resolved")
    month = opened.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)
    has_ack, has_close = acknowledged != MISSING, closed != MISSING
    responded = has_ack | (has_close & np.isin(status, [ALERT_STATUSES.index(s) for s in RESPONSE_STATUSES]))
    done = has_close & (status == done_code)
    severity_code, severities = pd.factorize(severity)
    hours = np.array([calc.ACTION_TARGET_HOURS.get(s, -1) for s in severities], dtype=np.int64)
    target = hours[severity_code] * _HOUR_US if len(hours) else np.zeros(0, dtype=np.int64)
    now_us = (now.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    in_target = has_close & (np.where(has_close, closed, opened) - opened <= target)
    judged = (target >= 0) & (now_us - opened >= target) & ~((status == resolved_code) & in_target)
    parts = [
        ("opened", np.ones(len(rows), dtype=bool), np.zeros(len(rows), dtype=np.int64)),
        ("response", responded, response_buckets(np.where(has_ack, acknowledged, closed), opened)),
        ("done", done, response_buckets(closed, opened)),
        ("judged", judged, (done & in_target).astype(np.int64)),
    ]
    parts = [(name, np.nonzero(mask)[0], bucket[mask]) for name, mask, bucket in parts if mask.any()]
    at = np.concatenate([k for _, k, _ in parts])
    (month, severity, site, department, measure, bucket), n = _tally(
        [
            month[at],
            severity_code[at],
            patients.site[rows[at]],
            patients.department[rows[at]],
            np.concatenate([np.full(len(k), m) for m, (_, k, _) in enumerate(parts)]),
            np.concatenate([b for _, _, b in parts]),
        ]
    )
    names = np.array([name for name, _, _ in parts], dtype=object)
    return list(
        zip(
            _month_text(month),
            np.asarray(severities, dtype=object)[severity].tolist(),
            patients.sites[site].tolist(),
            patients.departments[department].tolist(),
            names[measure].tolist(),
            bucket.tolist(),
            n.tolist(),
            strict=True,
        )
    )
