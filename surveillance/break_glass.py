"""Emergency ("break-glass") access to a patient outside the user's scope.

HIPAA 45 CFR 164.312(a)(2)(ii) (emergency access procedure) and ONC
45 CFR 170.315(d)(6) (emergency access).  The rules, from
``surveillance/break_glass.toml`` (local policy; the regulations fix no
duration):

* only the roles listed there (nurse, physician) may break the glass; a lead
  (no identifiers, ever) or an admin (no clinical access) is refused, and the
  refusal is audited;
* the user states a reason of at least ``reason_min_length`` characters;
* a grant covers one user and one patient for ``duration_minutes``;
* the grant is written with its audit event (``break_glass.grant``) in one
  transaction; every view and write made under it carries
  ``"break_glass": <grant id>`` in its audit detail;
* expiry is enforced on the server: :func:`scope_sql` and :func:`active_grant`
  compare ``granted_at <= now < expires_at`` in SQL, in the data layer and in
  ``surveillance.service``'s scope check, so an expired grant opens nothing
  whatever the page still shows.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, select

from db import models as m
from db.engine import write_session
from surveillance import audit
from surveillance.access import Action, Identity, PermissionDenied, Role, in_scope, patient_scope, require

POLICY_FILE = Path(__file__).with_name("break_glass.toml")


@dataclass(frozen=True)
class Policy:
    roles: frozenset[Role]
    duration: timedelta
    reason_min_length: int
    reason_max_length: int


@lru_cache(maxsize=4)
def load_policy(path: Path = POLICY_FILE) -> Policy:
    """The policy file, checked: unknown keys, a role that may not hold clinical access or a bad number stop here."""
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))["break_glass"]
    expected = {"roles", "duration_minutes", "reason_min_length", "reason_max_length"}
    if set(raw) != expected:
        raise ValueError(f"{path}: [break_glass] must have exactly {sorted(expected)}, has {sorted(raw)}")
    roles = frozenset(Role(r) for r in raw["roles"])
    if roles - {Role.NURSE, Role.PHYSICIAN}:
        raise ValueError(f"{path}: only clinical roles (nurse, physician) may break the glass")
    minutes, low, high = raw["duration_minutes"], raw["reason_min_length"], raw["reason_max_length"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (minutes, low, high)):
        raise ValueError(f"{path}: duration_minutes and the reason lengths must be whole numbers")
    if not (0 < minutes <= 24 * 60 and 1 <= low <= high <= 1000):
        raise ValueError(f"{path}: duration 1–1440 minutes and 1 <= reason_min_length <= reason_max_length <= 1000")
    return Policy(roles, timedelta(minutes=minutes), low, high)


class BreakGlassError(ValueError):
    """Emergency access was not granted; ``str(err)`` is safe to show."""


class ReasonInvalid(BreakGlassError):
    """The stated reason is missing, too short or too long."""


class NotNeeded(BreakGlassError):
    """The patient is already in the user's scope."""


@dataclass(frozen=True)
class Grant:
    id: int
    user_id: int
    patient_id: int
    reason: str
    granted_at: datetime
    expires_at: datetime


def eligible(identity: Identity, policy: Policy | None = None) -> bool:
    return identity.role in (policy or load_policy()).roles


def validate_reason(reason: Any, policy: Policy | None = None) -> str:
    policy = policy or load_policy()
    value = reason.strip() if isinstance(reason, str) else ""
    if len(value) < policy.reason_min_length:
        raise ReasonInvalid(f"reason: state why emergency access is needed (at least {policy.reason_min_length} "
                            "characters)")
    if len(value) > policy.reason_max_length:
        raise ReasonInvalid(f"reason: at most {policy.reason_max_length} characters")
    return value


def _deny(engine: Engine, identity: Identity, patient_id: int | None, reason: str, now: datetime) -> None:
    with write_session(engine) as session:
        audit.record(session, actor=identity.actor, action="break_glass.grant", patient_id=patient_id,
                     outcome="denied", detail={"reason": reason}, now=now)


def grant(engine: Engine, identity: Identity, *, reason: Any, now: datetime, patient_id: int | None = None,
          mrn: str | None = None, policy: Policy | None = None) -> Grant:
    """Open one patient (by id or MRN) to ``identity`` for the policy's time box; audited.

    Raises :class:`PermissionDenied` (audited) for a role that may not break the
    glass, :class:`ReasonInvalid` for a bad reason (nothing written),
    :class:`NotNeeded` for a patient already in scope and :class:`LookupError`
    for no such patient.
    """
    policy = policy or load_policy()
    if not eligible(identity, policy):
        _deny(engine, identity, patient_id, f"role {identity.role} may not use emergency access", now)
        raise PermissionDenied(f"role {identity.role} may not use emergency access")
    require(identity, Action.VIEW_PATIENT)
    reason_text = validate_reason(reason, policy)
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    with write_session(engine) as session:
        patient = _find(session, patient_id, mrn)
        if patient is None:
            raise LookupError("no patient with that identifier")
        if in_scope(identity, assigned_nurse_id=patient.assigned_nurse_id, department=patient.department):
            raise NotNeeded("this patient is already in your scope; emergency access is not needed")
        row = m.BreakGlassGrant(user_id=identity.user_id, patient_id=patient.id, reason=reason_text,
                                granted_at=now, expires_at=now + policy.duration)
        session.add(row)
        session.flush()
        audit.record(session, actor=identity.actor, action="break_glass.grant", patient_id=patient.id,
                     target=f"break_glass_grant:{row.id}",
                     detail={"reason": reason_text, "expires_at": row.expires_at.isoformat(),
                             "minutes": int(policy.duration.total_seconds() // 60), "role": identity.role.value},
                     now=now)
        return Grant(row.id, row.user_id, row.patient_id, row.reason, row.granted_at, row.expires_at)


def _find(session: Session, patient_id: int | None, mrn: str | None) -> m.Patient | None:
    if patient_id is not None:
        try:
            return session.get(m.Patient, int(patient_id))
        except (TypeError, ValueError):
            return None
    if mrn:
        return session.exec(select(m.Patient).where(m.Patient.mrn == str(mrn).strip()[:32])).first()
    return None


def _instant(now: datetime) -> str:
    """``now`` as a bound value that compares exactly on both backends.

    SQLite stores ``granted_at``/``expires_at`` as ``YYYY-MM-DD HH:MM:SS.ffffff``
    text in UTC and compares text; this string has that prefix (so the expiry
    instant itself is already expired) plus ``+00:00``, which PostgreSQL reads
    as an explicit UTC offset whatever the session time zone.
    """
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    return now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00"


_GRANT_CONDITION = ("SELECT {what} FROM break_glass_grant g WHERE g.patient_id = {pid} AND g.user_id = :bg_user "
                    "AND g.granted_at <= :bg_now AND g.expires_at > :bg_now")


def active_grant(conn: Connection | Session, identity: Identity, patient_id: int, now: datetime) -> int | None:
    """The id of the identity's grant on this patient that is valid at ``now`` (``None`` if none or expired)."""
    if identity.role not in load_policy().roles:
        return None
    return conn.execute(
        text(_GRANT_CONDITION.format(what="MAX(g.id)", pid=":bg_pid")),
        {"bg_user": identity.user_id, "bg_now": _instant(now), "bg_pid": int(patient_id)},
    ).scalar()


def scope_sql(identity: Identity, now: datetime) -> tuple[str, dict]:
    """``access.patient_scope`` widened by the identity's grants valid at ``now`` (patient alias ``p``)."""
    base, params = patient_scope(identity)
    if identity.role not in load_policy().roles:
        return base, params
    condition = f"({base} OR EXISTS ({_GRANT_CONDITION.format(what='1', pid='p.id')}))"
    return condition, dict(params, bg_user=identity.user_id, bg_now=_instant(now))
