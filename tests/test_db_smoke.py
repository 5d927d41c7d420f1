"""The store itself: migrations, the schema check, and the SQLite settings of design.md."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from db.engine import get_engine, write_session
from db.models import Patient
from db.schema import SchemaOutOfDate, current_revision, head_revision, require_current

ROOT = Path(__file__).parents[1]


def test_upgrade_reaches_head_and_alembic_check_is_clean(db_url):
    engine = get_engine(db_url)
    assert current_revision(engine) == head_revision()
    require_current(engine)
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("alembic")), "-x", f"url={db_url}", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No new upgrade operations detected" in proc.stdout + proc.stderr


def test_empty_database_is_refused_with_the_fix(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SchemaOutOfDate, match="python -m surveillance db upgrade"):
        require_current(engine)


def test_sqlite_pragmas(tmp_path):
    from db.schema import upgrade

    engine = get_engine(f"sqlite:///{tmp_path / 'p.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_derived_writes_skip_the_commit_fsync_and_hand_back_a_full_sync_connection(tmp_path):
    """Recompute transactions run at synchronous=NORMAL; the pooled connection returns to FULL.

    The pool hands the same connection to the next clinical write, which must be FULL again,
    also when the derived transaction failed.
    """
    from db.engine import derived_write
    from db.schema import upgrade

    engine = get_engine(f"sqlite:///{tmp_path / 'd.db'}")
    upgrade(engine)
    with derived_write(engine) as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        conn.execute(text("INSERT INTO recompute_queue (patient_id, queued_at) VALUES (1, '2026-01-01')"))
    with pytest.raises(RuntimeError):
        with derived_write(engine) as conn:
            conn.execute(text("INSERT INTO recompute_queue (patient_id, queued_at) VALUES (2, '2026-01-01')"))
            raise RuntimeError("boom")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL again
        assert conn.execute(text("SELECT patient_id FROM recompute_queue")).scalars().all() == [1]


def test_round_trip_keeps_dates_and_utc(engine):
    from datetime import date

    with write_session(engine) as session:
        session.add(Patient(mrn="RT1", family_name="Ito", given_name="Aki", birth_date=date(1950, 2, 3)))
    with write_session(engine) as session:
        patient = session.exec(__import__("sqlmodel").select(Patient).where(Patient.mrn == "RT1")).one()
        assert patient.birth_date == date(1950, 2, 3)
        assert patient.created_at.utcoffset().total_seconds() == 0


def test_db_upgrade_refuses_a_revision_it_does_not_know_with_a_plain_message(tmp_path):
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('ffffffffffff')"))
    proc = subprocess.run(
        [sys.executable, "-m", "surveillance", "db", "upgrade"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": url},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "revision ffffffffffff" in proc.stderr and "does not know" in proc.stderr
    assert current_revision(engine) == "ffffffffffff"  # nothing was touched


def _predicate_parts(predicate: str | None, columns: set[str]) -> tuple | None:
    """What a partial index's WHERE says, in a form both backends' spellings reduce to."""
    if predicate is None:
        return None
    words = set(re.findall(r"[a-z_]+", predicate.lower()))
    return (
        frozenset(re.findall(r"'([^']*)'", predicate)),
        frozenset(words & columns),
        "not null" in " ".join(predicate.lower().split()),
    )


def test_migrated_indexes_have_the_models_partial_predicates(engine):
    """``alembic check`` does not compare index predicates: a migration that forgets one passes it.

    So every index of the models is looked up in the migrated store, and its WHERE
    clause (or its absence) must say what the model's says.
    """
    from sqlmodel import SQLModel

    dialect = engine.dialect.name
    checked = 0
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            columns = {c.name for c in table.columns}
            for index in table.indexes:
                if dialect == "sqlite":
                    sql = conn.execute(
                        text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"), {"n": index.name}
                    ).scalar_one()
                else:
                    sql = conn.execute(
                        text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": index.name}
                    ).scalar_one()
                stored = sql.split(" WHERE ", 1)[1] if " WHERE " in sql else None
                wanted = index.dialect_options[dialect].get("where")
                wanted = None if wanted is None else str(wanted)
                assert _predicate_parts(stored, columns) == _predicate_parts(wanted, columns), (index.name, sql)
                checked += stored is not None
    assert checked >= 7  # the alert table's partial indexes, at least
