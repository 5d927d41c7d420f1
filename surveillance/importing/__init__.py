"""Importing patient data from files: FHIR R4 JSON (mCODE STU1/STU4) and CSV templates.

API (used by the CLI ``python -m surveillance import``, the admin upload page and tests):

* :func:`import_file` ``(engine, path_or_bytes, *, name, actor, now, partial=False, progress=None)
  -> ImportResult`` — sniff the content (FHIR JSON or CSV, not the file name),
  parse it into :mod:`surveillance.importing.records`, and hand the records to
  the writer.
* :func:`surveillance.importing.writer.write_records` ``(engine, records, *, file_name, file_sha256,
  actor, now, partial=False, parse_issues=(), entries=0, progress=None) -> ImportResult`` —
  validate and store records in one transaction per file (see ``writer``).
* A CSV parser lives in ``surveillance.importing.csv_templates`` and exposes
  ``parse(name: str, data: bytes) -> ParseResult``; when that module is absent a
  CSV file is refused with a clear "CSV import not available" issue.  A CSV whose header fits no
  product template but names an mCODE Extraction Framework element goes to
  ``surveillance.importing.mcode_csv``.

``progress`` is an optional callable ``progress(done: int, total: int, stage: str)``.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from surveillance.importing.records import ImportIssue, ImportResult, ParseResult

#: Uploads and CLI files larger than this are refused before parsing (the PySynthea bundle is 3.9 MB).
MAX_FILE_BYTES = 64 * 1024 * 1024

Progress = Callable[[int, int, str], None]


def sniff(data: bytes) -> str:
    """``"fhir"`` for a JSON object with a ``resourceType``, ``"csv"`` for delimited text, else ``"unknown"``."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return "fhir"
    if head.startswith(b"["):
        return "json"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown"
    first = text.splitlines()[0] if text else ""
    if first and ("," in first or ";" in first or "\t" in first) and "\x00" not in text:
        return "csv"
    return "unknown"


def _rejected(name: str, sha: str, message: str) -> ImportResult:
    return ImportResult("rejected", sha, name, issues=[ImportIssue(None, name, message)])


def parse_bytes(name: str, data: bytes) -> ParseResult | str:
    """Parse ``data`` into records, or return a message saying why the file cannot be read at all."""
    kind = sniff(data)
    if kind == "fhir":
        from surveillance.importing import fhir

        return fhir.parse(name, data)
    if kind == "csv":
        try:
            csv_templates = importlib.import_module("surveillance.importing.csv_templates")
        except ModuleNotFoundError:
            return "CSV import not available in this version: import FHIR R4 JSON"
        parsed = csv_templates.parse(name, data)
        if not parsed.records and any("matches no template" in i.message for i in parsed.issues):
            # not one of the product's templates: an mCODE Extraction Framework CSV, else the template error
            from surveillance.importing import mcode_csv

            if mcode_csv.format_of(data) is not None:
                return mcode_csv.parse(name, data)
        return parsed
    if kind == "json":
        return "a JSON array is not a FHIR resource: give a Bundle or a single resource (an object with resourceType)"
    return "the file is neither FHIR JSON nor CSV text"


def _already_imported(engine: Engine, sha: str) -> bool:
    from sqlalchemy import text

    with engine.connect() as conn:
        return (
            conn.execute(
                text("SELECT 1 FROM import_batch WHERE file_sha256 = :s AND status IN ('imported', 'partial')"),
                {"s": sha},
            ).first()
            is not None
        )


def import_file(
    engine: Engine,
    path_or_bytes: str | Path | bytes,
    *,
    name: str | None = None,
    actor: str,
    now: datetime,
    partial: bool = False,
    progress: Progress | None = None,
) -> ImportResult:
    from surveillance.importing.writer import write_records

    if isinstance(path_or_bytes, bytes):
        data = path_or_bytes
        name = name or "upload"
    else:
        path = Path(path_or_bytes)
        name = name or path.name
        if path.stat().st_size > MAX_FILE_BYTES:
            return _rejected(name, "", f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if len(data) > MAX_FILE_BYTES:
        return _rejected(name, sha, f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    if _already_imported(engine, sha):  # the writer records the attempt as unchanged; no need to parse
        kind = "csv" if sniff(data) == "csv" else "fhir"
        return write_records(
            engine, [], file_name=name, file_sha256=sha, actor=actor, now=now, partial=partial, file_format=kind
        )
    if progress:
        progress(0, 1, "parse")
    parsed = parse_bytes(name, data)
    if isinstance(parsed, str):
        return _rejected(name, sha, parsed)
    return write_records(
        engine,
        parsed.records,
        file_name=name,
        file_sha256=sha,
        actor=actor,
        now=now,
        partial=partial,
        parse_issues=parsed.issues,
        entries=parsed.entries,
        progress=progress,
        file_format=parsed.format or "fhir",
    )


__all__ = ["MAX_FILE_BYTES", "ImportIssue", "ImportResult", "ParseResult", "import_file", "parse_bytes", "sniff"]
