"""mCODE Extraction Framework CSV files (``mcode/mcode-extraction-framework`` client data).

The framework reads one CSV per data element, keyed by ``mrn`` (samples and provenance:
``tests/fixtures/fhir-samples/mcode-extraction-csv/``, ``SOURCES.md`` §4).  The header decides the
element (:data:`FORMATS`, matched case-insensitively, extra columns allowed).  Each row becomes the
minimal FHIR R4 resource the framework itself would build from it, and that resource goes through the
FHIR importer's own handlers (:mod:`surveillance.importing.fhir`), so a row maps exactly as the same
fact in a FHIR file does: the same code tables (:mod:`surveillance.importing.codes`), the same
primary-site, bone-metastasis, ECOG/KPS, lab, radiotherapy/surgery and bone-modifying-agent rules.

What the product stores from each file:

* ``patient-information``: MRN, family and given name, birth date, gender (``dateOfDeath`` when
  present: deceased).  Race, ethnicity, language and address are not stored.
* ``condition-information``: the primary cancer → ``primary_site`` (SNOMED/ICD-10 tables, then the
  display text for the generic 363346000); a bone metastasis → Cancer Locomo condition / spinal lesion
  at a vertebral ``bodySite``.
* ``observation-information``: ECOG (LOINC 89247-1) and Karnofsky (89243-0); labs by LOINC with the unit
  given inline (``"4.1 g/dL"``, ``"66.89 [in_i]"``).
* ``procedure-information``: radiotherapy and spinal surgery to bone or spine.
* ``cancer-related-medication-administration/request-information``: bone-modifying agents by RxNorm.
* ``staging``, ``cancer-disease-status`` and ``adverse-event`` files: nothing the product stores —
  reported as one ``info`` issue, not an error.

Rows for an MRN that is neither in the file nor in the database are reported by the writer as an
unresolved patient reference.  Dates must be ``YYYY-MM-DD``: ``12-09-1994`` (in the sample adverse
events) is ambiguous and is refused where a date is used.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from surveillance.importing import codes as c
from surveillance.importing import fhir
from surveillance.importing import records as r
from surveillance.importing.records import ImportIssue, Origin, ParseResult

#: The same source system as the product's CSV templates: a patient created from either CSV format is
#: the same patient (``csv``, ``mrn:<MRN>``) for the other one.
SOURCE_SYSTEM = "csv"
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_QUANTITY = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Format:
    kind: str  # the framework's file name without ".csv"
    required: tuple[str, ...]  # columns (lower case) that identify the format
    id_column: str | None
    date_columns: tuple[str, ...] = ()
    stored: bool = True  # False: nothing the product stores


FORMATS: tuple[Format, ...] = (
    Format("patient-information", ("mrn", "familyname", "givenname", "gender", "dateofbirth"), None,
           ("dateofbirth",)),
    Format("condition-information", ("mrn", "conditionid", "codesystem", "code", "dateofdiagnosis"), "conditionid",
           ("dateofdiagnosis",)),
    Format("observation-information", ("mrn", "observationid", "code", "codesystem", "value", "effectivedate"),
           "observationid", ("effectivedate",)),
    Format("procedure-information", ("mrn", "procedureid", "code", "codesystem", "effectivedate"), "procedureid",
           ("effectivedate",)),
    Format("cancer-related-medication-administration-information",
           ("mrn", "medicationid", "code", "codesystem", "startdate"), "medicationid", ("startdate",)),
    Format("cancer-related-medication-request-information",
           ("mrn", "requestid", "code", "codesystem", "authoredon"), "requestid", ("authoredon",)),
    Format("cancer-disease-status-information", ("mrn", "conditionid", "diseasestatuscode", "dateofobservation"),
           None, stored=False),
    Format("staging-information", ("mrn", "conditionid", "stagegroup", "t", "n", "m"), None, stored=False),
    Format("adverse-event-information", ("mrn", "adverseeventid", "adverseeventcode"), None, stored=False),
)  # fmt: skip


def _read(data: bytes) -> tuple[list[str], list[list[str]]] | str:
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return f"the file is not UTF-8 text (byte {err.start})"
    try:
        rows = list(csv.reader(io.StringIO(content, newline=""), strict=True))
    except csv.Error as err:
        return f"unreadable CSV: {err}"
    if not rows:
        return "the file is empty"
    return [h.strip().lower() for h in rows[0]], rows[1:]


def format_of(data: bytes) -> Format | None:
    """The mCODE Extraction Framework element this CSV's header names, or ``None``."""
    read = _read(data)
    if isinstance(read, str):
        return None
    header = set(read[0])
    fits = [f for f in FORMATS if set(f.required) <= header]
    # the most specific fit (the staging header also holds mrn + conditionid, …)
    return max(fits, key=lambda f: len(f.required)) if fits else None


class _RowParser(fhir._Parser):
    """The FHIR handlers with patients named by MRN (``mrn:<MRN>``) instead of Patient references."""

    def patient_ref(self, resource: dict, origin: Origin) -> str:
        mrn = resource["subject"]["mrn"]
        ref = f"mrn:{mrn}"
        if ref not in self.patients:  # a stub: only what a row sets is written (None never overwrites)
            self.patients[ref] = r.PatientRecord(ref, origin, SOURCE_SYSTEM, mrn=mrn)
        return ref


def _coding(system: str, code: str, display: str = "") -> dict:
    if display:
        return {"coding": [{"system": system, "code": code, "display": display}]}
    return {"coding": [{"system": system, "code": code}], "text": f"{code} ({system})" if system else code}


def _quantity(raw: str) -> dict | None:
    m = _QUANTITY.match(raw)
    if not m:
        return None
    unit = m.group(2)  # a UCUM code as given ("[in_i]" keeps its brackets)
    value = float(m.group(1))
    return {
        "value": int(value) if value.is_integer() and "." not in m.group(1) else value,
        **({"code": unit} if unit else {}),
    }


def _resource(kind: str, row: dict[str, str], rid: str) -> dict:
    subject = {"mrn": row["mrn"]}
    g = row.get
    if kind == "condition-information":
        res = {"resourceType": "Condition", "id": rid, "subject": subject,
               "code": _coding(g("codesystem", ""), g("code", ""), g("displayname", "")),
               "onsetDateTime": g("dateofdiagnosis") or None}  # fmt: skip
        if g("bodysite"):
            res["bodySite"] = [_coding(c.SNOMED, s) for s in g("bodysite", "").split("|") if s]
        if g("verificationstatus"):
            res["verificationStatus"] = _coding("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                                g("verificationstatus", ""))  # fmt: skip
        return res
    if kind == "observation-information":
        res = {"resourceType": "Observation", "id": rid, "subject": subject, "status": g("status") or "final",
               "code": _coding(g("codesystem", ""), g("code", ""), g("displayname", "")),
               "effectiveDateTime": g("effectivedate") or None}  # fmt: skip
        value = g("value", "")
        if g("valuecodesystem"):
            res["valueCodeableConcept"] = _coding(g("valuecodesystem", ""), value)
        elif value:
            quantity = _quantity(value)
            if quantity is not None and isinstance(quantity["value"], int) and "code" not in quantity:
                res["valueInteger"] = quantity["value"]
            if quantity is not None:
                res["valueQuantity"] = quantity
        if g("bodysite"):
            res["bodySite"] = _coding(c.SNOMED, g("bodysite", ""))
        return res
    if kind == "procedure-information":
        res = {"resourceType": "Procedure", "id": rid, "subject": subject, "status": g("status") or "completed",
               "code": _coding(g("codesystem", ""), g("code", ""), g("displayname", "")),
               "performedDateTime": g("effectivedate") or None}  # fmt: skip
        if g("bodysite"):
            res["bodySite"] = [_coding(c.SNOMED, s) for s in g("bodysite", "").split("|") if s]
        return res
    med = _coding(g("codesystem", ""), g("code", ""), g("displaytext", ""))
    if kind == "cancer-related-medication-administration-information":
        return {"resourceType": "MedicationAdministration", "id": rid, "subject": subject,
                "status": g("status") or "completed", "medicationCodeableConcept": med,
                "effectivePeriod": {"start": g("startdate") or None, "end": g("enddate") or None}}  # fmt: skip
    res = {"resourceType": "MedicationRequest", "id": rid, "subject": subject, "status": g("status") or "active",
           "medicationCodeableConcept": med, "authoredOn": g("authoredon") or None}  # fmt: skip
    if g("dosequantityvalue"):
        quantity = _quantity(g("dosequantityvalue", ""))
        if quantity is not None:
            quantity["code"] = g("dosequantityunit") or quantity.get("code", "")
            res["dosageInstruction"] = [{"doseAndRate": [{"doseQuantity": quantity}]}]
    return res


def parse(name: str, data: bytes) -> ParseResult:
    """Records of one mCODE Extraction Framework CSV, and the issues of what cannot be read or stored."""
    out = ParseResult(format="csv")
    fmt = format_of(data)
    read = _read(data)
    if fmt is None or isinstance(read, str):
        out.issues.append(ImportIssue(None, name, read if isinstance(read, str) else
                                      "the header is not an mCODE Extraction Framework CSV"))  # fmt: skip
        return out
    header, rows = read
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        out.issues.append(ImportIssue(None, name, f"duplicate column(s) {', '.join(dup)}"))
        return out
    data_rows = [(i + 2, row) for i, row in enumerate(rows) if "".join(row).strip()]
    out.entries = len(data_rows)
    if not fmt.stored:
        out.issues.append(ImportIssue(None, name, f"mCODE Extraction Framework {fmt.kind} ({len(data_rows)} rows): "
                                      "nothing the product stores; not imported", "info"))  # fmt: skip
        return out
    parser = _RowParser(name)
    parser.out = out
    seen: dict[str, int] = {}
    for number, cells in data_rows:
        loc = f"{name}:row {number}"
        origin = Origin(number, loc)
        if len(cells) != len(header):
            out.issues.append(ImportIssue(number, loc, f"{len(cells)} cells for {len(header)} columns"))
            continue
        row = {h: v.strip() for h, v in zip(header, cells, strict=True)}
        if not row["mrn"]:
            out.issues.append(ImportIssue(number, f"{loc}:mrn", f"{fmt.kind}: mrn: is required"))
            continue
        bad = [col for col in fmt.date_columns if row.get(col) and not _ISO.match(row[col])]
        if bad:
            for col in bad:
                out.issues.append(ImportIssue(number, f"{loc}:{col}", f"{fmt.kind}: {col}: {row[col]!r} is not a "
                                              "date YYYY-MM-DD (a date like 12-09-1994 is ambiguous)"))  # fmt: skip
            continue
        if fmt.kind == "patient-information":
            _patient(parser, origin, row)
            continue
        rid = row.get(fmt.id_column or "") or f"row{number}"
        if rid in seen:
            out.issues.append(ImportIssue(number, loc, f"{fmt.id_column} {rid!r} already on row {seen[rid]}"))
            continue
        seen[rid] = number
        res = _resource(fmt.kind, row, f"mcode-{rid}")
        handler = {
            "Condition": parser.condition,
            "Observation": parser.observation,
            "Procedure": parser.procedure,
            "MedicationAdministration": parser.medication,
            "MedicationRequest": parser.medication,
        }
        parser._guard(origin, handler[res["resourceType"]], res, None)  # noqa: SLF001
    parser._ps_consistency()  # noqa: SLF001
    # a patient stub carries only what a row set (e.g. primary_site); a stub with nothing is not written
    stubs = [p for p in parser.patients.values()
             if any(v is not None for k, v in r.record_values(p).items() if k != "mrn")]  # fmt: skip
    out.records[:0] = stubs
    for rec in out.records:
        rec.source_system = SOURCE_SYSTEM
    if out.entries == 0 and not out.issues:
        out.issues.append(ImportIssue(None, name, "the file has a header but no data rows"))
    return out


def _patient(parser: _RowParser, origin: Origin, row: dict[str, str]) -> None:
    ref = f"mrn:{row['mrn']}"
    if ref in parser.patients:
        parser.out.issues.append(ImportIssue.at(origin, f"MRN {row['mrn']} appears again: the first row is kept"))
        return
    gender = row.get("gender") or None
    record = r.PatientRecord(ref, origin, SOURCE_SYSTEM, mrn=row["mrn"], family_name=row.get("familyname") or None,
                             given_name=row.get("givenname") or None, birth_date=row.get("dateofbirth") or None,
                             sex=gender)  # fmt: skip
    death = row.get("dateofdeath")
    if death:
        if not _ISO.match(death):
            parser.out.issues.append(ImportIssue.at(origin, f"dateOfDeath {death!r} is not a date YYYY-MM-DD"))
            return
        record.status, record.status_on, record.deceased_on = "deceased", death, death
    if record.birth_date is None:
        parser.out.issues.append(ImportIssue.at(origin, "no dateOfBirth: age-based scores stay unknown", "warning"))
    parser.patients[ref] = record


__all__ = ["FORMATS", "SOURCE_SYSTEM", "Format", "format_of", "parse"]
