"""The database becomes unavailable under a signed-in user (notes/security.md Part 2, test 12), AppTest.

SQLite: ``DATABASE_URL`` now names a file that is not a database (corrupt);
PostgreSQL: a server port nobody listens on.  The page must show a plain
message with a reference id — no traceback, no driver text — and the stale-data
banner naming the last successful recompute this server saw, and show no
patient table as if current; the server log holds the traceback under the same
reference id.
"""

from __future__ import annotations

import logging
import re

import streamlit as st
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.dashboard.conftest import login, new_app
from tests.dashboard.support import EN, everything


def test_database_unavailable_shows_a_reference_id_and_the_stale_banner(app_db, monkeypatch, tmp_path, caplog):
    engine = app_db["engine"]
    with engine.connect() as conn:
        finished = conn.execute(
            text("SELECT finished_at FROM job_run WHERE status = 'success' ORDER BY id DESC LIMIT 1")
        ).scalar()
    at = login(new_app(), engine, "nurse1")
    at.run()
    assert not at.exception
    assert at.dataframe, "the healthy caseload shows its table"

    if engine.dialect.name == "sqlite":
        broken = tmp_path / "corrupt.db"
        broken.write_bytes(b"this is not an SQLite database " * 512)
        url = f"sqlite:///{broken}"
    else:
        url = make_url(app_db["url"]).set(port=1).render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    st.cache_data.clear()
    st.cache_resource.clear()
    with caplog.at_level(logging.ERROR, logger="dashboard"):
        at.run()

    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    reference = re.search(r"Reference: ([0-9a-f]{10})\.", errors[0])
    assert reference, errors[0]
    warnings = [w.value for w in at.warning]
    assert any("Nothing on this page is current" in w and EN.datetime(finished) in w for w in warnings), warnings
    assert not at.dataframe, "no patient table may be shown as current"
    shown = everything(at)
    for leak in ("Traceback", "OperationalError", "DatabaseError", "sqlite3", "psycopg", "port 1", str(tmp_path)):
        assert leak not in shown, leak
    logged = [r for r in caplog.records if reference.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None, "the server log must hold the traceback under the reference"
