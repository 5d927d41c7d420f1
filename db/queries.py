"""Reads used by the CLI, the reports and the dashboard (keyword-only, connection first).

Queries return plain dicts so callers above ``db`` never see ORM objects, and
each one is written against an index (see ``db/models.py``): the caseload
walks ``(active, priority)``, the overdue list ``(active, next_imaging_due)``,
the trend reads the monthly aggregate tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from db.models import ACTIVE_ALERT_SQL

SCORE_COLUMNS = (
    "sins_worst_mask",
    "sins_worst_total",
    "sins_worst_category",
    "bilsky_worst",
    "tomita_mask",
    "tomita_total",
    "tomita_band",
    "tokuhashi_mask",
    "tokuhashi_total",
    "tokuhashi_band",
    "bauer_mask",
    "bauer_total",
    "bauer_band",
    "modified_bauer_mask",
    "modified_bauer_total",
    "modified_bauer_band",
    "nesms_mask",
    "nesms_total",
    "nesms_band",
    "katagiri_mask",
    "katagiri_total",
    "katagiri_band",
)


def list_active_alerts(conn: Connection, *, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            "SELECT a.id, p.mrn, a.patient_id, a.rule_id, a.rule_version, a.severity, a.status, a.title, a.evidence, "
            "a.source, a.opened_at, a.acknowledged_at, a.acknowledged_by, a.snoozed_until, a.escalated_at "
            "FROM alert a JOIN patient p ON p.id = a.patient_id "
            f"WHERE a.status IN {ACTIVE_ALERT_SQL} "
            "ORDER BY CASE a.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'routine' THEN 2 ELSE 3 END, "
            "a.opened_at, a.id LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [dict(r._mapping) for r in rows]


def iter_patient_summaries(conn: Connection, *, mrn: str | None = None, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Every patient with the latest snapshot, in id order, streamed in batches."""
    columns = ", ".join(f"s.{c}" for c in SCORE_COLUMNS)
    base = (
        "SELECT p.id, p.mrn, p.primary_site, p.primary_histology, p.status, s.lesion_count, s.tier, "
        f"s.next_imaging_due, s.open_alerts, s.priority, s.alert_reasons, s.computed_at, {columns} "
        "FROM patient p LEFT JOIN risk_snapshot s ON s.patient_id = p.id "
    )
    if mrn is not None:
        yield from (dict(r._mapping) for r in conn.execute(text(base + "WHERE p.mrn = :mrn"), {"mrn": mrn}))
        return
    last = 0
    while True:
        rows = conn.execute(text(base + "WHERE p.id > :last ORDER BY p.id LIMIT :n"), {"last": last, "n": batch}).all()
        if not rows:
            return
        for row in rows:
            yield dict(row._mapping)
        last = rows[-1].id


# ---------------------------------------------------------------------------
# Dashboard lists (each ≤ 20 ms at a million patients; see docs/performance.md)
# ---------------------------------------------------------------------------

CASELOAD_COLUMNS = (
    "s.patient_id, p.mrn, p.family_name, p.given_name, p.primary_site, s.priority, s.open_alerts, s.critical_alerts, "
    "s.alert_reasons, s.tier, s.next_imaging_due, s.next_bma_due, s.sins_worst_mask, s.sins_worst_category, "
    "s.bilsky_worst, s.katagiri_band, s.assigned_nurse_id"
)


#: A filter that matches at most this many rows drives the caseload query: its rows are read and sorted
#: by priority (about 5 µs each at 1M patients, most of it reading the row).  Otherwise the query walks
#: a priority index until ``limit`` patients match, about limit / selectivity entries: cheap for the
#: filters the index carries (0.1 µs an entry), but an alert type needs the row and an alert lookup
#: (1–2 µs an entry): at 1M a rare type (839 alerts) took 530 ms that way.
DRIVE_LIMIT = 4000

_OPEN_ALERT_OF_RULE = f"a.rule_id = :rule_id AND a.status IN {ACTIVE_ALERT_SQL} AND a.status = 'open'"


def _at_most(conn: Connection, sql: str, params: dict[str, Any], cap: int) -> int:
    """How many rows ``sql`` returns, counting no further than ``cap + 1``."""
    return int(conn.execute(text(f"SELECT COUNT(*) FROM ({sql} LIMIT {int(cap) + 1}) AS c"), params).scalar_one())


def caseload_driver(conn: Connection, *, primary_site: str | None, rule_id: str | None) -> str | None:
    """Which filter drives the caseload: ``"rule"``, ``"site"`` or None (walk by priority).

    The smaller of the alert-type and primary-site filters, if it matches at most
    :data:`DRIVE_LIMIT` rows (open alerts of the type through ``ix_alert_rule_status_patient``,
    snapshots of the site through ``ix_snapshot_site``; each count stops at the limit).
    """
    sizes: dict[str, int] = {}
    if rule_id:
        sizes["rule"] = _at_most(
            conn, f"SELECT 1 FROM alert a WHERE {_OPEN_ALERT_OF_RULE}", {"rule_id": rule_id}, DRIVE_LIMIT
        )
    if primary_site:
        sizes["site"] = _at_most(
            conn, "SELECT 1 FROM risk_snapshot s WHERE s.primary_site = :site", {"site": primary_site}, DRIVE_LIMIT
        )
    small = {name: n for name, n in sizes.items() if n <= DRIVE_LIMIT}
    return min(small, key=small.get) if small else None


def caseload(
    conn: Connection,
    *,
    scope_sql: str = "1 = 1",
    scope_params: dict[str, Any] | None = None,
    nurse_id: int | None = None,
    tier: str | None = None,
    primary_site: str | None = None,
    rule_id: str | None = None,
    open_rule_mask: int | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Active patients with open alerts, highest priority first, then by patient id.

    Walks a priority index (``ix_snapshot_active_priority``, or the nurse's or the tier's)
    unless a rare alert type or primary site is asked for: then those rows are looked up and
    sorted (:func:`caseload_driver`).  Both ways return the same rows.

    ``open_rule_mask``: the bit of ``rule_id`` in ``risk_snapshot.open_rules``, when the caller
    knows every stored mask uses it (``surveillance.prepare.open_rule_mask``).  The walk then
    skips patients whose last plan left no alert of the type open without looking the alert up;
    the alert itself is still checked for the others (a person may have acknowledged it since).
    """
    where = ["s.active = :active", "s.open_alerts > 0", scope_sql]
    params: dict[str, Any] = dict(scope_params or {}, active=True, limit=limit, offset=offset)
    if nurse_id is not None:
        where.append("s.assigned_nurse_id = :nurse_id")
        params["nurse_id"] = nurse_id
    if tier:
        where.append("s.tier = :tier")
        params["tier"] = tier
    driver = caseload_driver(conn, primary_site=primary_site, rule_id=rule_id)
    sqlite = conn.dialect.name == "sqlite"
    if primary_site:
        # Unless it drives, the site is checked on each entry walked: SQLite would otherwise fetch every
        # row of a common site through its index and sort them (kidney at 1M: 180 ms instead of 5 ms).
        # The unary plus hides the term from the index choice; PostgreSQL chooses from its statistics.
        where.append(("+s" if sqlite and driver != "site" else "s") + ".primary_site = :primary_site")
        params["primary_site"] = primary_site
    if rule_id:
        params["rule_id"] = rule_id
        if driver == "rule":
            where.append(f"s.patient_id IN (SELECT a.patient_id FROM alert a WHERE {_OPEN_ALERT_OF_RULE})")
        else:
            if open_rule_mask is not None:
                where.append("(s.open_rules IS NULL OR (s.open_rules & :open_rule_mask) <> 0)")
                params["open_rule_mask"] = int(open_rule_mask)
            where.append(f"EXISTS (SELECT 1 FROM alert a WHERE a.patient_id = s.patient_id AND {_OPEN_ALERT_OF_RULE})")
    # Driven: SQLite is told how (by rowid from the alert type's patients, or by the site index); the
    # unary plus keeps it from walking a priority index instead.
    hint = {"rule": " NOT INDEXED", "site": " INDEXED BY ix_snapshot_site"}.get(driver, "") if sqlite else ""
    order = "+s.priority DESC" if driver and sqlite else "s.priority DESC"
    sql = (
        f"SELECT {CASELOAD_COLUMNS} FROM risk_snapshot s{hint} JOIN patient p ON p.id = s.patient_id "
        f"WHERE {' AND '.join(where)} ORDER BY {order}, s.patient_id LIMIT :limit OFFSET :offset"
    )
    return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def overdue_imaging(
    conn: Connection,
    *,
    today: Any,
    scope_sql: str = "1 = 1",
    scope_params: dict[str, Any] | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Active patients whose next spine imaging is due, most overdue first (``ix_snapshot_active_due``)."""
    sql = (
        "SELECT s.patient_id, p.mrn, p.family_name, p.given_name, p.primary_site, s.tier, s.last_imaging_on, "
        "s.next_imaging_due, s.assigned_nurse_id FROM risk_snapshot s JOIN patient p ON p.id = s.patient_id "
        f"WHERE s.active = :active AND s.next_imaging_due <= :today AND {scope_sql} "
        "ORDER BY s.next_imaging_due, s.patient_id LIMIT :limit"
    )
    params = dict(scope_params or {}, active=True, today=today, limit=limit)
    return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def sre_monthly_trend(conn: Connection, *, since: Any, primary_site: str | None = None) -> list[dict[str, Any]]:
    """Events and patient-days per month (and event type), from the aggregate tables."""
    site_filter = " AND primary_site = :site" if primary_site else ""
    params = {"since": since, "site": primary_site}
    events = conn.execute(
        text(
            "SELECT month, event_type, SUM(events) AS events, SUM(emergency_events) AS emergency_events "
            f"FROM sre_monthly WHERE month >= :since{site_filter} GROUP BY month, event_type ORDER BY month, event_type"
        ),
        params,
    )
    days = conn.execute(
        text(
            "SELECT month, SUM(patient_days) AS patient_days FROM person_time_monthly "
            f"WHERE month >= :since{site_filter} GROUP BY month ORDER BY month"
        ),
        params,
    )
    person_days = {str(r.month)[:10]: int(r.patient_days) for r in days}
    return [
        dict(r._mapping, month=str(r.month)[:10], patient_days=person_days.get(str(r.month)[:10], 0)) for r in events
    ]
