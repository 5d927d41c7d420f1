"""Tables leaving the product: CSV and Excel that spreadsheets cannot turn into formulas.

A cell beginning with ``=``, ``+``, ``-``, ``@``, a tab, a carriage return or NUL is
prefixed with a single quote (OWASP "CSV injection"), so a patient named
``=HYPERLINK(...)`` stays text in Excel and LibreOffice.  Numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\x00")


def neutralise(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(DANGEROUS_PREFIXES):
        return "'" + value
    return value


def to_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([neutralise(c) for c in columns])
    for row in rows:
        writer.writerow(["" if v is None else neutralise(v) for v in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")  # BOM: Excel reads UTF-8 (Japanese names) correctly


def to_xlsx(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, sheet: str = "export") -> bytes:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    worksheet = workbook.create_sheet(sheet[:31])
    worksheet.append([_excel_value(neutralise(c)) for c in columns])
    for row in rows:
        worksheet.append([_excel_value(neutralise(v)) for v in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _excel_value(value: Any) -> Any:
    if isinstance(value, str):
        # XLSX cannot hold control characters (openpyxl refuses the whole file): show each as U+FFFD instead.
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    if value is None or isinstance(value, (int, float)):
        return value
    if hasattr(value, "tzinfo") and getattr(value, "tzinfo", None) is not None:
        return value.replace(tzinfo=None)  # Excel has no time zones; exported timestamps are UTC
    return value if hasattr(value, "isoformat") else str(value)
