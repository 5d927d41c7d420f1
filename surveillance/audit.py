"""The audit trail: append-only, hash-chained events with an anchored head.

Each event stores ``prev_hash`` (the hash of the event before it) and ``hash =
sha256(prev_hash ‖ canonical JSON of the event)``.  The one-row ``audit_head``
table (the *anchor*) holds the last event's id, hash and time and the number of
events; :func:`record` advances it in the same transaction as the append.

What is detected, and where (:func:`verify_chain`, ``python -m surveillance
audit verify``), always naming the first bad event (id, time, what is wrong):

* an **edited** event — its content no longer matches its hash;
* a **deleted** event — the next event's ``prev_hash`` names no existing event;
* **reordered** events — an event links to an event other than the one before it;
* a **truncated tail** — the chain ends before the anchor's last event, or has
  fewer events than the anchor counts (a chain alone cannot see this);
* events **appended outside** :func:`record` — events after the anchor.

What the database refuses (migration ``a1d17a0e0001``): UPDATE and DELETE of
``audit_event`` (and TRUNCATE on PostgreSQL), an INSERT that does not extend the
head, and any move of the anchor except one event forward onto an event that
links to it.  On PostgreSQL the application role should also lack
UPDATE/DELETE/TRUNCATE on these tables (``python -m surveillance db
grant-app-role ROLE``).

**The limit.** A database owner or superuser can drop the triggers.  The chain
and the anchor then still reveal an edit, a deletion, a reordering or a cut
tail — unless that person rewrites every hash after the change *and* the
anchor, which is possible because the hash is unkeyed and both live in the same
database.  Only a copy of the head kept outside the database catches that:
ship the output of ``audit verify --json`` (its ``head`` hash and ``events``
count) to a separate log store regularly, and pass a stored copy back as
``expected_head``/``expected_count`` to check that the chain still contains it.

Appends are serialised — SQLite by the write transaction's ``BEGIN
IMMEDIATE``, PostgreSQL by a transaction-scoped advisory lock — so two writers
can never fork the chain.  Events are written in the same transaction as the
change they describe: if the append fails, the change is rolled back with it
(fail closed) and an error naming the action (no patient data) goes to the
server log for the operator; a rolled-back change leaves no event.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from db.models import AuditEvent, AuditHead, utcnow

GENESIS = "0" * 64
log = logging.getLogger(__name__)
_PG_AUDIT_LOCK = 727_001  # advisory lock key that serialises audit appends on PostgreSQL


class AuditUnavailable(RuntimeError):
    """The audit trail cannot be appended to; the change that needed it must not happen."""


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
    """Append one event in the caller's transaction and advance the anchor.

    Raises (and so rolls back the caller's transaction) when the append fails.
    """
    try:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
        head = session.get(AuditHead, 1, populate_existing=True)
        if head is None:
            raise AuditUnavailable("the audit anchor (audit_head) is missing; run `python -m surveillance db upgrade`")
        prev_hash = head.last_hash
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
        head.last_id = event.id
        head.last_hash = event.hash
        head.last_at = occurred_at
        head.events = head.events + 1
        session.flush()
    except Exception as err:
        # For the operator (server log, no PHI: the action and the error class only); the caller's
        # transaction, and so the change this event describes, is rolled back.
        log.error("audit append failed for action %s (%s): the change it describes is refused", action,
                  err.__class__.__name__)
        raise
    return event


@dataclass
class ChainReport:
    ok: bool
    events: int
    first_bad_id: int | None = None
    problem: str | None = None
    first_bad_at: datetime | None = None
    head: str | None = None  # the last verified hash (ship it elsewhere as an external anchor)
    last_id: int | None = None
    last_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}

    def summary(self) -> str:
        if self.ok:
            last = f"; last event #{self.last_id} at {_iso(self.last_at)}" if self.last_id is not None else ""
            return f"audit chain intact: {self.events:,} events{last}; head {self.head}"
        return f"audit chain broken at event #{self.first_bad_id} ({_iso(self.first_bad_at)}): {self.problem}"


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "time unknown"


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _link_problem(session: Session, prev_hash: str, expected_prev_id: int | None) -> str:
    linked = session.execute(text("SELECT id FROM audit_event WHERE hash = :h"), {"h": prev_hash}).scalar()
    before = f"#{expected_prev_id}" if expected_prev_id is not None else "the start of the chain"
    if linked is not None:
        return (
            f"out of order: it links to event #{linked}, not to the event before it ({before}); "
            "events were reordered or inserted"
        )
    return f"the event it links to (the one after {before}) is missing: an event was deleted"


def verify_chain(
    session: Session,
    *,
    expected_head: str | None = None,
    expected_count: int | None = None,
    anchor: bool = True,
) -> ChainReport:
    """Walk the chain from the start; name the first event that does not verify.

    With ``anchor`` (the default) the chain is also compared with ``audit_head``,
    which catches a truncated tail.  ``expected_head``/``expected_count`` are an
    anchor kept *outside* the database (a copy of an earlier ``audit verify --json``):
    the chain must still contain that many events and that hash — the only check
    that catches someone who rewrote both the chain and ``audit_head``.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql" and isinstance(bind, Engine) and not session.in_transaction():
        # One snapshot for the head and the events, so a concurrent append is not mistaken for tampering.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    head_row = None
    if anchor:
        head_row = session.execute(text("SELECT last_id, last_hash, last_at, events FROM audit_head WHERE id = 1")).first()
        if head_row is None:
            return ChainReport(False, 0, None, "the anchor (audit_head) is missing: it was deleted")
    prev, prev_id, prev_at = GENESIS, None, None
    count = 0
    external_seen = expected_head is None
    anchor_seen = head_row is None or head_row.events == 0
    rows = session.execute(
        text(
            "SELECT id, occurred_at, actor, action, patient_id, target, outcome, detail, prev_hash, hash "
            "FROM audit_event ORDER BY id"
        ).execution_options(yield_per=2000)
    )
    for row in rows:
        count += 1
        occurred_at = _aware(row.occurred_at)
        problem = None
        if anchor_seen and head_row is not None and row.id > head_row.last_id:
            problem = (
                f"it comes after the anchor's last event #{head_row.last_id}: it was added without advancing "
                "the anchor (written outside the audit path)"
            )
        elif row.prev_hash != prev:
            problem = _link_problem(session, row.prev_hash, prev_id)
        elif chain_hash(prev, _event_body(occurred_at, row.actor, row.action, row.patient_id, row.target,
                                          row.outcome, row.detail)) != row.hash:
            problem = "its content does not match its hash: the event was edited"
        elif head_row is not None and row.id == head_row.last_id:
            anchor_seen = True
            if row.hash != head_row.last_hash:
                problem = "its hash differs from the anchor's: the chain up to here was rewritten"
            elif count != head_row.events:
                problem = (
                    f"the chain up to the anchor's last event has {count:,} events but the anchor records "
                    f"{head_row.events:,}: events were removed and the chain rewritten"
                )
        if problem is None and not external_seen and row.hash == expected_head:
            external_seen = True
            if expected_count is not None and count != expected_count:
                problem = f"the external anchor's event is event number {count:,}, not {expected_count:,}"
        if problem is not None:
            return ChainReport(False, count, row.id, problem, occurred_at, prev, prev_id, prev_at)
        prev, prev_id, prev_at = row.hash, row.id, occurred_at
    if not anchor_seen:
        return ChainReport(
            False,
            count,
            head_row.last_id,
            f"it is missing: the anchor's last event #{head_row.last_id} ({head_row.events:,} events) is not in "
            f"the chain, which ends at event #{prev_id} ({_iso(prev_at)}) with {count:,} events: the tail was "
            "truncated",
            _aware(head_row.last_at),
            prev,
            prev_id,
            prev_at,
        )
    if not external_seen:
        return ChainReport(
            False, count, None,
            "the externally anchored head hash is not in the chain: the chain was rewritten or truncated",
            None, prev, prev_id, prev_at,
        )
    if expected_head is None and expected_count is not None and count < expected_count:
        return ChainReport(
            False, count, prev_id,
            f"the chain has {count:,} events but the external anchor records {expected_count:,}: "
            "the tail was truncated",
            prev_at, prev, prev_id, prev_at,
        )
    return ChainReport(True, count, head=prev, last_id=prev_id, last_at=prev_at)


def verify(engine: Engine, **kwargs: Any) -> ChainReport:
    """:func:`verify_chain` in a read-only session of its own."""
    with Session(engine) as session:
        try:
            return verify_chain(session, **kwargs)
        finally:
            session.rollback()
