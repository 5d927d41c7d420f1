"""The admin upload page's reads and its one write: importing a file (``surveillance.importing``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import text

from dashboard.data.common import engine, now
from surveillance.access import Action, Identity, require
from surveillance.importing import MAX_FILE_BYTES, ImportResult, import_file, sniff
from surveillance.importing.csv_templates import TEMPLATES, template_csv

#: What an upload may be: the content decides (sniffed), the extension only has to agree.
UPLOAD_TYPES = ("json", "csv")


#: The import format document (its "CSV templates" section is shown on the page).
FORMAT_DOC = Path(__file__).resolve().parents[2] / "docs" / "import-format.md"
FORMAT_DOC_NAME = "docs/import-format.md"


def csv_templates() -> list[tuple[str, str, bytes]]:
    """``(kind, file name, content)`` of every CSV template: its header and one example row."""
    return [(kind, f"{kind}.csv", template_csv(kind)) for kind in TEMPLATES]


def format_section(heading: str = "## CSV templates") -> str | None:
    """One ``##`` section of :data:`FORMAT_DOC` (without its heading), or ``None`` when the file is absent."""
    try:
        text = FORMAT_DOC.read_text(encoding="utf-8")
    except OSError:
        return None
    start = text.find(heading + "\n")
    if start < 0:
        return None
    body = text[start + len(heading) + 1 :]
    end = body.find("\n## ")
    return (body if end < 0 else body[:end]).strip()


def check_upload(name: str, data: bytes) -> str | None:
    """``None`` when the upload may be imported, else why not (size, content)."""
    if len(data) > MAX_FILE_BYTES:
        return f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
    if not data.strip():
        return "empty"
    kind = sniff(data)
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if kind == "fhir" and extension == "json":
        return None
    if kind == "csv" and extension == "csv":
        return None
    return (
        f"the content is not {'FHIR JSON' if extension == 'json' else 'CSV' if extension == 'csv' else 'JSON or CSV'}"
    )


def run_import(identity: Identity, name: str, data: bytes, *, partial: bool) -> ImportResult:
    """Import one uploaded file as ``identity`` (admins: data integration, not a clinical edit)."""
    require(identity, Action.IMPORT)
    return import_file(engine(), data, name=name, actor=identity.actor, now=now(), partial=partial)


def issues_frame(result: ImportResult) -> pd.DataFrame:
    return pd.DataFrame(
        [i.as_dict() for i in result.issues], columns=["entry_index", "severity", "location", "message"]
    )


def recent_batches(identity: Identity, limit: int = 50) -> pd.DataFrame:
    require(identity, Action.IMPORT)
    with engine().connect() as conn:
        rows: list[dict[str, Any]] = [
            dict(r)
            for r in conn.execute(
                text(
                    "SELECT id, imported_at, file_name, file_format, actor, status, entries, issues, counts, "
                    "file_sha256 FROM import_batch ORDER BY id DESC LIMIT :n"
                ),
                {"n": limit},
            ).mappings()
        ]
    return pd.DataFrame(rows)
