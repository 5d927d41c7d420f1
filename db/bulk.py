"""Bulk reads and writes through the raw DB-API cursor, for the set-based paths.

Measured (``notes/perf.md``): SQLAlchemy Core costs 3.6–4.5× the raw driver on
bulk inserts and the ORM about 55×, mostly per-value type processing in Python.
The recompute pipeline, the demo generator and the importers therefore move
rows as plain tuples through the driver's ``executemany``/``fetchall``, inside
the SQLAlchemy connection's transaction (so ``BEGIN IMMEDIATE`` and rollback
still apply).  Values must already be in the driver's terms: ``str``/``int``/
``float``/``bool``/``None``, dates as ``YYYY-MM-DD``, timestamps as aware
``datetime`` (both drivers store them as the ORM does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Connection


def placeholder(conn: Connection) -> str:
    return "?" if conn.dialect.name == "sqlite" else "%s"


def sql(conn: Connection, text: str) -> str:
    """``text`` with ``?`` placeholders rewritten for the connection's driver."""
    return text if conn.dialect.name == "sqlite" else text.replace("?", "%s")


def fetchall(conn: Connection, text: str, params: Sequence[Any] = ()) -> list[tuple]:
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql(conn, text), tuple(params))
        return cursor.fetchall()
    finally:
        cursor.close()


def fetch_columns(conn: Connection, text: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
    """Column names and column-wise tuples (``columns[i]`` is every value of column ``i``)."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql(conn, text), tuple(params))
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    finally:
        cursor.close()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return names, columns


def executemany(conn: Connection, text: str, rows: Iterable[Sequence[Any]]) -> int:
    rows = list(rows)
    if not rows:
        return 0
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(sql(conn, text), rows)
    finally:
        cursor.close()
    return len(rows)


def executemany_count(conn: Connection, text: str, rows: Sequence[Sequence[Any]]) -> int:
    """``executemany`` returning how many rows the statements changed in all."""
    if not rows:
        return 0
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(sql(conn, text), rows)
        return cursor.rowcount
    finally:
        cursor.close()


def execute(conn: Connection, text: str, params: Sequence[Any] = ()) -> int:
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql(conn, text), tuple(params))
        return cursor.rowcount
    finally:
        cursor.close()


def insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


def upsert_sql(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """INSERT … ON CONFLICT (key) DO UPDATE: the same text on SQLite ≥ 3.24 and PostgreSQL."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return insert_sql(table, columns) + f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"


def in_list(ids: Sequence[int]) -> str:
    """A literal ``IN (...)`` list of integers (ids come from the database, never from users)."""
    return "(" + ",".join(str(int(i)) for i in ids) + ")" if ids else "(NULL)"
