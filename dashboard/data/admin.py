"""Reads for the health and admin pages (role admin): runs, freshness, users, audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import text

from dashboard.data.common import data_version, engine
from db.engine import read_session
from db.models import ACTIVE_ALERT_SQL
from surveillance.access import Action, Identity, require
from surveillance.audit import verify_chain


@st.cache_data(ttl=10, show_spinner=False)
def _runs(version: int, limit: int) -> pd.DataFrame:
    with engine().connect() as conn:
        rows = conn.execute(text(
            "SELECT id, kind, trigger, status, started_at, finished_at, patients, snapshots_written, alerts_opened, "
            "alerts_resolved, batches, owner, message FROM job_run WHERE trigger != 'service' "
            "ORDER BY id DESC LIMIT :limit"), {"limit": limit}).all()
    frame = pd.DataFrame([dict(r._mapping) for r in rows])
    if not frame.empty:
        start = pd.to_datetime(frame["started_at"], utc=True)
        end = pd.to_datetime(frame["finished_at"], utc=True)
        frame["seconds"] = (end - start).dt.total_seconds().round(1)
    return frame


def runs(identity: Identity, limit: int = 200) -> pd.DataFrame:
    require(identity, Action.VIEW_HEALTH)
    return _runs(data_version(), limit)


def health_counts(identity: Identity) -> dict[str, Any]:
    require(identity, Action.VIEW_HEALTH)
    with engine().connect() as conn:
        counts = conn.execute(text(
            "SELECT (SELECT COUNT(*) FROM patient) AS patients, (SELECT COUNT(*) FROM risk_snapshot) AS snapshots, "
            "(SELECT COUNT(*) FROM recompute_queue) AS queued, "
            f"(SELECT COUNT(*) FROM alert WHERE status IN {ACTIVE_ALERT_SQL}) AS active_alerts, "
            "(SELECT COUNT(*) FROM job_run WHERE status = 'missed') AS missed, "
            "(SELECT COUNT(*) FROM job_run WHERE status = 'failed') AS failed")).one()
        lease = conn.execute(text("SELECT name, owner, until, heartbeat_at FROM job_lease")).all()
    return {**dict(counts._mapping), "leases": [dict(r._mapping) for r in lease]}


def users(identity: Identity) -> pd.DataFrame:
    require(identity, Action.MANAGE_USERS)
    with engine().connect() as conn:
        rows = conn.execute(text(
            "SELECT id, username, display_name, role, department, active, failed_logins, locked_until, created_at "
            "FROM app_user ORDER BY username")).all()
    return pd.DataFrame([dict(r._mapping) for r in rows])


#: Columns the audit report can be sorted by (ONC 170.315(d)(3): sort "according to each of the data specified").
AUDIT_SORTS = ("occurred_at", "actor", "action", "outcome", "patient_id", "target", "id")
AUDIT_OUTCOMES = ("success", "failure", "denied")
AUDIT_LIMIT = 5000


def audit_events(identity: Identity, *, since: datetime, until: datetime, actor: str | None, action: str | None,
                 patient_id: int | None, limit: int = AUDIT_LIMIT, break_glass_only: bool = False,
                 outcome: str | None = None, sort: str = "id", descending: bool = True) -> pd.DataFrame:
    """Audit events in ``[since, until)`` matching every filter given, sorted by ``sort`` (default: newest first),
    at most ``limit``; ``break_glass_only`` keeps emergency-access events.

    Those are the grants and their refusals (``break_glass.*``) and every view or
    write made under a grant (its canonical-JSON detail holds ``"break_glass":``).
    """
    require(identity, Action.VIEW_AUDIT)
    where = ["occurred_at >= :since", "occurred_at < :until"]
    params: dict[str, Any] = {"since": since, "until": until, "limit": limit}
    if break_glass_only:
        where.append("(action LIKE :bg_action ESCAPE '!' OR detail LIKE :bg_detail ESCAPE '!')")
        params.update(bg_action="break!_glass.%", bg_detail='%"break!_glass":%')
    if actor:
        where.append("actor = :actor")
        params["actor"] = actor
    if action:
        where.append("action LIKE :action")
        params["action"] = f"{action}%"
    if patient_id is not None:
        where.append("patient_id = :pid")
        params["pid"] = patient_id
    if outcome:
        where.append("outcome = :outcome")
        params["outcome"] = outcome
    if sort not in AUDIT_SORTS:
        raise ValueError(f"cannot sort the audit report by {sort!r}; allowed: " + ", ".join(AUDIT_SORTS))
    direction = "DESC" if descending else "ASC"
    # Empty values last in both directions and on both backends; ties in event order.
    order = f"CASE WHEN {sort} IS NULL THEN 1 ELSE 0 END, {sort} {direction}, id {direction}"
    with engine().connect() as conn:
        rows = conn.execute(text(
            "SELECT id, occurred_at, actor, action, outcome, patient_id, target, detail FROM audit_event "
            f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT :limit"), params).all()
    return pd.DataFrame([dict(r._mapping) for r in rows])


def verify_audit(identity: Identity):
    require(identity, Action.VIEW_AUDIT)
    with read_session(engine()) as session:
        return verify_chain(session)
