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
            "WHERE a.status IN ('open', 'acknowledged', 'snoozed') "
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
