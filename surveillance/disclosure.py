"""Files that leave the product with patient data in them, and the accounting of each disclosure.

Every export of identifiable data (the caseload, a physician's cohort extract,
the board's case card, a patient's FHIR Bundle) goes through
:func:`export_file`: it checks the role may export, builds the file, and
records one audit event — ONC 170.315(d)(11) / 170.210(d): date and time
(``occurred_at``), patient identification (``patient_id`` for one patient, the
sorted ``patient_ids`` in the detail for several), user identification
(``actor``) and a description (action, format, row count) — in one
transaction.  If the audit event cannot be written the caller gets an error
and no file (fail closed, ``shared/notes/security.md`` test 43).

The dashboard passes ``lambda: export_file(...)`` to ``st.download_button`` as
deferred data, so the file is built and the disclosure recorded when the user
clicks, not on every rerun of the page.

De-identified aggregates (the lead's cohort counts) are not disclosures of
identifiable data; :func:`export_aggregate` still records who took which table
(``export.cohort_aggregate``, no patient ids).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from db.engine import write_session
from surveillance import audit
from surveillance.access import Action, Identity, PermissionDenied, require
from surveillance.exports import to_csv, to_xlsx

#: File formats of a table export and their MIME types.
TABLE_FORMATS = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _require_export(engine: Engine, identity: Identity, action: str, now: datetime) -> None:
    """Refuse a role that may not export; the refused attempt is audited (outcome ``denied``)."""
    try:
        require(identity, Action.EXPORT)
    except PermissionDenied as err:
        with write_session(engine) as session:
            audit.record(session, actor=identity.actor, action=action, outcome="denied",
                         detail={"reason": str(err)}, now=now)
        raise


def record_disclosure(
    engine: Engine,
    identity: Identity,
    *,
    action: str,
    patient_ids: Iterable[int],
    file_format: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    """One audit event for one export of identifiable data (the (d)(11) data set)."""
    _require_export(engine, identity, action, now)
    ids = sorted({int(i) for i in patient_ids})
    body = {"format": file_format, "patients": len(ids), "patient_ids": ids, **(detail or {})}
    with write_session(engine) as session:
        audit.record(
            session,
            actor=identity.actor,
            action=action,
            patient_id=ids[0] if len(ids) == 1 else None,
            target=f"{len(ids)} patient(s)",
            detail=body,
            now=now,
        )


def table_bytes(file_format: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, sheet: str) -> bytes:
    if file_format == "csv":
        return to_csv(columns, rows)
    if file_format == "xlsx":
        return to_xlsx(columns, rows, sheet=sheet)
    raise ValueError(f"unknown export format {file_format!r}: expected one of {', '.join(TABLE_FORMATS)}")


def export_file(
    engine: Engine,
    identity: Identity,
    *,
    action: str,
    patient_ids: Iterable[int],
    file_format: str,
    build: Callable[[], bytes],
    now: datetime,
    detail: dict[str, Any] | None = None,
) -> bytes:
    """Build an identifiable file and record its disclosure; no file without its audit event."""
    _require_export(engine, identity, action, now)
    content = build()
    record_disclosure(
        engine, identity, action=action, patient_ids=patient_ids, file_format=file_format, now=now, detail=detail
    )
    return content


def export_table(
    engine: Engine,
    identity: Identity,
    *,
    action: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    patient_ids: Sequence[int],
    file_format: str,
    now: datetime,
    sheet: str = "export",
) -> bytes:
    """A table of identifiable rows as CSV or XLSX (formula-safe), with its disclosure recorded."""
    rows = list(rows)
    return export_file(
        engine,
        identity,
        action=action,
        patient_ids=patient_ids,
        file_format=file_format,
        build=lambda: table_bytes(file_format, columns, rows, sheet=sheet),
        now=now,
        detail={"rows": len(rows)},
    )


def export_aggregate(
    engine: Engine,
    identity: Identity,
    *,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    file_format: str,
    now: datetime,
    filters: dict[str, Any],
) -> bytes:
    """A de-identified count table (the lead's cohort) as CSV or XLSX; who took it is audited."""
    require(identity, Action.VIEW_TRENDS)
    rows = list(rows)
    content = table_bytes(file_format, columns, rows, sheet="cohort")
    with write_session(engine) as session:
        audit.record(
            session,
            actor=identity.actor,
            action="export.cohort_aggregate",
            target="aggregate",
            detail={"format": file_format, "rows": len(rows), "filters": filters},
            now=now,
        )
    return content
