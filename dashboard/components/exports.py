"""Download buttons for files with patient data: built and audited when clicked, never on a mere rerun.

Each button gets a callable (Streamlit's deferred download): the file is made
and its disclosure recorded (``surveillance.disclosure``) only when the user
clicks, and the timestamp is the click's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from dashboard.data.common import engine, now
from dashboard.i18n import Translator
from surveillance import disclosure
from surveillance.access import Identity


def table_downloads(
    identity: Identity,
    tr: Translator,
    *,
    action: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    patient_ids: Sequence[int],
    file_stem: str,
    key: str,
) -> None:
    """CSV and Excel buttons for exactly ``rows`` (the table the user sees); each click is one disclosure."""
    columns, rows, ids = list(columns), [list(r) for r in rows], [int(i) for i in patient_ids]
    buttons = st.columns(2)
    for column, file_format in zip(buttons, disclosure.TABLE_FORMATS, strict=True):
        column.download_button(
            tr.t(f"app.export_{file_format}"),
            lambda fmt=file_format: disclosure.export_table(
                engine(), identity, action=action, columns=columns, rows=rows, patient_ids=ids, file_format=fmt,
                now=now(), sheet=file_stem),
            file_name=f"{file_stem}.{file_format}", mime=disclosure.TABLE_FORMATS[file_format],
            key=f"{key}_{file_format}", on_click="ignore")


def file_download(label: str, build: Callable[[], bytes], *, file_name: str, mime: str, key: str) -> None:
    """One deferred download: ``build`` makes the file and records its disclosure when clicked."""
    st.download_button(label, build, file_name=file_name, mime=mime, key=key, on_click="ignore")
