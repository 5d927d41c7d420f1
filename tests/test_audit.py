"""The audit trail: tamper detection (``audit verify``), append-only guards, least privilege, fail closed.

Tampering is done the way an attacker with DBA rights would: raw SQL after
dropping (SQLite) or disabling (PostgreSQL) the product's triggers.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from db.engine import write_session
from db.privileges import grant_app_role
from surveillance import audit, service
from surveillance.access import Identity, Role
from surveillance.cli import main
from tests import factories

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
N = 6


def _at(i: int) -> datetime:
    """The time of the i-th event (1-based) written by :func:`_chain`."""
    return T0 + timedelta(minutes=i)


def _chain(engine, n: int = N) -> list[int]:
    ids = []
    for i in range(1, n + 1):
        with write_session(engine) as session:
            ids.append(audit.record(session, actor=f"user{i}", action="view.patient", patient_id=100 + i,
                                    detail={"i": i}, now=_at(i)).id)
    return ids


def _unguard(engine) -> None:
    """What a DBA does first: remove the append-only triggers."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            conn.execute(text("ALTER TABLE audit_head DISABLE TRIGGER USER"))
        else:
            for name in ("audit_event_no_update", "audit_event_no_delete", "audit_event_extends_head",
                         "audit_head_forward_only"):
                conn.execute(text(f"DROP TRIGGER {name}"))


def _raw(engine, *statements: str, **params) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), params)


def _verify_cli(db_url, monkeypatch, capsys, *extra: str) -> tuple[int, dict]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    code = main(["audit", "verify", "--json", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out)


# ---------------------------------------------------------------------------
# 1. audit verify: intact and each tampering
# ---------------------------------------------------------------------------


def test_verify_intact_chain_exits_0_with_a_summary(engine, db_url, monkeypatch, capsys):
    ids = _chain(engine)
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert f"intact: {N} events" in out
    assert f"#{ids[-1]} at {_at(N).isoformat()}" in out
    code, report = _verify_cli(db_url, monkeypatch, capsys)
    assert code == 0 and report["ok"] is True and report["events"] == N and report["last_id"] == ids[-1]


def test_verify_names_the_edited_event(engine, db_url, monkeypatch, capsys):
    ids = _chain(engine)
    _unguard(engine)
    _raw(engine, "UPDATE audit_event SET patient_id = 999 WHERE id = :id", id=ids[2])
    code, report = _verify_cli(db_url, monkeypatch, capsys)
    assert code == 1 and report["ok"] is False
    assert report["first_bad_id"] == ids[2]
    assert report["first_bad_at"] == _at(3).isoformat()
    assert "edited" in report["problem"]


def test_verify_names_the_event_after_a_deleted_one(engine, db_url, monkeypatch, capsys):
    ids = _chain(engine)
    _unguard(engine)
    _raw(engine, "DELETE FROM audit_event WHERE id = :id", id=ids[2])
    code, report = _verify_cli(db_url, monkeypatch, capsys)
    assert code == 1
    assert report["first_bad_id"] == ids[3]
    assert report["first_bad_at"] == _at(4).isoformat()
    assert "deleted" in report["problem"] and f"#{ids[1]}" in report["problem"]


def test_verify_names_the_first_reordered_event(engine, db_url, monkeypatch, capsys):
    ids = _chain(engine)
    _unguard(engine)
    columns = "occurred_at, actor, action, patient_id, target, outcome, detail, prev_hash, hash"
    # Swap events 3 and 4 (ids are the order): move 3 aside, 4 into 3's place, 3 into 4's.
    _raw(
        engine,
        "UPDATE audit_event SET id = -1 WHERE id = :a",
        "UPDATE audit_event SET id = :a WHERE id = :b",
        "UPDATE audit_event SET id = :b WHERE id = -1",
        a=ids[2], b=ids[3],
    )
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT {columns} FROM audit_event WHERE id = :a"), {"a": ids[2]}).one().actor == "user4"
    code, report = _verify_cli(db_url, monkeypatch, capsys)
    assert code == 1
    assert report["first_bad_id"] == ids[2]
    assert report["first_bad_at"] == _at(4).isoformat()  # the event now in 3rd place is the 4th one
    assert "out of order" in report["problem"]


def test_verify_catches_a_truncated_tail_through_the_anchor(engine, db_url, monkeypatch, capsys):
    ids = _chain(engine)
    _unguard(engine)
    _raw(engine, "DELETE FROM audit_event WHERE id >= :id", id=ids[4])  # the last two events
    with write_session(engine) as session:  # the chain alone still verifies: the cut is invisible to it
        assert audit.verify_chain(session, anchor=False).ok
    code, report = _verify_cli(db_url, monkeypatch, capsys)
    assert code == 1
    assert report["first_bad_id"] == ids[-1]
    assert report["first_bad_at"] == _at(N).isoformat()
    assert "truncated" in report["problem"] and f"#{ids[3]}" in report["problem"]


def test_rewriting_the_anchor_too_is_caught_only_by_an_external_copy(engine, db_url, monkeypatch, capsys):
    """The documented limit: cut the tail *and* move the anchor back; only a head kept elsewhere sees it."""
    ids = _chain(engine)
    code, kept = _verify_cli(db_url, monkeypatch, capsys)  # shipped to a separate store
    assert code == 0
    _unguard(engine)
    with engine.connect() as conn:
        fourth = conn.execute(text("SELECT hash, occurred_at FROM audit_event WHERE id = :id"), {"id": ids[3]}).one()
    _raw(engine, "DELETE FROM audit_event WHERE id > :id", id=ids[3])
    _raw(engine, "UPDATE audit_head SET last_id = :id, last_hash = :h, events = 4", id=ids[3], h=fourth.hash)
    code, _ = _verify_cli(db_url, monkeypatch, capsys)
    assert code == 0  # the database alone can no longer tell
    code, report = _verify_cli(db_url, monkeypatch, capsys, "--expected-head", kept["head"],
                               "--expected-count", str(kept["events"]))
    assert code == 1 and "external" in report["problem"]


def test_an_event_appended_without_advancing_the_anchor_is_named(engine, db_url, monkeypatch, capsys):
    ids = _chain(engine, 3)
    _unguard(engine)
    body = audit._event_body(_at(9), "intruder", "view.patient", 1, None, "success", "{}")
    with engine.connect() as conn:
        prev = conn.execute(text("SELECT hash FROM audit_event WHERE id = :id"), {"id": ids[-1]}).scalar()
    _raw(engine, "INSERT INTO audit_event (occurred_at, actor, action, patient_id, outcome, detail, prev_hash, hash) "
         "VALUES (:at, 'intruder', 'view.patient', 1, 'success', '{}', :prev, :hash)",
         at=_at(9), prev=prev, hash=audit.chain_hash(prev, body))
    code, report = _verify_cli(db_url, monkeypatch, capsys)
    assert code == 1
    assert report["first_bad_id"] > ids[-1]
    assert "without advancing the anchor" in report["problem"]


def test_audit_verify_as_a_command_sets_the_exit_status(engine, db_url):
    ids = _chain(engine, 3)
    env = dict(os.environ, DATABASE_URL=db_url)
    ok = subprocess.run([sys.executable, "-m", "surveillance", "audit", "verify"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "intact: 3 events" in ok.stdout
    _unguard(engine)
    _raw(engine, "UPDATE audit_event SET actor = 'someone-else' WHERE id = :id", id=ids[0])
    bad = subprocess.run([sys.executable, "-m", "surveillance", "audit", "verify"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert f"event #{ids[0]} ({_at(1).isoformat()})" in bad.stderr and "edited" in bad.stderr


# ---------------------------------------------------------------------------
# 2. Append-only enforcement in the database
# ---------------------------------------------------------------------------


def _refused(engine, statement: str, **params) -> str:
    with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
        conn.execute(text(statement), params)
    return str(caught.value.orig)


def test_the_database_refuses_update_and_delete_of_audit_events(engine):
    ids = _chain(engine, 3)
    assert "append-only" in _refused(engine, "UPDATE audit_event SET actor = 'x' WHERE id = :id", id=ids[1])
    assert "append-only" in _refused(engine, "DELETE FROM audit_event WHERE id = :id", id=ids[1])
    assert "append-only" in _refused(engine, "DELETE FROM audit_event")
    if engine.dialect.name == "postgresql":
        assert "append-only" in _refused(engine, "TRUNCATE audit_event")
    # An event that does not extend the head (a forged one slipped into the chain) is refused too.
    assert "audit_head" in _refused(
        engine, "INSERT INTO audit_event (occurred_at, actor, action, outcome, detail, prev_hash, hash) "
        "VALUES (:at, 'x', 'y', 'success', '{}', :prev, :h)", at=_at(9), prev=audit.GENESIS, h="f" * 64)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM audit_event")).scalar() == 3
    assert audit.verify(engine).ok


def test_the_anchor_only_moves_forward_by_one_appended_event(engine):
    ids = _chain(engine, 3)
    with engine.connect() as conn:
        second = conn.execute(text("SELECT hash FROM audit_event WHERE id = :id"), {"id": ids[1]}).scalar()
    assert "advance" in _refused(engine, "UPDATE audit_head SET last_id = :id, last_hash = :h, events = 2",
                                 id=ids[1], h=second)  # backwards (a cut tail re-anchored)
    assert "advance" in _refused(engine, "UPDATE audit_head SET events = events + 1")  # no new event
    assert _refused(engine, "DELETE FROM audit_head")
    assert _refused(engine, "INSERT INTO audit_head (id, last_id, last_hash, events) VALUES (2, 0, :g, 0)",
                    g=audit.GENESIS)
    if engine.dialect.name == "postgresql":
        assert "append-only" in _refused(engine, "TRUNCATE audit_head")
    with write_session(engine) as session:  # the legitimate path still works
        audit.record(session, actor="after", action="login", now=_at(10))
    report = audit.verify(engine)
    assert report.ok and report.events == 4


def test_the_pg_application_role_cannot_change_the_audit_trail(engine, db_url):
    """Least privilege (PostgreSQL): the app role appends through ``audit.record`` and cannot change a row."""
    if engine.dialect.name == "sqlite":
        with pytest.raises(ValueError, match="only on PostgreSQL"):
            grant_app_role(engine, "app_role")
        return
    role = f"app_{secrets.token_hex(4)}"
    _raw(engine, f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
    app = create_engine(make_url(db_url).set(username=role, password=None))
    try:
        statements = grant_app_role(engine, role)
        assert any("REVOKE UPDATE, DELETE, TRUNCATE" in s and "audit_event" in s for s in statements)
        with write_session(app) as session:
            event = audit.record(session, actor="nurse1", action="view.patient", patient_id=1, now=_at(1))
        for statement in ("UPDATE audit_event SET actor = 'x'", "DELETE FROM audit_event", "TRUNCATE audit_event",
                          "DELETE FROM audit_head", "TRUNCATE audit_head", "DROP TABLE audit_event",
                          "ALTER TABLE audit_event DISABLE TRIGGER USER"):
            message = _refused(app, statement)
            assert "permission denied" in message or "must be owner" in message, (statement, message)
        # The application still works: a clinical write (with its re-score and audit event) as the role.
        nurse_id = factories.add_users(engine)["nurse1"]
        nurse = Identity(nurse_id, "nurse1", "Nurse One", Role.NURSE, "oncology")
        created = service.create_patient(app, nurse, mrn="R0001", family_name="A", given_name="B",
                                         now=_at(2))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM risk_snapshot WHERE patient_id = :p"),
                                {"p": created.patient_id}).scalar() == 1
        report = audit.verify(engine)
        assert report.ok and report.events == 2 and report.last_id > event.id
    finally:
        app.dispose()
        _raw(engine, f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"')


def test_grant_app_role_prints_its_sql_and_refuses_odd_names(engine, db_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["db", "grant-app-role", "app_reader", "--print"]) == 0
    out = capsys.readouterr().out
    assert 'REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_event FROM "app_reader";' in out
    assert main(["db", "grant-app-role", 'x"; DROP TABLE patient; --', "--print"]) == 2
    assert "not a plain role name" in capsys.readouterr().err


def test_random_tampering_is_always_named_at_the_right_event(engine):
    """security.md test 40: random edits, deletions, swaps and cut tails; each in a rolled-back transaction."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from sqlmodel import Session

    ids = _chain(engine, 12)
    edits = {
        "actor": "'mallory'",
        "patient_id": "patient_id + 1",
        "outcome": "'failure'",
        "detail": "detail || ' '",
        "target": "'x'",
        "occurred_at": "occurred_at - interval '1 day'" if engine.dialect.name == "postgresql"
        else "replace(occurred_at, '2026-11-01', '2026-10-31')",  # backdated
    }

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(kind=st.sampled_from(["edit", "delete", "swap", "truncate"]), k=st.integers(0, 10),
           column=st.sampled_from(sorted(edits)))
    def check(kind, k, column):
        with engine.connect() as conn:
            transaction = conn.begin()
            try:
                if engine.dialect.name == "postgresql":
                    conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
                else:
                    conn.execute(text("DROP TRIGGER audit_event_no_update"))
                    conn.execute(text("DROP TRIGGER audit_event_no_delete"))
                if kind == "edit":
                    conn.execute(text(f"UPDATE audit_event SET {column} = {edits[column]} WHERE id = :id"),
                                 {"id": ids[k]})
                    expected, words = ids[k], "edited"
                elif kind == "delete":
                    conn.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": ids[k]})
                    expected, words = ids[k + 1], "deleted"
                elif kind == "swap":
                    for a, b in ((ids[k], -1), (ids[k + 1], ids[k]), (-1, ids[k + 1])):
                        conn.execute(text("UPDATE audit_event SET id = :b WHERE id = :a"), {"a": a, "b": b})
                    expected, words = ids[k], "out of order"
                else:
                    conn.execute(text("DELETE FROM audit_event WHERE id >= :id"), {"id": ids[k + 1]})
                    expected, words = ids[-1], "truncated"
                report = audit.verify_chain(Session(bind=conn))
            finally:
                transaction.rollback()
        assert not report.ok
        assert report.first_bad_id == expected, (kind, k, column, report)
        assert words in report.problem

    check()
    assert audit.verify(engine).ok  # every tampering was rolled back


def test_upgrading_a_database_with_events_anchors_its_existing_chain(db_url):
    """The real path for an installed product: events written before this migration, then ``db upgrade``."""
    from alembic import command

    from db.engine import dispose_engines, get_engine
    from db.schema import alembic_config, upgrade
    from tests.conftest import _reset_pg

    dispose_engines()
    if db_url.startswith("sqlite"):
        Path(make_url(db_url).database).unlink()
    else:
        _reset_pg(db_url)
    engine = get_engine(db_url)
    with engine.begin() as conn:
        config = alembic_config(engine)
        config.attributes["connection"] = conn
        command.upgrade(config, "db65b5a673e4")  # the revision before the audit guards
    prev = audit.GENESIS
    with engine.begin() as conn:  # the chain as the previous version wrote it (no anchor)
        for i in (1, 2, 3):
            body = audit._event_body(_at(i), f"user{i}", "login", None, None, "success", "{}")
            digest = audit.chain_hash(prev, body)
            conn.execute(text("INSERT INTO audit_event (occurred_at, actor, action, outcome, detail, prev_hash, hash) "
                              "VALUES (:at, :actor, 'login', 'success', '{}', :prev, :hash)"),
                         {"at": _at(i), "actor": f"user{i}", "prev": prev, "hash": digest})
            prev = digest
    upgrade(engine)
    report = audit.verify(engine)
    assert report.ok and report.events == 3 and report.head == prev
    with write_session(engine) as session:
        audit.record(session, actor="after", action="login", now=_at(4))
    assert audit.verify(engine).events == 4
    _unguard(engine)
    _raw(engine, "DELETE FROM audit_event WHERE actor = 'after'")
    assert "truncated" in audit.verify(engine).problem
