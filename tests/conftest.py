"""Suite-wide rules.

With ``CI=true`` a skipped test is a failed test: CI must never pass by not
running something (a missing PostgreSQL or browser is a broken CI machine).
"""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under CI=true, which is a failure: {reason}"


# ---------------------------------------------------------------------------
# Databases: every database test runs on SQLite and on PostgreSQL.
# ---------------------------------------------------------------------------

import secrets  # noqa: E402

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def _pg_admin_engine():
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture(scope="session")
def pg_server():
    """A throw-away PostgreSQL database for this test session (so parallel runs never collide)."""
    admin = _pg_admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as err:  # noqa: BLE001 - any connection failure means "no server"
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}: {err.__class__.__name__}")
    name = f"t_{os.getpid()}_{secrets.token_hex(3)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    from db.engine import dispose_engines

    dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _reset_pg(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A migrated, empty database URL on each backend."""
    from db.engine import dispose_engines, get_engine
    from db.schema import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = request.getfixturevalue("pg_server")
        dispose_engines()
        _reset_pg(url)
    upgrade(get_engine(url))
    yield url
    dispose_engines()


@pytest.fixture
def engine(db_url):
    from db.engine import get_engine

    return get_engine(db_url)
