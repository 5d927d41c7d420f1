"""The database engine, from ``DATABASE_URL``, with the reliability settings of design.md.

SQLite (the embedded default): WAL so readers never block the writer,
``busy_timeout`` so a second writer waits instead of failing, ``foreign_keys=ON``,
``synchronous=FULL`` so a committed clinical write survives a power loss, and
write transactions that start with ``BEGIN IMMEDIATE`` — a deferred transaction
that reads and then writes can fail with "database is locked" at once, ignoring
the busy timeout.  PostgreSQL (production): a pre-pinged pool.

Use :func:`write_session` for anything that writes and :func:`read_session` for
reads; both are context managers that commit (or roll back) for you.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, create_engine

from db.settings import DatabaseSettings

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()
SQLITE_CACHE_KIB = 64 * 1024


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event decide how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        # 64 MiB of page cache per connection instead of SQLite's 2 MB: the recompute touches
        # alert and snapshot index pages all over a table of millions of rows.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: ``DATABASE_URL``)."""
    settings = DatabaseSettings()
    url = url or settings.database_url
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is not None:
            return engine
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": settings.sqlite_busy_timeout_ms / 1000},
            )
            _configure_sqlite(engine, settings.sqlite_busy_timeout_ms)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=settings.pool_size, max_overflow=10)
        _ENGINES[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, forked workers, backup/restore), after any background checkpoint."""
    with _LOCK:
        checkpointers = list(_CHECKPOINTERS.values())
        _CHECKPOINTERS.clear()
    for worker in checkpointers:
        worker.stop()
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def writer(engine: Engine) -> Engine:
    """The same engine, whose transactions take the write lock up front on SQLite."""
    return engine.execution_options(sqlite_begin="IMMEDIATE") if is_sqlite(engine) else engine


@contextmanager
def derived_write(engine: Engine) -> Iterator[Connection]:
    """A write transaction for *derived* data (snapshots, system alerts, run records, trend tables).

    On SQLite it commits with ``synchronous=NORMAL`` instead of ``FULL``: in WAL mode
    that skips the fsync at commit (the WAL is synced at checkpoints), which is most
    of a small run's cost.  A power loss may undo the last such commits but never
    corrupts the file, and what it undoes is recomputed: the recompute queue rows a
    run deletes are deleted in the same transaction, so they come back with it.  A
    process crash (``kill -9``) loses nothing committed.  Clinical writes keep
    ``synchronous=FULL`` (design.md); the pooled connection is set back to ``FULL``
    before anything else can use it.

    Its commit does not checkpoint the WAL either: copying the pages a run dirtied
    back into the database (a few MB of random pages at a million patients, about
    half of an incremental run's commit) is left to a background checkpoint started
    after the commit (:func:`checkpoint_soon`).  PostgreSQL: an ordinary write
    transaction.
    """
    with writer(engine).connect() as conn:
        raw = conn.connection.driver_connection if is_sqlite(engine) else None
        if raw is not None:
            raw.execute("PRAGMA synchronous=NORMAL")
            raw.execute("PRAGMA wal_autocheckpoint=0")
        try:
            with conn.begin():
                yield conn
        finally:
            if raw is not None:
                raw.execute("PRAGMA synchronous=FULL")
                raw.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    if is_sqlite(engine):
        checkpoint_soon(engine)


WAL_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, kept for every other connection
_CHECKPOINTERS: dict[int, _Checkpointer] = {}


class _Checkpointer:
    """One daemon thread per SQLite engine that checkpoints the WAL when asked (requests coalesce)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.wanted = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.wanted.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        import logging

        while True:
            self.wanted.wait()
            self.wanted.clear()
            if self.stopping:
                return
            try:
                with self.engine.connect() as conn:
                    # PASSIVE: copies what it can without waiting for readers or the writer.
                    conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # a missing or replaced file: the next connection's autocheckpoint still works
                logging.getLogger(__name__).warning("background WAL checkpoint failed", exc_info=True)


def checkpoint_soon(engine: Engine) -> None:
    """Ask for a WAL checkpoint on a background thread of this process (coalesced with pending ones)."""
    with _LOCK:
        worker = _CHECKPOINTERS.get(id(engine))
        if worker is None or worker.engine is not engine:
            worker = _CHECKPOINTERS[id(engine)] = _Checkpointer(engine)
    worker.wanted.set()


@contextmanager
def write_session(engine: Engine | None = None) -> Iterator[Session]:
    """A session for a write transaction: committed on success, rolled back on error."""
    engine = engine or get_engine()
    with Session(writer(engine), expire_on_commit=False) as session:
        with session.begin():
            yield session


@contextmanager
def read_session(engine: Engine | None = None) -> Iterator[Session]:
    engine = engine or get_engine()
    with Session(engine, expire_on_commit=False) as session:
        yield session
