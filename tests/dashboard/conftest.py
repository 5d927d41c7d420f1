"""AppTest fixtures: a populated database (SQLite and PostgreSQL) and signed-in sessions.

Sessions are real: ``login(at, username)`` puts the SessionRecord that
``surveillance.sessions.authenticate`` returns for a real user into the session
state, so every page run goes through the same server-side session check as
the browser.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from surveillance.pipeline import recompute
from surveillance.sessions import authenticate
from tests import factories

APP = str(Path(__file__).parents[2] / "streamlit_app.py")
NOW = datetime.now(timezone.utc)


@pytest.fixture
def app_db(db_url, monkeypatch):
    """A database with users, 200 varied patients and a full recompute; DATABASE_URL points at it."""
    from db.engine import get_engine

    engine = get_engine(db_url)
    users = factories.add_users(engine)
    ids = factories.add_patients(engine, 200, seed=21, nurse_ids=[users["nurse1"], users["nurse2"]])
    recompute(engine, full=True, now=NOW)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SURVEILLANCE_INPROCESS_SCHEDULER", "0")
    st.cache_data.clear()
    st.cache_resource.clear()
    yield {"engine": engine, "users": users, "patients": ids, "url": db_url}
    st.cache_data.clear()
    st.cache_resource.clear()


def new_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60)


def login(at: AppTest, engine, username: str, password: str = factories.PASSWORD) -> AppTest:
    at.session_state["auth"] = authenticate(engine, username, password, now=datetime.now(timezone.utc))
    return at


def page(at: AppTest, name: str) -> AppTest:
    """Run the app, then open ``dashboard/app_pages/<name>.py`` (it must be in the role's navigation)."""
    at.run()
    return at.switch_page(f"dashboard/app_pages/{name}.py").run()


__all__ = ["APP", "NOW", "login", "new_app", "page"]
os.environ.setdefault("SURVEILLANCE_INPROCESS_SCHEDULER", "0")
