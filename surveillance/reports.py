"""Plain-data views for the CLI (``alerts``, ``patients``): snapshots rendered with their meaning.

A score is reported as ``{"total", "possible_totals", "band"}`` decoded from
the snapshot's bit mask, so "8, 9 or 11" survives all the way to the output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import Engine

from db import queries
from surveillance.rules.engine import totals_of

SYSTEMS = {
    "sins_worst": "sins_worst",
    "tomita": "tomita",
    "revised_tokuhashi": "tokuhashi",
    "bauer": "bauer",
    "modified_bauer": "modified_bauer",
    "nesms": "nesms",
    "new_katagiri": "katagiri",
}


def totals_phrase(totals, *, joiner: str = "or", none: str = "") -> str:
    """Possible totals as "8, 9 or 11" (``none`` when nothing can be computed): the one wording of every list and file."""
    totals = list(totals or [])
    if not totals:
        return none
    if len(totals) == 1:
        return str(totals[0])
    return ", ".join(map(str, totals[:-1])) + f" {joiner} {totals[-1]}"


def decode_score(row: dict[str, Any], column: str, band_column: str) -> dict[str, Any]:
    mask = row.get(f"{column}_mask") or 0
    totals = totals_of(int(mask))
    return {"total": totals[0] if len(totals) == 1 else None, "possible_totals": totals, "band": row.get(band_column)}


def patient_summary(row: dict[str, Any]) -> dict[str, Any]:
    scores = {}
    for name, column in SYSTEMS.items():
        band_column = "sins_worst_category" if column == "sins_worst" else f"{column}_band"
        scores[name] = decode_score(row, column, band_column)
    return {
        "mrn": row["mrn"],
        "primary_site": row["primary_site"],
        "primary_histology": row["primary_histology"],
        "status": row["status"],
        "lesion_count": row["lesion_count"] or 0,
        "scores": scores,
        "tier": row["tier"],
        "next_imaging_due": None if row["next_imaging_due"] is None else str(row["next_imaging_due"]),
        "open_alerts": row["open_alerts"] or 0,
        "alert_reasons": row["alert_reasons"],
        "priority": row["priority"] or 0,
        "scored_at": None if row["computed_at"] is None else str(row["computed_at"]),
    }


def iter_patient_summaries(engine: Engine, *, mrn: str | None = None) -> Iterator[dict[str, Any]]:
    with engine.connect() as conn:
        for row in queries.iter_patient_summaries(conn, mrn=mrn):
            yield patient_summary(row)


def active_alerts(engine: Engine, *, limit: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = queries.list_active_alerts(conn, limit=limit)
    for row in rows:
        row["evidence"] = json.loads(row["evidence"] or "{}")
    return rows
