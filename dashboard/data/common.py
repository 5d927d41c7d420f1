"""Shared plumbing for the page reads: the engine, freshness, caching keys, settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import streamlit as st
from sqlalchemy import text
from sqlalchemy.engine import Engine

from db.engine import get_engine
from surveillance.access import Identity, Role, patient_scope
from surveillance.calendar import clinical_day

#: How long a cached page read may be reused; runs also change the cache key.
CACHE_SECONDS = 30


@st.cache_resource(show_spinner=False)
def engine() -> Engine:
    return get_engine()


def now() -> datetime:
    return datetime.now(timezone.utc)


def today():
    """The clinic's local date now (CLINIC_TIMEZONE): the default and the limit of clinical date fields."""
    return clinical_day(now())


def scope_key(identity: Identity) -> tuple:
    """What a cached read must be keyed on so it never crosses users' scopes."""
    return (identity.role.value, identity.user_id if identity.role == Role.NURSE else None, identity.department)


def scope_sql(identity: Identity) -> tuple[str, dict]:
    return patient_scope(identity)


@dataclass(frozen=True)
class RunInfo:
    run_id: int | None
    finished_at: datetime | None
    kind: str | None


@st.cache_data(ttl=5, show_spinner=False)
def latest_run() -> RunInfo:
    with engine().connect() as conn:
        row = conn.execute(text(
            "SELECT id, finished_at, kind FROM job_run WHERE status = 'success' AND trigger != 'service' "
            "ORDER BY id DESC LIMIT 1")).first()
    if row is None:
        return RunInfo(None, None, None)
    finished = row.finished_at
    if isinstance(finished, str):
        finished = datetime.fromisoformat(finished)
    if finished is not None and finished.tzinfo is None:
        finished = finished.replace(tzinfo=timezone.utc)
    return RunInfo(row.id, finished, row.kind)


@st.cache_data(ttl=60, show_spinner=False)
def demo_mode() -> bool:
    with engine().connect() as conn:
        value = conn.execute(text("SELECT value FROM app_setting WHERE key = 'demo_mode'")).scalar()
    return value == "1"


@st.cache_data(ttl=5, show_spinner=False)
def data_version() -> int:
    """Changes whenever any recompute — scheduled or after a form — wrote; part of every cache key."""
    with engine().connect() as conn:
        return int(conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM job_run")).scalar())


def after_write() -> None:
    """Make the next render see what was just written (clears the version and freshness caches)."""
    data_version.clear()
    latest_run.clear()
