"""The audit trail: append-only, hash-chained events.

Each event stores ``prev_hash`` (the hash of the event before it) and ``hash =
sha256(prev_hash ‖ canonical JSON of the event)``.  Editing, deleting or
reordering any event, or cutting the tail and re-anchoring, breaks the chain at
a place :func:`verify_chain` names.  Appends are serialised — SQLite by the
write transaction's ``BEGIN IMMEDIATE``, PostgreSQL by a transaction-scoped
advisory lock — so two writers can never fork the chain.

Events are written in the same transaction as the change they describe; a
rolled-back change leaves no event, and an event never exists without its
change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from db.models import AuditEvent, utcnow

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 727_001  # advisory lock key that serialises audit appends on PostgreSQL


def canonical(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _event_body(
    occurred_at: datetime,
    actor: str,
    action: str,
    patient_id: int | None,
    target: str | None,
    outcome: str,
    detail: str,
) -> dict[str, Any]:
    return {
        "occurred_at": occurred_at.isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "patient_id": patient_id,
        "target": target,
        "outcome": outcome,
        "detail": detail,
    }


def chain_hash(prev_hash: str, body: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(body)).encode("utf-8")).hexdigest()


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    patient_id: int | None = None,
    target: str | None = None,
    outcome: str = "success",
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    last = session.execute(text("SELECT hash FROM audit_event ORDER BY id DESC LIMIT 1")).scalar()
    prev_hash = last or GENESIS
    occurred_at = now or utcnow()
    detail_text = canonical(detail or {})
    body = _event_body(occurred_at, actor, action, patient_id, target, outcome, detail_text)
    event = AuditEvent(
        occurred_at=occurred_at,
        actor=actor,
        action=action,
        patient_id=patient_id,
        target=target,
        outcome=outcome,
        detail=detail_text,
        prev_hash=prev_hash,
        hash=chain_hash(prev_hash, body),
    )
    session.add(event)
    session.flush()
    return event


@dataclass
class ChainReport:
    ok: bool
    events: int
    first_bad_id: int | None = None
    problem: str | None = None


def verify_chain(
    session: Session, *, expected_head: str | None = None, expected_count: int | None = None
) -> ChainReport:
    """Walk the chain from the start; name the first event that does not verify.

    ``expected_head``/``expected_count`` (an anchor kept outside the database)
    also catch a truncated tail, which a chain alone cannot see.
    """
    prev = GENESIS
    count = 0
    last_id = None
    rows = session.execute(
        text(
            "SELECT id, occurred_at, actor, action, patient_id, target, outcome, detail, prev_hash, hash FROM audit_event ORDER BY id"
        )
    )
    for row in rows:
        count += 1
        occurred_at = row.occurred_at
        if isinstance(occurred_at, str):
            occurred_at = datetime.fromisoformat(occurred_at)
        if occurred_at.tzinfo is None:
            occurred_at = occurred_at.replace(tzinfo=UTC)
        body = _event_body(occurred_at, row.actor, row.action, row.patient_id, row.target, row.outcome, row.detail)
        if row.prev_hash != prev:
            return ChainReport(
                False, count, row.id, "previous hash does not match: an event before it was deleted or reordered"
            )
        if chain_hash(prev, body) != row.hash:
            return ChainReport(False, count, row.id, "content does not match its hash: the event was edited")
        prev = row.hash
        last_id = row.id
    if expected_count is not None and count < expected_count:
        return ChainReport(
            False,
            count,
            last_id,
            f"the chain has {count} events but the anchor records {expected_count}: the tail was truncated",
        )
    if expected_head is not None and prev != expected_head:
        return ChainReport(
            False, count, last_id, "the last hash differs from the anchor: the tail was altered or truncated"
        )
    return ChainReport(True, count)
