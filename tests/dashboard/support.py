"""Helpers shared by the page tests: identities, audit counts, everything a page shows, exported files."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy import text
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

from dashboard.i18n import Translator
from surveillance.access import Identity, Role

EN = Translator("en")
PAGES_DIR = Path(__file__).parents[2] / "dashboard" / "app_pages"


def identity(engine, username: str) -> Identity:
    """The identity of a stored user, read back from ``app_user``."""
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT id, username, display_name, role, department FROM app_user WHERE username = :u"),
            {"u": username},
        ).one()
    return Identity(row.id, row.username, row.display_name, Role(row.role), row.department)


def audit_count(engine, **where) -> int:
    """How many ``audit_event`` rows match every ``column = value`` given."""
    condition = " AND ".join(f"{column} = :{column}" for column in where) or "1 = 1"
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM audit_event WHERE {condition}"), where).scalar())


def _walk(node):
    for child in getattr(node, "children", {}).values():
        yield child
        yield from _walk(child)


def everything(at: AppTest) -> str:
    """Every element's text in the main area and the sidebar: values, labels, options, tables, charts."""
    parts = []
    for root in (at.main, at.sidebar):
        for element in _walk(root):
            kind = getattr(element, "type", "")
            if kind == "arrow_data_frame":
                parts.append(element.value.to_csv())
            elif kind == "plotly_chart":
                parts.append(element.proto.spec)
            elif hasattr(element, "proto"):
                parts.append(str(element.proto))
    return "\n".join(parts)


def identifiers(engine) -> set[str]:
    """Every MRN, family name and given name in the database."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT mrn, family_name, given_name FROM patient")).all()
    return {value for row in rows for value in row if value}


def keep_media(monkeypatch) -> list[MemoryMediaFileStorage]:
    """Keep the in-memory media stores AppTest creates per run, so a download button's file can be read."""
    stores: list[MemoryMediaFileStorage] = []

    class Kept(MemoryMediaFileStorage):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            stores.append(self)

    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", Kept)
    return stores


def downloaded_csv(stores: list[MemoryMediaFileStorage], button) -> list[list[str]]:
    """The rows of the CSV file behind a download button (read from the last run's media store)."""
    content = stores[-1].get_file(Path(button.proto.url).name).content
    assert content.startswith("\ufeff".encode()), "UTF-8 with a BOM, so Excel reads Japanese names"
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
