"""Reads for the caseload and alerts pages."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import text

from dashboard.data.common import CACHE_SECONDS, data_version, engine, now, scope_key, scope_sql
from db import queries
from db.models import ACTIVE_ALERT_SQL
from surveillance import break_glass
from surveillance.access import ALL_DEPARTMENTS, Action, Identity, Role, require
from surveillance.prepare import open_rule_mask
from surveillance.reports import totals_phrase
from surveillance.rules import load_rules
from surveillance.rules.engine import totals_of


def possible_text(mask: int | None) -> str:
    """A bit mask of possible totals as "8, 9 or 11" ("" when nothing can be computed)."""
    return totals_phrase(totals_of(int(mask or 0)))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=256)
def _caseload(_identity: Identity, key: tuple, version: int, tier, rule_id, primary_site, nurse_id, limit) -> pd.DataFrame:
    sql, params = scope_sql(_identity)
    with engine().connect() as conn:
        rows = queries.caseload(conn, scope_sql=sql, scope_params=params, tier=tier, rule_id=rule_id,
                                open_rule_mask=open_rule_mask(conn, rule_id), primary_site=primary_site,
                                nurse_id=nurse_id, limit=limit)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["sins_worst"] = frame["sins_worst_mask"].map(possible_text)
    frame["name"] = frame["family_name"] + " " + frame["given_name"]
    return frame


def caseload(identity: Identity, *, tier: str | None = None, rule_id: str | None = None,
             primary_site: str | None = None, nurse_id: int | None = None, limit: int = 200) -> pd.DataFrame:
    """The identity's patients with open alerts, highest priority first (at most ``limit`` rows)."""
    require(identity, Action.VIEW_CASELOAD)
    return _caseload(identity, scope_key(identity), data_version(), tier, rule_id, primary_site, nurse_id, limit)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=256)
def _metrics(_identity: Identity, key: tuple, version: int, today: str) -> dict[str, int]:
    sql, params = scope_sql(_identity)
    with engine().connect() as conn:
        row = conn.execute(text(
            "SELECT COUNT(*) AS patients, COALESCE(SUM(s.open_alerts), 0) AS open_alerts, "
            "COALESCE(SUM(s.critical_alerts), 0) AS critical, "
            "COALESCE(SUM(CASE WHEN s.next_imaging_due <= :today THEN 1 ELSE 0 END), 0) AS overdue "
            f"FROM risk_snapshot s JOIN patient p ON p.id = s.patient_id WHERE s.active = :active AND {sql}"),
            dict(params, active=True, today=today)).one()
    return {k: int(v or 0) for k, v in row._mapping.items()}


def caseload_metrics(identity: Identity, today) -> dict[str, int]:
    require(identity, Action.VIEW_CASELOAD)
    return _metrics(identity, scope_key(identity), data_version(), str(today))


@st.cache_data(ttl=300, show_spinner=False)
def rule_titles() -> dict[str, str]:
    return {rule.id: rule.title for rule in load_rules().rules}


@st.cache_data(ttl=300, show_spinner=False)
def nurses(department: str | None) -> list[dict[str, Any]]:
    with engine().connect() as conn:
        rows = conn.execute(text(
            "SELECT id, display_name FROM app_user WHERE role = 'nurse' AND active = :t "
            + ("AND department = :d " if department and department != ALL_DEPARTMENTS else "")
            + "ORDER BY display_name"),
            {"t": True, "d": department}).all()
    return [dict(r._mapping) for r in rows]


@st.cache_data(ttl=300, show_spinner=False)
def physicians(department: str | None) -> list[dict[str, Any]]:
    with engine().connect() as conn:
        rows = conn.execute(text(
            "SELECT id, display_name FROM app_user WHERE role = 'physician' AND active = :t "
            + ("AND department = :d " if department and department != ALL_DEPARTMENTS else "")
            + "ORDER BY display_name"),
            {"t": True, "d": department}).all()
    return [dict(r._mapping) for r in rows]


def _in_scope_patient(identity: Identity, patient_id: int) -> bool:
    """In the identity's scope, or opened to it by a break-glass grant valid now (checked in SQL)."""
    sql, params = break_glass.scope_sql(identity, now())
    with engine().connect() as conn:
        return conn.execute(text(f"SELECT 1 FROM patient p WHERE p.id = :pid AND {sql}"),
                            dict(params, pid=patient_id)).first() is not None


def patient_alerts(identity: Identity, patient_id: int) -> pd.DataFrame:
    """Active alerts of one patient in the identity's scope (uncached: actions need fresh versions)."""
    require(identity, Action.VIEW_ALERTS)
    if not _in_scope_patient(identity, patient_id):
        return pd.DataFrame()
    with engine().connect() as conn:
        rows = conn.execute(text(
            "SELECT id, version, rule_id, rule_version, severity, status, title, evidence, source, opened_at, "
            "acknowledged_by, snoozed_until, snooze_reason, escalated_at, assigned_to_id FROM alert "
            f"WHERE patient_id = :pid AND status IN {ACTIVE_ALERT_SQL} "
            "ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'routine' THEN 2 ELSE 3 END, opened_at"),
            {"pid": patient_id}).all()
    frame = pd.DataFrame([dict(r._mapping) for r in rows])
    if not frame.empty:
        frame["evidence"] = frame["evidence"].map(json.loads)
    return frame


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=256)
def _alert_list(_identity: Identity, key: tuple, version: int, severity, status, limit) -> pd.DataFrame:
    sql, params = scope_sql(_identity)
    where = [f"a.status IN {ACTIVE_ALERT_SQL}", sql]
    if severity:
        where.append("a.severity = :severity")
    if status:
        where.append("a.status = :status")
    with engine().connect() as conn:
        rows = conn.execute(text(
            "SELECT a.id, a.patient_id, p.mrn, p.family_name || ' ' || p.given_name AS name, a.rule_id, a.severity, "
            "a.status, a.title, a.opened_at, a.acknowledged_by, a.snoozed_until, a.escalated_at, "
            "u.display_name AS holder FROM alert a JOIN patient p ON p.id = a.patient_id "
            "LEFT JOIN app_user u ON u.id = COALESCE(a.assigned_to_id, p.assigned_nurse_id) "
            f"WHERE {' AND '.join(where)} "
            "ORDER BY CASE a.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'routine' THEN 2 ELSE 3 END, "
            "a.opened_at LIMIT :limit"),
            dict(params, severity=severity, status=status, limit=limit)).all()
    return pd.DataFrame([dict(r._mapping) for r in rows])


def alert_list(identity: Identity, *, severity: str | None = None, status: str | None = None,
               limit: int = 2000) -> pd.DataFrame:
    """Active alerts in scope by severity and age, with who holds each (at most ``limit`` rows)."""
    require(identity, Action.VIEW_ALERTS)
    if identity.role not in (Role.NURSE, Role.PHYSICIAN):
        return pd.DataFrame()
    return _alert_list(identity, scope_key(identity), data_version(), severity, status, limit)
