"""Backup and restore (notes/security.md Part 2, test 49), on SQLite and PostgreSQL, through the real CLI.

* round trip: demo data → ``backup`` → facts changed and deleted → ``restore``
  refused without ``--yes`` (nothing touched) → ``restore --yes`` → every table
  has its original rows (counts and a content hash), the audit trail is the
  original one plus one ``backup.restore`` event, and its chain verifies;
* a restore checks the backup first: a corrupt file, a file of the other
  backend and a backup at a schema revision this code does not know are
  refused and the database is left as it was;
* a backup never overwrites a file;
* SQLite: a naive copy of the ``.db`` file without its ``-wal`` loses the latest
  commit, the online backup does not (the regression test that keeps anyone
  from "simplifying" the backup to ``cp``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from db.engine import dispose_engines, get_engine, read_session
from surveillance import audit, service
from surveillance.access import ALL_DEPARTMENTS, Identity, Role
from surveillance.backup import BackupError, backup, inspect_backup, restore
from surveillance.calendar import clinical_day
from surveillance.demo import generate_demo
from surveillance.pipeline import recompute
from surveillance.users import add_user

ROOT = Path(__file__).parents[1]
AUDIT_TABLES = {"audit_event", "audit_head"}


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=db_url)
    return subprocess.run(
        [sys.executable, "-m", "surveillance", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def table_digest(engine) -> dict[str, tuple[int, str]]:
    """Every table: (row count, sha256 of its rows in primary-key order)."""
    tables = inspect(engine).get_table_names()
    out = {}
    with engine.connect() as conn:
        for table in sorted(tables):
            key = inspect(engine).get_pk_constraint(table)["constrained_columns"] or [
                c["name"] for c in inspect(engine).get_columns(table)
            ]
            order = ", ".join(f'"{c}"' for c in key)
            rows = conn.execute(text(f'SELECT * FROM "{table}" ORDER BY {order}')).all()
            out[table] = (len(rows), hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest())
    return out


def audit_rows(engine, upto: int | None = None) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, actor, action, hash FROM audit_event WHERE id <= :u ORDER BY id"), {"u": upto or 10**12}
        ).all()
    return [tuple(r) for r in rows]


@pytest.fixture
def demo(engine):
    now = datetime.now(UTC)
    generate_demo(engine, patients=300, seed=5, today=clinical_day(now))
    recompute(engine, full=True, now=now, trigger="cli")
    doctor_id = add_user(
        engine, actor="test", username="backupdoc", role="physician", password="a-long-test-password-1", now=now
    )
    doctor = Identity(doctor_id, "backupdoc", "Backup Doc", Role.PHYSICIAN, ALL_DEPARTMENTS)
    with engine.connect() as conn:
        pids = [r[0] for r in conn.execute(text("SELECT id FROM patient ORDER BY id LIMIT 3"))]
    for pid in pids:
        service.record_performance_status(engine, doctor, pid, recorded_on=clinical_day(now), ecog=2, now=now)
    return {"doctor": doctor, "pids": pids, "now": now}


def test_round_trip_restores_every_row_and_the_audit_chain(db_url, engine, demo, tmp_path):
    path = tmp_path / "surveillance.backup"
    original = table_digest(engine)
    original_audit = audit_rows(engine)
    assert original["patient"][0] == 300 and original["performance_status"][0] > 0 and len(original_audit) >= 4

    made = cli(db_url, "backup", str(path))
    assert made.returncode == 0, made.stderr
    assert path.is_file() and "backup written" in made.stderr
    with engine.connect() as conn:
        event = conn.execute(text("SELECT actor, action FROM audit_event ORDER BY id DESC LIMIT 1")).one()
    assert event.action == "backup.create" and event.actor.startswith("cli:")
    assert cli(db_url, "backup", str(path)).returncode == 2, "a backup must never overwrite a file"

    # Changes after the backup: a new fact through the service, facts lost, a patient edited.
    doctor, pid = demo["doctor"], demo["pids"][0]
    service.record_bma_dose(
        engine, doctor, pid, given_on=clinical_day(demo["now"]), agent="denosumab", dose_mg=120, now=demo["now"]
    )
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM lab_result"))
        conn.execute(text("UPDATE patient SET primary_histology = 'changed after backup' WHERE id = :p"), {"p": pid})
    changed = table_digest(engine)
    events_before_restore = len(audit_rows(engine))
    assert events_before_restore == len(original_audit) + 2  # backup.create and record.bma_dose
    assert changed["lab_result"][0] == 0 and changed["patient"] != original["patient"]

    refused = cli(db_url, "restore", str(path))
    assert refused.returncode == 2
    assert "--yes" in refused.stderr and "checked out" in refused.stderr
    dispose_engines()
    assert table_digest(get_engine(db_url)) == changed, "a refused restore touched the database"

    restored = cli(db_url, "restore", str(path), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert "chain intact" in restored.stderr
    dispose_engines()
    engine = get_engine(db_url)
    after = table_digest(engine)
    assert set(after) == set(original)
    for table in set(original) - AUDIT_TABLES:
        assert after[table] == original[table], f"{table} differs after the restore"
    # The audit trail: the original events, then the restore itself (the backup.create event and
    # everything after the backup are gone with the data they described, and counted in the restore event).
    events = audit_rows(engine)
    assert events[: len(original_audit)] == original_audit
    assert [e[2] for e in events[len(original_audit) :]] == ["backup.restore"]
    with engine.connect() as conn:
        detail = conn.execute(text("SELECT detail FROM audit_event ORDER BY id DESC LIMIT 1")).scalar()
    assert f'"replaced_audit_events":{events_before_restore}' in detail
    with read_session(engine) as session:
        report = audit.verify_chain(session)
    assert report.ok, report.problem
    assert report.events == len(original_audit) + 1


def test_restore_refuses_bad_backups_and_leaves_the_database_alone(db_url, engine, demo, tmp_path):
    now = demo["now"]
    good = tmp_path / "good.backup"
    backup(engine, good, actor="test", now=now)
    before = table_digest(engine)

    corrupt = tmp_path / "corrupt.backup"
    data = bytearray(good.read_bytes())
    # Keep the header (so it is recognised) and wreck the rest.
    for i in range(4096, len(data), 97):
        data[i] = (data[i] + 1) % 256
    corrupt.write_bytes(bytes(data))
    other = tmp_path / "other-backend.backup"
    if engine.dialect.name == "sqlite":
        other.write_bytes(b"PGDMP" + bytes(200))
    else:
        sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    missing = tmp_path / "missing.backup"
    for bad, expected in (
        (corrupt, "was not restored" if engine.dialect.name == "sqlite" else "failed"),
        (other, "backup; DATABASE_URL names a"),
        (missing, "does not exist"),
    ):
        with pytest.raises(BackupError) as err:
            restore(engine, bad, actor="test", now=now, confirm=True)
        assert expected in str(err.value), str(err.value)
    assert table_digest(engine) == before

    # A backup made by a version this code does not know (an unknown revision) is refused.
    with engine.begin() as conn:
        real = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    future = tmp_path / "future.backup"
    try:
        backup(engine, future, actor="test", now=now)
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": real})
    with pytest.raises(BackupError, match="ffffffffffff, which this version of the product does not know"):
        restore(engine, future, actor="test", now=now, confirm=True)
    assert inspect_backup(engine, good) == (engine.dialect.name, real)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == real


def test_a_file_copy_without_the_wal_loses_a_commit_the_online_backup_keeps(tmp_path):
    """SQLite only: the -wal file is SQLite's; PostgreSQL has no file a person could copy instead."""
    from db.schema import upgrade

    url = f"sqlite:///{tmp_path / 'live.db'}"
    engine = get_engine(url)
    upgrade(engine)
    try:
        with engine.connect() as conn:  # held open: SQLite checkpoints the WAL when the last connection closes
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # the schema is in the .db file; the row won't be
            with engine.begin() as writer_conn:
                writer_conn.execute(
                    text("INSERT INTO app_setting (key, value, updated_at) VALUES ('k', 'v', :t)"),
                    {"t": datetime.now(UTC)},
                )
            copied = tmp_path / "copied.db"
            shutil.copyfile(tmp_path / "live.db", copied)
            backed_up = tmp_path / "online.backup"
            backup(engine, backed_up, actor="test", now=datetime.now(UTC))
            conn.execute(text("SELECT 1"))
        read = lambda p: sqlite3.connect(p).execute("SELECT key FROM app_setting").fetchall()  # noqa: E731
        assert read(copied) == []
        assert read(backed_up) == [("k",)]
        assert sqlite3.connect(backed_up).execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        dispose_engines()
