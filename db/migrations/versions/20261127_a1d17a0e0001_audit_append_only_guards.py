"""audit trail: append-only guards and the chain's head anchor

* ``audit_head``: one row (``id = 1``) holding the last event's id, hash and time
  and the number of events; ``surveillance.audit.record`` advances it in the same
  transaction as each append, so a cut tail no longer matches it.
* Triggers on both backends:
  - ``audit_event`` refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL), and an
    INSERT whose ``prev_hash`` is not the head's hash (every event extends the chain);
  - ``audit_head`` refuses DELETE, TRUNCATE and a second row, and an UPDATE that
    does not move it exactly one event forward, onto an existing event that links
    to the old head.
* Triggers stop the application and mistakes, not a database superuser/owner, who
  can drop them: the hash chain and the anchor detect what such a person does,
  short of rewriting both (only a copy of the head kept outside the database,
  ``python -m surveillance audit verify --json`` output shipped elsewhere, catches
  that).  On PostgreSQL the application role should also lack UPDATE/DELETE/TRUNCATE
  on the audit tables: ``python -m surveillance db grant-app-role ROLE``.

Revision ID: a1d17a0e0001
Revises: db65b5a673e4
Create Date: 2026-11-27 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = 'a1d17a0e0001'
down_revision: str | None = 'db65b5a673e4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64

_SEED = (
    "INSERT INTO audit_head (id, last_id, last_hash, last_at, events) "
    "SELECT 1, COALESCE(MAX(id), 0), "
    f"COALESCE((SELECT hash FROM audit_event ORDER BY id DESC LIMIT 1), '{GENESIS}'), "
    "(SELECT occurred_at FROM audit_event ORDER BY id DESC LIMIT 1), COUNT(*) FROM audit_event"
)

_SQLITE = [
    """CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
    BEGIN SELECT RAISE(ABORT, 'audit_event is append-only: UPDATE is refused'); END""",
    """CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
    BEGIN SELECT RAISE(ABORT, 'audit_event is append-only: DELETE is refused'); END""",
    """CREATE TRIGGER audit_event_extends_head BEFORE INSERT ON audit_event
    WHEN NEW.prev_hash IS NOT (SELECT last_hash FROM audit_head WHERE id = 1)
    BEGIN SELECT RAISE(ABORT, 'audit_event: a new event must link to audit_head.last_hash'); END""",
    """CREATE TRIGGER audit_head_one_row BEFORE INSERT ON audit_head
    WHEN (SELECT COUNT(*) FROM audit_head) > 0
    BEGIN SELECT RAISE(ABORT, 'audit_head holds one row'); END""",
    """CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
    BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END""",
    """CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head
    WHEN NEW.id IS NOT OLD.id OR NEW.events IS NOT OLD.events + 1 OR NEW.last_id <= OLD.last_id
      OR NOT EXISTS (SELECT 1 FROM audit_event e
                     WHERE e.id = NEW.last_id AND e.hash = NEW.last_hash AND e.prev_hash = OLD.last_hash)
    BEGIN SELECT RAISE(ABORT, 'audit_head may only advance by one appended event'); END""",
]
_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS audit_event_no_update",
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
    "DROP TRIGGER IF EXISTS audit_event_extends_head",
    "DROP TRIGGER IF EXISTS audit_head_one_row",
    "DROP TRIGGER IF EXISTS audit_head_no_delete",
    "DROP TRIGGER IF EXISTS audit_head_forward_only",
]

_PG = [
    """CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only: % is refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$""",
    """CREATE OR REPLACE FUNCTION audit_event_extends_head() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.prev_hash IS DISTINCT FROM (SELECT last_hash FROM audit_head WHERE id = 1) THEN
            RAISE EXCEPTION 'audit_event: a new event must link to audit_head.last_hash'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF EXISTS (SELECT 1 FROM audit_head) THEN
                RAISE EXCEPTION 'audit_head holds one row' USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN NEW;
        END IF;
        IF NEW.id IS DISTINCT FROM OLD.id OR NEW.events IS DISTINCT FROM OLD.events + 1
           OR NEW.last_id <= OLD.last_id
           OR NOT EXISTS (SELECT 1 FROM audit_event e
                          WHERE e.id = NEW.last_id AND e.hash = NEW.last_hash AND e.prev_hash = OLD.last_hash) THEN
            RAISE EXCEPTION 'audit_head may only advance by one appended event'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
    "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
    "CREATE TRIGGER audit_event_extends_head BEFORE INSERT ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_extends_head()",
    "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
    "CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
    "CREATE TRIGGER audit_head_guard BEFORE INSERT OR UPDATE ON audit_head "
    "FOR EACH ROW EXECUTE FUNCTION audit_head_guard()",
]
_PG_DROP = [
    "DROP TRIGGER IF EXISTS audit_event_no_change ON audit_event",
    "DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event",
    "DROP TRIGGER IF EXISTS audit_event_extends_head ON audit_event",
    "DROP TRIGGER IF EXISTS audit_head_no_delete ON audit_head",
    "DROP TRIGGER IF EXISTS audit_head_no_truncate ON audit_head",
    "DROP TRIGGER IF EXISTS audit_head_guard ON audit_head",
    "DROP FUNCTION IF EXISTS audit_event_extends_head()",
    "DROP FUNCTION IF EXISTS audit_head_guard()",
    "DROP FUNCTION IF EXISTS audit_refuse_change()",
]


def upgrade() -> None:
    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last_id', sa.Integer(), nullable=False),
    sa.Column('last_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('last_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.CheckConstraint('id = 1', name='ck_audit_head_one_row'),
    sa.PrimaryKeyConstraint('id')
    )
    op.execute(_SEED)
    for statement in _PG if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _PG_DROP if op.get_bind().dialect.name == "postgresql" else _SQLITE_DROP:
        op.execute(statement)
    op.drop_table('audit_head')
