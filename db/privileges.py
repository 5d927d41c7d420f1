"""Least privilege for the application's PostgreSQL role.

The schema is owned by the role that runs the migrations (``db upgrade``); the
application (dashboard, scheduler, CLI) should connect as a separate login
role made with :func:`app_role_statements` — ``python -m surveillance db
grant-app-role ROLE`` runs them (``--print`` only shows them):

* read and write on the clinical and derived tables;
* ``audit_event``: SELECT and INSERT only (no UPDATE, DELETE or TRUNCATE);
* ``audit_head``: SELECT and UPDATE only (the append path advances it; triggers
  allow only a one-event step forward);
* ``alembic_version``: SELECT only; no DDL (it owns nothing, so it cannot DROP or
  ALTER a table or a trigger).

Run it again after each ``db upgrade`` that adds tables.  The role itself
(``CREATE ROLE … LOGIN PASSWORD …``) is made by the DBA; passwords are not this
product's business.  Not applicable to SQLite, which has no roles (its file
permissions are the boundary, and triggers refuse audit changes).
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import Engine

ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
AUDIT_TABLES = ("audit_event", "audit_head")


def app_role_statements(role: str, database: str) -> list[str]:
    if not ROLE_RE.match(role or ""):
        raise ValueError(f"{role!r} is not a plain role name (lowercase letters, digits, '_'; at most 63)")
    if not database or '"' in database:
        raise ValueError(f"{database!r} is not a database name this command can quote")
    r = f'"{role}"'
    return [
        f'GRANT CONNECT ON DATABASE "{database}" TO {r}',
        f"GRANT USAGE ON SCHEMA public TO {r}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_event FROM {r}",
        f"REVOKE INSERT, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_head FROM {r}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {r}",
        f"REVOKE CREATE ON SCHEMA public FROM {r}",
    ]


def grant_app_role(engine: Engine, role: str) -> list[str]:
    """Apply :func:`app_role_statements` to the (existing) ``role``; returns the statements run."""
    if engine.dialect.name != "postgresql":
        raise ValueError("application roles exist only on PostgreSQL; SQLite has no roles")
    statements = app_role_statements(role, engine.url.database or "")
    with engine.begin() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar()
        if not exists:
            raise ValueError(f"role {role} does not exist; create it first (CREATE ROLE {role} LOGIN PASSWORD '…')")
        for statement in statements:
            conn.execute(text(statement))
    return statements
