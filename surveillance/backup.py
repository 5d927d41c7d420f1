"""Backup and restore of the whole database: ``python -m surveillance backup|restore PATH``.

* **SQLite**: SQLite's online backup API (``sqlite3.Connection.backup``), never a
  file copy — a copy of the ``.db`` file without its ``-wal`` misses the latest
  commits, and a copy taken during a write can be corrupt (``notes/security.md``
  §1.5, P-D6).  The backup is written beside its destination and renamed into
  place only after ``PRAGMA integrity_check`` returns ``ok``.
* **PostgreSQL**: ``pg_dump -Fc`` and ``pg_restore --clean --if-exists
  --single-transaction`` (Debian's ``postgresql-client``), with the connection
  parameters of ``DATABASE_URL`` passed as ``PG*`` environment variables (the
  password never appears on a command line).  A restore that fails part-way is
  rolled back as a whole.

A restore checks the backup before touching anything: it must be readable (the
SQLite ``integrity_check``; the PostgreSQL archive's table of contents), of the
same backend as the target, and at a schema revision this version of the code
knows (``db/schema.py``; an older known revision is upgraded after the restore).
It refuses to replace the database unless the caller confirms (``--yes``).
Both are audited: ``backup.create`` (in the live database, after the backup, so
it is not in the file) and ``backup.restore`` (in the restored database, with
the number and last hash of the audit events it replaced, so the cut is on
record, and how long the restore took).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine, make_url

from db.engine import dispose_engines, is_sqlite, read_session, write_session
from db.schema import current_revision, head_revision, known_revisions, upgrade
from surveillance import audit

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_CUSTOM_MAGIC = b"PGDMP"
#: ``DATABASE_URL`` query parameters handed to pg_dump/pg_restore as libpq environment variables.
LIBPQ_QUERY_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
}


class BackupError(Exception):
    """A backup or restore that was refused or failed; the message says why and what to do."""


class ConfirmationRequired(BackupError):
    """The restore would replace a database and was not confirmed."""


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    backend: str
    revision: str | None
    size_bytes: int
    sha256: str
    seconds: float


@dataclass(frozen=True)
class RestoreInfo:
    path: Path
    backend: str
    revision: str
    upgraded_to: str | None
    replaced_audit_events: int | None
    audit_events: int
    audit_chain_ok: bool
    audit_problem: str | None
    seconds: float


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sqlite_file(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"cannot back up or restore the SQLite database {database or ':memory:'!r}: not a file")
    return Path(database)


def _pg_env(engine: Engine) -> dict[str, str]:
    url = make_url(engine.url.render_as_string(hide_password=False))
    env = dict(os.environ)
    for key, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
    ):
        if value is not None:
            env[key] = str(value)
    for key, value in url.query.items():
        if key in LIBPQ_QUERY_ENV:
            env[LIBPQ_QUERY_ENV[key]] = value if isinstance(value, str) else value[0]
    return env


def _run_tool(args: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    tool = shutil.which(args[0])
    if tool is None:
        raise BackupError(
            f"{args[0]} is not installed: install the PostgreSQL client tools (apt-get install postgresql-client)"
        )
    done = subprocess.run([tool, *args[1:]], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{what} failed ({args[0]} exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def _audit_state(engine: Engine) -> tuple[int, str | None] | None:
    """(events, last hash) of the audit trail, or None when the database has no audit table."""
    try:
        if "audit_event" not in inspect(engine).get_table_names():
            return None
        with engine.connect() as conn:
            count = conn.execute(text("SELECT COUNT(*) FROM audit_event")).scalar()
            last = conn.execute(text("SELECT hash FROM audit_event ORDER BY id DESC LIMIT 1")).scalar()
        return int(count), last
    except Exception:  # noqa: BLE001 - a broken target is what a restore repairs
        return None


# ---------------------------------------------------------------------------
# Backup
# ---------------------------------------------------------------------------


def backup(engine: Engine, destination: str | Path, *, actor: str, now: datetime) -> BackupInfo:
    """Write a consistent copy of the whole database to ``destination`` (which must not exist)."""
    destination = Path(destination)
    if destination.exists():
        raise BackupError(f"{destination} already exists; choose a new file name (a backup never overwrites)")
    if not destination.parent.is_dir():
        raise BackupError(f"the directory {destination.parent} does not exist")
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    started = time.perf_counter()
    revision = current_revision(engine)
    try:
        if is_sqlite(engine):
            source_path = _sqlite_file(engine)
            if not source_path.exists():
                raise BackupError(f"the SQLite database {source_path} does not exist")
            source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
            target = sqlite3.connect(partial)
            try:
                with target:
                    source.backup(target)
                # A self-contained single file: no -wal beside it is needed to read it.
                target.execute("PRAGMA journal_mode=DELETE")
                check = target.execute("PRAGMA integrity_check").fetchall()
            finally:
                target.close()
                source.close()
            if check != [("ok",)]:
                raise BackupError(f"the backup failed its integrity check: {check[:5]}")
        else:
            _run_tool(
                ["pg_dump", "-Fc", "--no-owner", "--no-privileges", "-f", str(partial)], _pg_env(engine), "pg_dump"
            )
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    info = BackupInfo(
        path=destination,
        backend=engine.dialect.name,
        revision=revision,
        size_bytes=destination.stat().st_size,
        sha256=_sha256(destination),
        seconds=time.perf_counter() - started,
    )
    with write_session(engine) as session:
        audit.record(
            session,
            actor=actor,
            action="backup.create",
            target=f"backup:{destination.name}",
            detail={
                "path": str(destination.resolve()),
                "sha256": info.sha256,
                "bytes": info.size_bytes,
                "revision": revision,
                "seconds": round(info.seconds, 3),
            },
            now=now,
        )
    return info


# ---------------------------------------------------------------------------
# Restore
# ---------------------------------------------------------------------------


def _check_sqlite_backup(path: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise BackupError(f"{path} cannot be opened as an SQLite database: {err}") from None
    try:
        check = conn.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            raise BackupError(f"{path} failed its integrity check and was not restored: {check[:5]}")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "alembic_version" not in tables:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    except sqlite3.DatabaseError as err:
        raise BackupError(f"{path} is not a readable SQLite database and was not restored: {err}") from None
    finally:
        conn.close()


def _check_pg_backup(path: Path, env: dict[str, str]) -> str | None:
    _run_tool(["pg_restore", "--list", str(path)], env, f"reading {path}")
    dumped = _run_tool(
        ["pg_restore", "--data-only", "--table=alembic_version", "-f", "-", str(path)], env, f"reading {path}"
    ).stdout
    match = re.search(r"^COPY \S*alembic_version \(version_num\) FROM stdin;\n([^\n\\]+)\n", dumped, re.MULTILINE)
    return match.group(1).strip() if match else None


def inspect_backup(engine: Engine, path: str | Path) -> tuple[str, str]:
    """(backend, schema revision) of a backup, after checking it is readable and fits this code and database."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path} does not exist or is not a file")
    with open(path, "rb") as handle:
        magic = handle.read(len(SQLITE_MAGIC))
    if magic.startswith(SQLITE_MAGIC):
        backend = "sqlite"
    elif magic.startswith(PG_CUSTOM_MAGIC):
        backend = "postgresql"
    else:
        raise BackupError(f"{path} is neither an SQLite backup nor a pg_dump custom-format archive")
    if backend != engine.dialect.name:
        raise BackupError(f"{path} is a {backend} backup; DATABASE_URL names a {engine.dialect.name} database")
    revision = _check_sqlite_backup(path) if backend == "sqlite" else _check_pg_backup(path, _pg_env(engine))
    if revision is None:
        raise BackupError(f"{path} holds no schema revision (alembic_version): it is not a backup of this product")
    if revision not in known_revisions():
        raise BackupError(
            f"{path} is at schema revision {revision}, which this version of the product does not know "
            "(a newer or different version made it); restore it with the version that made it"
        )
    return backend, revision


def restore(engine: Engine, source: str | Path, *, actor: str, now: datetime, confirm: bool) -> RestoreInfo:
    """Replace the whole database with the backup at ``source`` (checked first; ``confirm`` required)."""
    source = Path(source)
    backend, revision = inspect_backup(engine, source)
    if not confirm:
        state = _audit_state(engine)
        held = f" (it holds {state[0]:,} audit events)" if state else ""
        raise ConfirmationRequired(
            f"restoring {source} would replace everything in {engine.url.render_as_string(hide_password=True)}"
            f"{held}; the backup checked out (revision {revision}). Run again with --yes to replace it."
        )
    replaced = _audit_state(engine)
    digest = _sha256(source)
    started = time.perf_counter()
    dispose_engines()
    engine.dispose()
    if backend == "sqlite":
        target_path = _sqlite_file(engine)
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(target_path, timeout=30)
        try:
            with dst:
                src.backup(dst)
            check = dst.execute("PRAGMA integrity_check").fetchall()
        finally:
            dst.close()
            src.close()
        if check != [("ok",)]:
            raise BackupError(f"the restored database failed its integrity check: {check[:5]}")
    else:
        _run_tool(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--no-owner",
                "--no-privileges",
                "-d",
                _pg_env(engine)["PGDATABASE"],
                str(source),
            ],
            _pg_env(engine),
            "pg_restore",
        )
    restored = current_revision(engine)
    if restored != revision:
        raise BackupError(f"after the restore the database is at revision {restored}, not the backup's {revision}")
    upgraded_to = None
    if restored != head_revision():
        upgrade(engine)
        upgraded_to = head_revision()
    seconds = time.perf_counter() - started
    detail: dict[str, Any] = {
        "path": str(source.resolve()),
        "sha256": digest,
        "revision": revision,
        "upgraded_to": upgraded_to,
        "replaced_audit_events": replaced[0] if replaced else None,
        "replaced_audit_head": replaced[1] if replaced else None,
        "seconds": round(seconds, 3),
    }
    with write_session(engine) as session:
        audit.record(
            session, actor=actor, action="backup.restore", target=f"backup:{source.name}", detail=detail, now=now
        )
    with read_session(engine) as session:
        report = audit.verify_chain(session)
    return RestoreInfo(
        path=source,
        backend=backend,
        revision=revision,
        upgraded_to=upgraded_to,
        replaced_audit_events=replaced[0] if replaced else None,
        audit_events=report.events,
        audit_chain_ok=report.ok,
        audit_problem=report.problem,
        seconds=seconds,
    )
