"""Reads for the patient page: one patient's record, scores and timeline, inside the identity's scope.

Whichever way a patient id arrives — session state set by another page, the
``?mrn=`` query parameter, the search box — it is only a request: every read
here re-checks it against ``surveillance.access.patient_scope`` in SQL, and a
refusal returns nothing and is audited (``denied.view_patient``).  Unknown
ids are refused the same way as ids outside the scope, so the answer never
tells whether a patient exists.

The scores are computed from the stored record by the pipeline's own engine
(``surveillance.patient_case.case_from_record`` + ``score_case``), so the
explanation a clinician reads is the computation behind the snapshot.  Every
read touches only this patient's rows (primary-key or ``patient_id``-indexed
lookups) and is cached per scope, patient and ``data_version()``.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import text

from dashboard.data.common import CACHE_SECONDS, data_version, engine, now, scope_key, scope_sql
from db.models import ACTIVE_ALERT_SQL
from surveillance import break_glass
from surveillance.access import Action, Identity, require
from surveillance.patient_case import case_from_record
from surveillance.scoring import CaseError, score_case
from surveillance.service import audit_view

#: At most this many search matches are returned.
SEARCH_LIMIT = 50
#: A timeline never draws more than this many events of one kind (the latest ones).
TIMELINE_LIMIT = 500

_PATIENT_COLUMNS = (
    "p.id, p.mrn, p.family_name, p.given_name, p.birth_date, p.sex, p.department, p.primary_site, "
    "p.primary_histology, p.hormone_dependent, p.molecular_targeted_therapy, p.previous_chemotherapy, "
    "p.fit_for_surgery, p.status, p.status_on, p.deceased_on, p.registered_on, p.assigned_nurse_id, "
    "p.zoledronic_regimen, p.bma_not_indicated_reason, p.denosumab_transition_plan, p.version"
)
_LESION_COLUMNS = (
    "id, level, level_span_end, first_seen_on, pain, lesion_type, alignment, collapse, posterolateral, "
    "bilsky_escc, wbb_zones, wbb_layers, wbb_numbering, assessed_on, version"
)
_DATE_FIELDS = ("birth_date", "status_on", "deceased_on", "registered_on", "first_seen_on", "assessed_on",
                "last_imaging_on", "next_imaging_due", "next_bma_due", "recheck_on")


def as_date(value: Any) -> date | None:
    """A date column as a ``date`` (SQLite returns ISO text to untyped reads)."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def as_moment(value: Any) -> datetime | None:
    """A timestamp column as a UTC-aware ``datetime``."""
    if value is None or value == "":
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _row(mapping) -> dict[str, Any]:
    out = dict(mapping)
    for key in _DATE_FIELDS:
        if key in out:
            out[key] = as_date(out[key])
    return out


def _deny(identity: Identity, patient_id: int | None, via: str, detail: dict[str, Any] | None = None) -> None:
    audit_view(engine(), identity, patient_id=patient_id, what="denied.view_patient", now=now(),
               detail={"via": via, "reason": "not in the user's scope or does not exist", **(detail or {})})


# ---------------------------------------------------------------------------
# Finding the patient
# ---------------------------------------------------------------------------


def _like(value: str) -> str:
    """``value`` as a LIKE pattern that matches it literally (escape character ``!``)."""
    return value.replace("!", "!!").replace("%", "!%").replace("_", "!_")


_SEARCH_COLUMNS = ["id", "mrn", "family_name", "given_name", "birth_date", "status"]


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=256)
def _search(_identity: Identity, key: tuple, version: int, query: str, limit: int) -> pd.DataFrame:
    sql, params = scope_sql(_identity)
    select = "SELECT p.id, p.mrn, p.family_name, p.given_name, p.birth_date, p.status FROM patient p "
    with engine().connect() as conn:
        # An exact MRN (typed or scanned) is one unique-index seek; only otherwise scan the names.
        rows = conn.execute(text(f"{select} WHERE p.mrn = :exact AND {sql}"), dict(params, exact=query)).all()
        if not rows:
            needle = f"%{_like(query.lower())}%"
            rows = conn.execute(text(
                f"{select} WHERE {sql} AND (p.mrn LIKE :mrn_prefix ESCAPE '!' "
                "OR LOWER(p.family_name || ' ' || p.given_name) LIKE :family_first ESCAPE '!' "
                "OR LOWER(p.given_name || ' ' || p.family_name) LIKE :given_first ESCAPE '!') "
                "ORDER BY p.family_name, p.given_name, p.mrn LIMIT :limit"),
                dict(params, mrn_prefix=_like(query) + "%", family_first=needle, given_first=needle,
                     limit=limit)).all()
    return pd.DataFrame([_row(r._mapping) for r in rows], columns=_SEARCH_COLUMNS)


def record_search(identity: Identity, patient_ids: list[int]) -> None:
    """Audit one patient search (a query of PHI, E2147 §7.1.9): the ids of the patients listed.

    The query itself is not recorded: it may be a patient's name, and audit rows hold ids, not PHI.
    """
    require(identity, Action.VIEW_PATIENT)
    ids = sorted({int(i) for i in patient_ids})
    audit_view(engine(), identity, patient_id=ids[0] if len(ids) == 1 else None, what="search.patient", now=now(),
               detail={"results": len(ids), "patient_ids": ids})


def search_patients(identity: Identity, query: str, *, limit: int = SEARCH_LIMIT) -> pd.DataFrame:
    """Patients in scope whose MRN starts with, or whose name contains, ``query`` (at most ``limit``)."""
    require(identity, Action.VIEW_PATIENT)
    query = (query or "").strip()[:64]
    if not query:
        return pd.DataFrame(columns=_SEARCH_COLUMNS)
    return _search(identity, scope_key(identity), data_version(), query, min(int(limit), SEARCH_LIMIT))


def resolve_mrn(identity: Identity, mrn: str) -> int | None:
    """The id of the patient with this MRN if in scope; otherwise ``None`` and an audited denial."""
    require(identity, Action.VIEW_PATIENT)
    mrn = (mrn or "").strip()[:32]
    sql, params = scope_sql(identity)
    with engine().connect() as conn:
        found = conn.execute(text(f"SELECT p.id FROM patient p WHERE p.mrn = :mrn AND {sql}"),
                             dict(params, mrn=mrn)).scalar()
        if found is None:
            # Who was asked for goes into the audit trail only, never back to the page.
            target = conn.execute(text("SELECT id FROM patient WHERE mrn = :mrn"), {"mrn": mrn}).scalar()
    if found is None:
        _deny(identity, target, "query_parameter", {"mrn": mrn})
        return None
    return int(found)


# ---------------------------------------------------------------------------
# The record
# ---------------------------------------------------------------------------


def _grant(identity: Identity, patient_id: int) -> tuple[int | None, Any]:
    """The identity's break-glass grant on the patient valid now (uncached) and the time it was checked at.

    Part of every single-patient cache key, so a grant that expires changes the
    key and the next read runs the scope check again, with the grant's time
    condition in SQL (``break_glass.scope_sql``).
    """
    moment = now()
    with engine().connect() as conn:
        return break_glass.active_grant(conn, identity, patient_id, moment), moment


def _scope(identity: Identity, grant_id: int | None, moment) -> tuple[str, dict]:
    return scope_sql(identity) if grant_id is None else break_glass.scope_sql(identity, moment)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=512)
def _record(_identity: Identity, key: tuple, version: int, patient_id: int, grant_id: int | None,
            _moment) -> dict[str, Any] | None:
    sql, params = _scope(_identity, grant_id, _moment)
    with engine().connect() as conn:
        patient = conn.execute(text(
            f"SELECT {_PATIENT_COLUMNS}, u.display_name AS nurse_name FROM patient p "
            f"LEFT JOIN app_user u ON u.id = p.assigned_nurse_id WHERE p.id = :pid AND {sql}"),
            dict(params, pid=patient_id)).first()
        if patient is None:
            return None
        state = conn.execute(text("SELECT * FROM patient_state WHERE patient_id = :pid"), {"pid": patient_id}).first()
        snapshot = conn.execute(text("SELECT * FROM risk_snapshot WHERE patient_id = :pid"),
                                {"pid": patient_id}).first()
        lesions = conn.execute(text(
            f"SELECT {_LESION_COLUMNS} FROM spinal_lesion WHERE patient_id = :pid AND active = :active ORDER BY id"),
            {"pid": patient_id, "active": True}).all()
        queued = conn.execute(text("SELECT MIN(queued_at) FROM recompute_queue WHERE patient_id = :pid"),
                              {"pid": patient_id}).scalar()
    record: dict[str, Any] = {
        "patient": _row(patient._mapping),
        "state": dict(state._mapping) if state is not None else {},
        "snapshot": _row(snapshot._mapping) if snapshot is not None else None,
        "lesions": [_row(r._mapping) for r in lesions],
        "queued_at": as_moment(queued),
        "scores": None,
        "score_error": None,
        "break_glass": None,
    }
    if record["snapshot"] is not None:
        record["snapshot"]["computed_at"] = as_moment(record["snapshot"]["computed_at"])
    try:
        record["scores"] = score_case(case_from_record(record["patient"], record["state"], record["lesions"]))
    except CaseError as err:  # a stored value the engine cannot read: show why instead of guessing
        record["score_error"] = str(err)
    return record


def patient_record(identity: Identity, patient_id: Any, *, via: str = "session") -> dict[str, Any] | None:
    """The patient, latest facts, snapshot, active lesions and ``score_case`` result — or ``None``.

    ``None`` (with an audited denial) for an id outside the identity's scope,
    an unknown id, or something that is not an id at all.
    """
    require(identity, Action.VIEW_PATIENT)
    try:
        pid = int(patient_id)
    except (TypeError, ValueError):
        _deny(identity, None, via, {"requested": str(patient_id)[:64]})
        return None
    grant_id, moment = _grant(identity, pid)
    record = _record(identity, scope_key(identity), data_version(), pid, grant_id, moment)
    if record is None:
        _deny(identity, pid, via)
        return None
    if grant_id is not None:
        record = dict(record, break_glass=_grant_row(grant_id))
    return record


def _grant_row(grant_id: int) -> dict[str, Any]:
    with engine().connect() as conn:
        row = conn.execute(text("SELECT id, reason, granted_at, expires_at FROM break_glass_grant WHERE id = :g"),
                           {"g": grant_id}).one()
    return {"grant_id": row.id, "reason": row.reason, "granted_at": as_moment(row.granted_at),
            "expires_at": as_moment(row.expires_at)}


def record_view(identity: Identity, patient_id: int, *, break_glass_grant: int | None = None) -> None:
    """Audit one view of a patient record (the page calls this once per page view).

    A view under emergency access carries ``"break_glass": <grant id>`` in its detail.
    """
    require(identity, Action.VIEW_PATIENT)
    detail = {"break_glass": int(break_glass_grant)} if break_glass_grant is not None else None
    audit_view(engine(), identity, patient_id=int(patient_id), what="view.patient", now=now(), detail=detail)


def request_emergency_access(identity: Identity, *, reason: str, patient_id: int | None = None,
                             mrn: str | None = None) -> break_glass.Grant:
    """Break the glass for one patient (``surveillance.break_glass.grant``; validated and audited there)."""
    return break_glass.grant(engine(), identity, reason=reason, now=now(), patient_id=patient_id, mrn=mrn)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=512)
def _active_alerts(_identity: Identity, key: tuple, version: int, patient_id: int, grant_id: int | None,
                   _moment) -> list[dict[str, Any]]:
    sql, params = _scope(_identity, grant_id, _moment)
    with engine().connect() as conn:
        rows = conn.execute(text(
            "SELECT a.id, a.rule_id, a.severity, a.status, a.title, a.opened_at FROM alert a "
            f"JOIN patient p ON p.id = a.patient_id WHERE a.patient_id = :pid AND {sql} "
            f"AND a.status IN {ACTIVE_ALERT_SQL} "
            "ORDER BY CASE a.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'routine' THEN 2 ELSE 3 END, "
            "a.opened_at"), dict(params, pid=patient_id)).all()
    return [dict(r._mapping, opened_at=as_moment(r.opened_at)) for r in rows]


def active_alerts(identity: Identity, patient_id: int) -> list[dict[str, Any]]:
    """The patient's active alerts (open, acknowledged, snoozed), most severe first; empty outside scope.

    A read-only summary; acting on an alert goes through the action panel, which
    reads each alert's current version uncached.
    """
    require(identity, Action.VIEW_PATIENT)
    grant_id, moment = _grant(identity, int(patient_id))
    return _active_alerts(identity, scope_key(identity), data_version(), int(patient_id), grant_id, moment)


# ---------------------------------------------------------------------------
# Timeline
# ---------------------------------------------------------------------------

TIMELINE_COLUMNS = ["kind", "start", "end", "value", "label", "severity"]


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=256)
def _timeline(_identity: Identity, key: tuple, version: int, patient_id: int, grant_id: int | None,
              _moment) -> pd.DataFrame:
    sql, params = _scope(_identity, grant_id, _moment)
    p = {"pid": patient_id, "n": TIMELINE_LIMIT}
    events: list[dict[str, Any]] = []
    with engine().connect() as conn:
        if conn.execute(text(f"SELECT 1 FROM patient p WHERE p.id = :pid AND {sql}"),
                        dict(params, pid=patient_id)).first() is None:
            return pd.DataFrame(columns=TIMELINE_COLUMNS)
        for r in conn.execute(text(
                "SELECT performed_on, modality, region FROM imaging_study WHERE patient_id = :pid "
                "ORDER BY performed_on DESC LIMIT :n"), p):
            events.append({"kind": "imaging", "start": r.performed_on, "label": f"{r.modality} · {r.region}"})
        for r in conn.execute(text(
                "SELECT recorded_on, ecog, kps FROM performance_status WHERE patient_id = :pid "
                "ORDER BY recorded_on DESC LIMIT :n"), p):
            if r.ecog is not None:
                events.append({"kind": "ecog", "start": r.recorded_on, "value": float(r.ecog),
                               "label": f"ECOG {r.ecog}" + (f" · KPS {r.kps}" if r.kps is not None else "")})
        for r in conn.execute(text(
                "SELECT given_on, agent, dose_mg FROM bma_administration WHERE patient_id = :pid "
                "ORDER BY given_on DESC LIMIT :n"), p):
            dose = None if r.dose_mg is None else float(r.dose_mg)  # unknown dose (imported)
            events.append({"kind": "bma", "start": r.given_on, "value": dose,
                           "label": f"{r.agent} {dose:g} mg" if dose is not None else f"{r.agent} (dose not given)"})
        for r in conn.execute(text(
                "SELECT occurred_on, event_type, level, emergency FROM skeletal_event WHERE patient_id = :pid "
                "ORDER BY occurred_on DESC LIMIT :n"), p):
            events.append({"kind": "sre", "start": r.occurred_on,
                           "label": r.event_type + (f" · {r.level}" if r.level else "")
                           + (" · emergency" if r.emergency else "")})
        for r in conn.execute(text(
                "SELECT started_on, ended_on, kind, modality, level, dose_gy, fractions FROM treatment "
                "WHERE patient_id = :pid ORDER BY started_on DESC LIMIT :n"), p):
            detail = f"{r.kind}: {r.modality}" + (f" · {r.level}" if r.level else "")
            if r.dose_gy is not None:
                detail += f" · {float(r.dose_gy):g} Gy" + (f"/{r.fractions} fr" if r.fractions else "")
            events.append({"kind": "treatment", "start": r.started_on, "end": r.ended_on, "label": detail})
        for r in conn.execute(text(
                "SELECT opened_at, severity, title, status FROM alert WHERE patient_id = :pid "
                "ORDER BY opened_at DESC LIMIT :n"), p):
            events.append({"kind": "alert", "start": as_moment(r.opened_at), "severity": r.severity,
                           "label": f"{r.title} ({r.status})"})
    frame = pd.DataFrame(events, columns=TIMELINE_COLUMNS)
    if frame.empty:
        return frame
    frame["start"] = [as_date(v) for v in frame["start"]]
    frame["end"] = [as_date(v) for v in frame["end"]]
    return frame.sort_values(["kind", "start"], kind="stable").reset_index(drop=True)


def timeline(identity: Identity, patient_id: int) -> pd.DataFrame:
    """One patient's dated events (imaging, ECOG, BMA doses, SREs, treatments, alerts); empty outside scope."""
    require(identity, Action.VIEW_PATIENT)
    grant_id, moment = _grant(identity, int(patient_id))
    return _timeline(identity, scope_key(identity), data_version(), int(patient_id), grant_id, moment)
