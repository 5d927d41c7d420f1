"""Schema version: upgrade to the Alembic head, and refuse to run on an old schema.

Migrations are the only way the schema changes (never ``create_all``).  Every
command except ``score``, ``demo`` and ``db upgrade`` calls :func:`require_current`
first, so an out-of-date database stops with a message that names the fix.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
UPGRADE_COMMAND = "python -m surveillance db upgrade"


class SchemaOutOfDate(RuntimeError):
    """The database schema is not the one this code expects."""


def alembic_config(engine: Engine) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "db" / "migrations"))
    config.attributes["url"] = engine.url.render_as_string(hide_password=False)
    return config


def head_revision() -> str:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "db" / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


def known_revisions() -> set[str]:
    """Every revision in this code's migration history (a backup at one of these can be restored)."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "db" / "migrations"))
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database to the head revision (creates every table on an empty database).

    A database stamped with a revision this code does not know (made by a newer or
    a different version of the product) is refused with :class:`SchemaOutOfDate`.
    """
    current = current_revision(engine)
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "db" / "migrations"))
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if current is not None and current not in known:
        raise SchemaOutOfDate(
            f"the database {engine.url.render_as_string(hide_password=True)} is at revision {current}, which this "
            "version of the product does not know (a newer or different version made it); it cannot be upgraded. "
            "Use the version that made it, or restore a backup made by this version."
        )
    with engine.begin() as conn:
        config = alembic_config(engine)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def require_current(engine: Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "empty (no schema)" if current is None else f"at revision {current}"
        raise SchemaOutOfDate(
            f"the database {engine.url.render_as_string(hide_password=True)} is {state}; this version needs "
            f"revision {head}. Run `{UPGRADE_COMMAND}` (or `python -m surveillance demo` for a demo database)."
        )
