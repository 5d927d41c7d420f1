"""Worker processes that prepare a full run's batches while the run's own process writes them.

A full run is mostly reading and arithmetic (:func:`surveillance.prepare.prepare_batch`);
the writes of a steady-state run are few.  On a machine with more than one core
the batches are therefore prepared in worker processes — one per core — and
written, in order, by the process that started the run
(:func:`surveillance.pipeline.apply_batch`), which holds the only write
connection.  Nothing a worker reads is trusted blindly: the writer re-checks
each written patient's facts and alert digest under the write lock.

On SQLite a worker reads through ADBC (Arrow columns built in C; see
:mod:`db.readers`) and never opens the file through Python's ``sqlite3`` — one
copy of SQLite per process.  On PostgreSQL it reads through the ordinary engine,
each batch in a read-only repeatable-read transaction so its reads agree.

Workers are started with ``spawn`` (a fork of a process holding SQLite
connections and scheduler threads is unsafe) for the run and stopped after it;
starting them costs about a second, paid once per full run.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Engine

from surveillance.prepare import PreparedBatch, Selection
from surveillance.rules.schema import RuleSet

_STATE: dict[str, Any] = {}


def _start(url: str, dialect: str, ruleset: RuleSet) -> None:
    """Worker initialiser: the reader (or engine) and the rules, kept for the worker's life."""
    from surveillance.batch import shared_scorer

    _STATE["ruleset"] = ruleset
    _STATE["scorer"] = shared_scorer()
    if dialect == "sqlite":
        from db.readers import open_arrow_reader

        _STATE["reader"] = open_arrow_reader(url)
    else:
        from db.engine import get_engine

        _STATE["engine"] = get_engine(url)


def _prepare(sel: Selection, run_id: int, now: datetime, today: date) -> PreparedBatch | None:
    from surveillance.prepare import prepare_batch

    scorer, ruleset = _STATE["scorer"], _STATE["ruleset"]
    reader = _STATE.get("reader")
    if reader is not None:
        return prepare_batch(reader, scorer, ruleset, sel, run_id=run_id, now=now, today=today)
    from db.readers import DbapiReader

    with _STATE["engine"].connect() as conn:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return prepare_batch(DbapiReader(conn), scorer, ruleset, sel, run_id=run_id, now=now, today=today)


class PreparePool:
    """``workers`` processes preparing batches; :meth:`prepared` yields them in order, a few ahead."""

    def __init__(self, engine: Engine, ruleset: RuleSet, workers: int) -> None:
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(engine.url.render_as_string(hide_password=False), engine.dialect.name, ruleset),
        )

    def __enter__(self) -> PreparePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def prepared(
        self, selections: Sequence[Selection], *, run_id: int, now: datetime, today: date
    ) -> Iterator[PreparedBatch | None]:
        """Each selection's batch, in order; at most ``workers`` are prepared ahead of the one being written."""
        pending: deque[Future] = deque()
        queue = iter(selections)
        for sel in queue:
            pending.append(self._executor.submit(_prepare, sel, run_id, now, today))
            if len(pending) >= self.workers:
                break
        while pending:
            done = pending.popleft().result()
            following = next(queue, None)
            if following is not None:
                pending.append(self._executor.submit(_prepare, following, run_id, now, today))
            yield done
