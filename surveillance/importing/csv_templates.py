"""CSV templates: one comma-separated file per fact type, parsed into the import records.

A template's columns are the fields of its record dataclass
(:mod:`surveillance.importing.records`) — units are in the names (``dose_mg``,
``dose_gy``, ``separation_margin_mm``; a lab gives ``value`` and its ``unit``)
— plus ``mrn`` (the patient, for a fact: a patient already stored or imported
earlier) and an optional ``source_id`` (the row's id in the source system).
:func:`template_csv` writes each template's header and an example row;
``docs/import-format.md`` documents them.

The header, not the file name, decides the template: the one whose columns
hold every column of the header and whose key columns (:data:`TEMPLATES`) are
all present.  Rules of the file (``shared/notes/security.md`` tests 17, 18):
UTF-8 (a BOM is allowed), commas, one header row, no duplicate or unknown
columns, at least one data row.  A value that is not of its column's type
(a number, yes/no) is reported at its row and column here; ranges, units,
vocabularies and dates (not in the future, not before birth) are checked by the
writer with the service's own rules and reported at the row, the message naming
the column.

Rows are numbered as a spreadsheet shows them: the header is row 1, the first
data row is row 2 (``ImportIssue.entry_index``).  Without a ``source_id``
column a row's id is a digest of its template and values, so importing the same
rows again — in this file or another — adds nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import typing
from dataclasses import dataclass

from surveillance.importing import records as r
from surveillance.importing.records import ImportIssue, Origin, ParseResult

SOURCE_SYSTEM = "csv"

#: Bookkeeping fields of a record that are not template columns (``mrn`` names the patient instead).
_BOOKKEEPING = {"source_id", "origin", "source_system", "patient_ref"}

_TRUE = {"yes", "y", "true", "1"}
_FALSE = {"no", "n", "false", "0"}
_UNKNOWN = {"", "unknown"}


@dataclass(frozen=True)
class Template:
    kind: str  # records.RECORD_KINDS name; also the template's file name stem
    record: type
    keys: tuple[str, ...]  # columns that identify this template (all must be in the header)
    example: dict[str, str]

    @property
    def fields(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.record) if f.name not in _BOOKKEEPING]

    @property
    def columns(self) -> list[str]:
        own = [f for f in self.fields if f != "mrn"]
        return ["mrn", *own, "source_id"]

    @property
    def required(self) -> list[str]:
        return ["mrn", *self.keys]


TEMPLATES: dict[str, Template] = {t.kind: t for t in (
    Template("patient", r.PatientRecord, ("family_name", "given_name"),
             {"mrn": "MRN0001", "family_name": "Yamada", "given_name": "Hanako", "birth_date": "1958-04-02",
              "sex": "female", "department": "oncology", "primary_site": "breast",
              "primary_histology": "invasive ductal carcinoma", "hormone_dependent": "yes", "status": "active"}),
    Template("spinal_lesion", r.LesionRecord, ("level", "first_seen_on"),
             {"mrn": "MRN0001", "level": "T12", "first_seen_on": "2026-03-01", "pain": "mechanical",
              "lesion_type": "lytic", "alignment": "normal", "collapse": "lt50", "posterolateral": "unilateral",
              "bilsky_escc": "1b", "assessed_on": "2026-03-01"}),
    Template("imaging_study", r.ImagingRecord, ("performed_on", "modality", "region"),
             {"mrn": "MRN0001", "performed_on": "2026-03-01", "modality": "mri", "region": "whole_spine",
              "findings": "T12 lytic lesion"}),
    Template("performance_status", r.PerformanceStatusRecord, ("recorded_on", "ecog"),
             {"mrn": "MRN0001", "recorded_on": "2026-03-02", "ecog": "1", "kps": "80"}),
    Template("neuro_status", r.NeuroStatusRecord, ("recorded_on", "frankel_grade"),
             {"mrn": "MRN0001", "recorded_on": "2026-03-02", "frankel_grade": "E", "ambulatory_status": "independent",
              "new_deficit": "no"}),
    Template("lab_result", r.LabRecord, ("collected_on", "test", "value"),
             {"mrn": "MRN0001", "collected_on": "2026-03-02", "test": "albumin", "value": "38", "unit": "g/L"}),
    Template("metastatic_status", r.MetastaticStatusRecord, ("recorded_on", "visceral_status"),
             {"mrn": "MRN0001", "recorded_on": "2026-03-02", "visceral_status": "none", "brain_metastases": "no",
              "extraspinal_bone_metastases": "2"}),
    Template("bma_administration", r.BmaRecord, ("given_on", "agent"),
             {"mrn": "MRN0001", "given_on": "2026-03-10", "agent": "denosumab", "dose_mg": "120"}),
    Template("treatment", r.TreatmentRecord, ("kind", "modality", "started_on"),
             {"mrn": "MRN0001", "kind": "radiotherapy", "modality": "sbrt", "started_on": "2026-03-15",
              "ended_on": "2026-03-19", "level": "T12", "dose_gy": "24", "fractions": "2", "emergency": "no"}),
    Template("skeletal_event", r.SkeletalEventRecord, ("occurred_on", "event_type"),
             {"mrn": "MRN0001", "occurred_on": "2026-04-01", "event_type": "radiation_to_bone", "level": "T12",
              "emergency": "no"}),
    Template("locomo_condition", r.LocomoConditionRecord, ("condition", "onset_on"),
             {"mrn": "MRN0001", "condition": "bone_metastasis", "onset_on": "2026-03-01"}),
    Template("dental_exam", r.DentalExamRecord, ("examined_on",),
             {"mrn": "MRN0001", "examined_on": "2026-02-20", "onj_suspected": "no"}),
)}


def _column_types(record: type) -> dict[str, str]:
    """field -> "bool" | "int" | "float" | "str" (dates stay text: the writer parses and checks them)."""
    hints = typing.get_type_hints(record)
    out = {}
    for name, hint in hints.items():
        args = set(typing.get_args(hint)) or {hint}
        if bool in args:
            out[name] = "bool"
        elif int in args and str not in args:
            out[name] = "int"
        elif float in args and str not in args:
            out[name] = "float"
        else:
            out[name] = "str"
    return out


_TYPES = {kind: _column_types(t.record) for kind, t in TEMPLATES.items()}
_NULLABLE = {
    kind: {f.name for f in dataclasses.fields(t.record) if f.default is None}
    for kind, t in TEMPLATES.items()
}


def template_csv(kind: str) -> bytes:
    """The template's header and one example row (UTF-8 with a BOM, so Excel reads Japanese names)."""
    template = TEMPLATES[kind]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(template.columns)
    writer.writerow([template.example.get(c, "") for c in template.columns])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def match_template(header: list[str]) -> Template | str:
    """The template this header belongs to, or why none does."""
    columns = set(header)
    fits = [t for t in TEMPLATES.values() if columns <= set(t.columns) and set(t.required) <= columns]
    if len(fits) == 1:
        return fits[0]
    if len(fits) > 1:
        return f"the header fits several templates ({', '.join(t.kind for t in fits)}): add their key columns"
    best = max(TEMPLATES.values(), key=lambda t: (len(columns & set(t.columns)), -len(t.columns)))
    unknown = [c for c in header if c not in best.columns]
    missing = [c for c in best.required if c not in columns]
    parts = []
    if unknown:
        parts.append(f"unknown column(s) {', '.join(unknown)}")
    if missing:
        parts.append(f"missing required column(s) {', '.join(missing)}")
    return f"the header matches no template (closest: {best.kind}: {'; '.join(parts)})"


class _CellError(ValueError):
    pass


def _value(kind: str, column: str, raw: str):
    text = raw.strip()
    typ = _TYPES[kind].get(column, "str")
    if typ == "bool":
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        if low in _UNKNOWN:
            return None if column in _NULLABLE[kind] else False
        raise _CellError(f"{raw!r} is not yes, no or unknown")
    if text == "":
        return None
    if typ == "int":
        try:
            number = float(text)
        except ValueError:
            raise _CellError(f"{raw!r} is not a number") from None
        if number != int(number):
            raise _CellError(f"{raw!r} is not a whole number")
        return int(number)
    if typ == "float":
        try:
            return float(text)
        except ValueError:
            raise _CellError(f"{raw!r} is not a number") from None
    return text


def _converter(kind: str, column: str):
    """``raw -> value`` for one column: what :func:`_value` does, with the column's type looked up once."""
    typ = _TYPES[kind].get(column, "str")
    if typ == "str":
        return _text
    return lambda raw: _value(kind, column, raw)


def _text(raw: str) -> str | None:
    return raw.strip() or None


def _file_issue(name: str, message: str) -> ParseResult:
    return ParseResult(issues=[ImportIssue(None, name, message)], format="csv")


def parse(name: str, data: bytes) -> ParseResult:
    """Records of one CSV template file, and the issues of the rows that cannot be read."""
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return _file_issue(name, f"the file is not UTF-8 text (byte {err.start}): save it as CSV UTF-8")
    if "\x00" in content:
        return _file_issue(name, "the file contains NUL bytes: it is not a CSV text file")
    rows = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        header = next(rows, None)
    except csv.Error as err:
        return _file_issue(name, f"row 1: {err}")
    if not header or not any(h.strip() for h in header):
        return _file_issue(name, "the file is empty: give a header row and at least one data row")
    header = [h.strip() for h in header]
    if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
        return _file_issue(name, "the columns are not separated by commas")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        return _file_issue(name, f"duplicate column(s) {', '.join(duplicates)}")
    template = match_template(header)
    if isinstance(template, str):
        return _file_issue(name, template)
    result = ParseResult(format="csv")
    kind = template.kind
    fields = set(template.fields)
    width = len(header)
    # Per column, decided once for the file (the per-row loop only calls these): the converter of
    # its type, and whether the value goes to the record.
    converters = [_converter(kind, column) for column in header]
    columns = list(enumerate(header))
    try:
        mrn_at = header.index("mrn")
    except ValueError:  # match_template requires mrn; kept for safety
        mrn_at = -1
    sid_at = header.index("source_id") if "source_id" in header else -1
    own_at = [(i, column) for i, column in columns if column in fields and column != "mrn"]
    id_order = _row_id_order(header)
    is_patient = template.record is r.PatientRecord
    make = template.record
    records = result.records
    issues = result.issues
    row_number = 1
    try:
        for row in rows:
            row_number += 1
            if not "".join(row).strip():
                continue  # a blank line is not an entry
            if len(row) != width:
                result.entries += 1
                issues.append(ImportIssue(row_number, f"{name}:row {row_number}",
                                          f"{len(row)} cells for {width} columns"))
                continue
            values = []
            bad = False
            for (i, column), convert in zip(columns, converters, strict=True):
                try:
                    values.append(convert(row[i]))
                except _CellError as err:
                    values.append(None)
                    issues.append(ImportIssue(row_number, f"{name}:row {row_number}:{column}",
                                              f"{kind}: {column}: {err}"))
                    bad = True
            result.entries += 1
            mrn = values[mrn_at] if mrn_at >= 0 else None
            if not mrn:
                issues.append(ImportIssue(row_number, f"{name}:row {row_number}:mrn", f"{kind}: mrn: is required"))
                continue
            if bad:
                continue
            origin = Origin(row_number, f"{name}:row {row_number}")
            own = {column: values[i] for i, column in own_at}
            if is_patient:
                records.append(make(source_id=f"mrn:{mrn}", origin=origin, source_system=SOURCE_SYSTEM,
                                    mrn=mrn, **own))
            else:
                source_id = (values[sid_at] if sid_at >= 0 else None) or _row_id(kind, id_order, row)
                records.append(make(source_id=f"{kind}:{source_id}", origin=origin, source_system=SOURCE_SYSTEM,
                                    patient_ref=f"mrn:{mrn}", **own))
    except csv.Error as err:
        issues.append(ImportIssue(row_number, f"{name}:row {row_number}", f"unreadable CSV: {err}"))
    if result.entries == 0 and not issues:
        issues.append(ImportIssue(None, name, "the file has a header but no data rows"))
    return result


def _row_id_order(header: list[str]) -> list[tuple[int, str]]:
    """(cell index, ``"name="``) in column-name order: the layout of :func:`_row_id`'s digest."""
    return [(i, f"{header[i]}=") for i in sorted(range(len(header)), key=header.__getitem__)]


def _row_id(kind: str, order: list[tuple[int, str]], row: list[str]) -> str:
    """A stable id of a row without a source id: its template and its values, in column-name order.

    The digest of ``kind``, then ``name=value`` (value stripped) for each column sorted by name,
    joined by unit separators — the same id for the same row in any file and column order.
    """
    canonical = "\x1f".join([prefix + row[i].strip() for i, prefix in order])
    return hashlib.sha256(f"{kind}\x1e{canonical}".encode()).hexdigest()[:40]


__all__ = ["SOURCE_SYSTEM", "TEMPLATES", "Template", "match_template", "parse", "template_csv"]
