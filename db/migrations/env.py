"""Alembic environment: SQLModel metadata, URL from DATABASE_URL (or ``-x url=...``).

``render_as_batch`` on SQLite turns ALTERs into copy-and-move; ``include_name``
keeps autogenerate away from tables this project does not own (the
scheduler's ``apscheduler_jobs``).
"""

from alembic import context
from sqlmodel import SQLModel

import db.models  # noqa: F401  (registers every table on SQLModel.metadata)
from db.engine import get_engine

FOREIGN_TABLES = {"apscheduler_jobs"}

config = context.config
target_metadata = SQLModel.metadata


def include_name(name, type_, parent_names):
    if type_ == "table":
        return name not in FOREIGN_TABLES
    return True


def _url() -> str | None:
    return context.get_x_argument(as_dictionary=True).get("url") or config.attributes.get("url")


def run_migrations_offline() -> None:
    from db.settings import database_url

    context.configure(
        url=_url() or database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = get_engine(_url())
    with engine.connect() as connection:
        _run(connection)
        connection.commit()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
