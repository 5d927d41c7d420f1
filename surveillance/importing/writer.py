"""Validate import records and store them: one transaction per file, idempotent, audited, bulk.

:func:`write_records` is the single writer behind every importer (FHIR, CSV):

1. A file whose SHA-256 was already imported (``import_batch`` status
   ``imported``/``partial``) is ``unchanged``: nothing is written but the
   attempt (an ``import_batch`` row and an audit event).
2. Every record is validated with the rules of ``surveillance.service`` (the
   same helpers: vocabularies, ranges, units, dates neither in the future nor
   before birth); a failure becomes an :class:`ImportIssue` at the record's
   entry.  Fact records whose ``patient_ref`` names no patient of the file or
   of the database are reported as unresolved references.
3. Any error and not ``partial``: the file is ``rejected`` — nothing of it is
   written (only the ``import_batch`` row saying so, and an audit event).  With
   ``partial`` every entry holding an error is left out (entry-level: all the
   records of that Bundle entry / CSV row) and the rest is imported.
4. The write is one transaction through the raw driver (``db.bulk``): patients
   matched by ``(source_system, source_id)`` then MRN, inserted or updated;
   fact rows inserted unless the patient already holds a row with the same
   ``(source_system, source_id)`` (unique index), so a re-import changes
   nothing.  On PostgreSQL the stored patients the file names are locked first
   (``SELECT … FOR UPDATE`` in id order, as every service fact write locks its
   patient), so a concurrent write for one of them waits instead of rebuilding
   ``patient_state`` from facts that lack this file's.  A lesion at a level
   where the patient already has an active lesion
   is that lesion (its assessment is added once per day).  ``patient_state`` is
   refreshed and the patients queued, in the same transaction, with the
   ``import_batch`` row and one ``import.file`` audit event.
5. After the commit the imported patients are re-scored (an incremental
   recompute restricted to them), so they have a risk snapshot at once.

Deviation from the interactive forms (documented in ``docs/import-format.md``):
radiotherapy or spinal surgery whose source names a spinal *region* but no
vertebra is imported with ``level`` NULL and a warning rather than refused, and
a zoledronic acid / pamidronate dose the source does not give is stored as
unknown (NULL), never guessed.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from db import bulk
from db.engine import write_session
from surveillance import audit
from surveillance import service as svc
from surveillance.calendar import clinical_day
from surveillance.importing import records as r
from surveillance.importing.records import ImportIssue, ImportResult
from surveillance.labs import LABS, LabTest, to_canonical
from surveillance.locomo import LocomoCondition
from surveillance.scoring.sre import SreType
from surveillance.scoring.vocab import (
    LEVEL_ORDER,
    Alignment,
    Ambulation,
    BilskyGrade,
    Collapse,
    Frankel,
    LesionType,
    Level,
    Pain,
    Posterolateral,
    PrimarySite,
    VisceralStatus,
)
from surveillance.state import refresh_patient_state

ValidationError = svc.ValidationError
Progress = Callable[[int, int, str], None]

_CHUNK = 500

# --------------------------------------------------------------------------- validation


@functools.cache
def _allowed(enum) -> tuple[str, ...]:
    return tuple(e.value for e in enum)


def _enum(name: str, value: Any, enum, *, required: bool = False) -> str | None:
    """``svc._enum`` with the enum's values listed once (it lists them on every call: 100,000 rows)."""
    return svc._choice(name, value, _allowed(enum), required=required)


def _day(name, value, today, birth, required=True) -> str | None:
    day = svc._day(name, value, today=today, birth=birth, required=required)
    return day.isoformat() if day is not None else None


def _patient_values(rec: r.PatientRecord, today: date) -> dict[str, Any]:
    birth = svc._day("birth_date", rec.birth_date, today=today, required=False)
    values: dict[str, Any] = {
        "mrn": svc._text("mrn", rec.mrn, max_length=32),
        "family_name": svc._text("family_name", rec.family_name, max_length=128),
        "given_name": svc._text("given_name", rec.given_name, max_length=128),
        "birth_date": birth.isoformat() if birth else None,
        "sex": svc._text("sex", rec.sex, max_length=16),
        "department": svc._text("department", rec.department, max_length=64),
        "primary_site": _enum("primary_site", rec.primary_site, PrimarySite),
        "primary_histology": svc._text("primary_histology", rec.primary_histology, max_length=256),
        "hormone_dependent": svc._bool("hormone_dependent", rec.hormone_dependent),
        "molecular_targeted_therapy": svc._bool("molecular_targeted_therapy", rec.molecular_targeted_therapy),
        "previous_chemotherapy": svc._bool("previous_chemotherapy", rec.previous_chemotherapy),
        "status": svc._choice("status", rec.status, svc.PATIENT_STATUSES),
        "status_on": _day("status_on", rec.status_on, today, birth, required=False),
        "deceased_on": _day("deceased_on", rec.deceased_on, today, birth, required=False),
        "fit_for_surgery": svc._bool("fit_for_surgery", rec.fit_for_surgery),
        "zoledronic_regimen": svc._choice("zoledronic_regimen", rec.zoledronic_regimen, svc.ZOLEDRONIC_REGIMENS),
        "bma_not_indicated_reason": svc._text("bma_not_indicated_reason", rec.bma_not_indicated_reason,
                                              max_length=256),  # fmt: skip
        "denosumab_transition_plan": svc._text("denosumab_transition_plan", rec.denosumab_transition_plan,
                                               max_length=256),  # fmt: skip
        "assigned_nurse_id": None,  # from rec.assigned_nurse (a user name) by _resolve_nurses
        "registered_on": _day("registered_on", rec.registered_on, today, birth, required=False),
    }
    if values["status"] == "deceased" and values["deceased_on"] is None:
        raise ValidationError("deceased_on", "is required when the status is deceased")
    return values


def _fact_values(rec: r.Record, today: date, birth: date | None) -> tuple[dict[str, Any], list[str]]:
    """The validated column values of a fact record, and warnings."""
    warnings: list[str] = []
    if isinstance(rec, r.PerformanceStatusRecord):
        e = svc._number("ecog", rec.ecog, 0, 4, "(ECOG grade; 5 = dead is recorded as a status)", integer=True)
        k = svc._number("kps", rec.kps, 10, 100, "% (multiples of 10)", integer=True)
        if e is None and k is None:
            raise ValidationError("ecog", "give an ECOG grade, a Karnofsky score, or both")
        if k is not None and k % 10:
            raise ValidationError("kps", f"{k} is not a multiple of 10")
        return {"recorded_on": _day("recorded_on", rec.recorded_on, today, birth), "ecog": e, "kps": k}, warnings
    if isinstance(rec, r.LesionRecord):
        values = {
            "level": _enum("level", rec.level, Level, required=True),
            "level_span_end": _enum("level_span_end", rec.level_span_end, Level),
            "first_seen_on": _day("first_seen_on", rec.first_seen_on, today, birth),
            "pain": _enum("pain", rec.pain, Pain),
            "lesion_type": _enum("lesion_type", rec.lesion_type, LesionType),
            "alignment": _enum("alignment", rec.alignment, Alignment),
            "collapse": _enum("collapse", rec.collapse, Collapse),
            "posterolateral": _enum("posterolateral", rec.posterolateral, Posterolateral),
            "bilsky_escc": _enum("bilsky_escc", rec.bilsky_escc, BilskyGrade),
            "assessed_on": _day("assessed_on", rec.assessed_on, today, birth, required=False),
            "active": rec.active is not False,
            "wbb_zones": svc._text("wbb_zones", rec.wbb_zones, max_length=64),
            "wbb_layers": svc._text("wbb_layers", rec.wbb_layers, max_length=16),
            "wbb_numbering": svc._text("wbb_numbering", rec.wbb_numbering, max_length=24),
            "imaging_source": svc._text("imaging_source", rec.imaging_source, max_length=128),
        }
        end = values["level_span_end"]
        if end is not None:
            first, last = LEVEL_ORDER[Level(values["level"])], LEVEL_ORDER[Level(end)]
            if last < first:
                raise ValidationError("level_span_end", f"{end} is above {values['level']}")
            if last - first > 5:
                raise ValidationError("level_span_end", "spans more than 6 levels: record separate lesions")
            if end == values["level"]:
                values["level_span_end"] = None
        if rec.has_assessment() and values["assessed_on"] is None:
            values["assessed_on"] = values["first_seen_on"]
        return values, warnings
    if isinstance(rec, r.ImagingRecord):
        return {
            "performed_on": _day("performed_on", rec.performed_on, today, birth),
            "modality": svc._choice("modality", rec.modality, svc.IMAGING_MODALITIES, required=True),
            "region": svc._choice("region", rec.region, svc.IMAGING_REGIONS, required=True),
            "findings": svc._text("findings", rec.findings, max_length=4000),
        }, warnings
    if isinstance(rec, r.NeuroStatusRecord):
        values = {
            "recorded_on": _day("recorded_on", rec.recorded_on, today, birth),
            "frankel_grade": _enum("frankel_grade", rec.frankel_grade, Frankel),
            "ambulatory_status": _enum("ambulatory_status", rec.ambulatory_status, Ambulation),
            "new_deficit": bool(svc._bool("new_deficit", rec.new_deficit)),
            "pain_suggests_cord_compression": bool(
                svc._bool("pain_suggests_cord_compression", rec.pain_suggests_cord_compression)
            ),
            "new_spinal_pain": bool(svc._bool("new_spinal_pain", rec.new_spinal_pain)),
        }
        return values, warnings
    if isinstance(rec, r.LabRecord):
        test = LabTest(_enum("test", rec.test, LabTest, required=True))
        definition = LABS[test]
        unit = rec.unit or definition.unit
        raw = svc._number("value", rec.value, 0, 1e9, unit, required=True)
        try:
            canonical = to_canonical(test, raw, unit)
        except ValueError as err:
            raise ValidationError("unit", str(err)) from None
        low, high = definition.plausible
        if not low <= canonical <= high:
            raise ValidationError(
                "value", f"{raw:g} {unit} is implausible for {definition.label} ({low:g}–{high:g} {definition.unit})"
            )
        return {
            "collected_on": _day("collected_on", rec.collected_on, today, birth),
            "test": test.value,
            "loinc": rec.loinc or definition.loinc[0],
            "value": canonical,
            "unit": definition.unit,
        }, warnings
    if isinstance(rec, r.MetastaticStatusRecord):
        return {
            "recorded_on": _day("recorded_on", rec.recorded_on, today, birth),
            "visceral_status": _enum("visceral_status", rec.visceral_status, VisceralStatus),
            "visceral_treatable": svc._bool("visceral_treatable", rec.visceral_treatable),
            "visceral_removable": svc._bool("visceral_removable", rec.visceral_removable),
            "brain_metastases": svc._bool("brain_metastases", rec.brain_metastases),
            "extraspinal_bone_metastases": svc._number(
                "extraspinal_bone_metastases", rec.extraspinal_bone_metastases, 0, 500, "foci", integer=True
            ),
            "vertebral_body_metastases": svc._number(
                "vertebral_body_metastases", rec.vertebral_body_metastases, 1, 30, "vertebral bodies", integer=True
            ),
            "extraspinal_pathological_fracture": svc._bool(
                "extraspinal_pathological_fracture", rec.extraspinal_pathological_fracture
            ),
        }, warnings
    if isinstance(rec, r.BmaRecord):
        agent = svc._choice("agent", rec.agent, svc.BMA_AGENTS, required=True)
        low, high = svc.BMA_DOSE_LIMITS_MG[agent]
        dose = svc._number("dose_mg", rec.dose_mg, low, high, f"mg for {agent}")
        if dose is None:
            if agent == "denosumab":
                raise ValidationError(
                    "dose_mg",
                    "denosumab without a dose or product strength: 60 mg (osteoporosis) and 120 mg "
                    "(SRE prevention) cannot be told apart",
                )
            warnings.append(f"{agent}: the dose is not given; recorded as unknown")
        prevention = not (agent == "denosumab" and dose is not None and dose <= svc.OSTEOPOROSIS_DENOSUMAB_MG)
        if not prevention:
            warnings.append("denosumab 60 mg is the osteoporosis dose, not an SRE-prevention regimen (120 mg q4w)")
        return {
            "given_on": _day("given_on", rec.given_on, today, birth),
            "agent": agent,
            "dose_mg": dose,
            "sre_prevention": prevention,
        }, warnings
    if isinstance(rec, r.TreatmentRecord):
        kind = svc._choice("kind", rec.kind, tuple(svc.TREATMENTS), required=True)
        modality = svc._choice("modality", rec.modality, svc.TREATMENTS[kind], required=True)
        start = _day("started_on", rec.started_on, today, birth)
        end = _day("ended_on", rec.ended_on, today, birth, required=False)
        if end is not None and end < start:
            raise ValidationError("ended_on", "is before the start")
        level = _enum("level", rec.level, Level)
        if kind != "systemic" and level is None:
            region = svc._choice("region", rec.region, svc.IMAGING_REGIONS)
            if region is None:
                raise ValidationError("level", "is required for spinal radiotherapy or surgery (no level or region)")
            warnings.append(f"{kind} to the {region} spine without a vertebral level: level recorded as unknown")
        margin = svc._number("separation_margin_mm", rec.separation_margin_mm, 0, 50, "mm")
        if margin is not None and modality != "separation":
            raise ValidationError("separation_margin_mm", "applies to separation surgery only")
        return {
            "kind": kind,
            "modality": modality,
            "started_on": start,
            "ended_on": end,
            "level": level,
            "to_bone": kind != "systemic",
            "dose_gy": svc._number("dose_gy", rec.dose_gy, 0.5, 80, "Gy") if kind == "radiotherapy" else None,
            "fractions": svc._number("fractions", rec.fractions, 1, 40, "fractions", integer=True)
            if kind == "radiotherapy"
            else None,
            "separation_margin_mm": margin,
            "emergency": bool(svc._bool("emergency", rec.emergency)),
        }, warnings
    if isinstance(rec, r.SkeletalEventRecord):
        return {
            "occurred_on": _day("occurred_on", rec.occurred_on, today, birth),
            "event_type": _enum("event_type", rec.event_type, SreType, required=True),
            "level": _enum("level", rec.level, Level),
            "emergency": bool(svc._bool("emergency", rec.emergency)),
        }, warnings
    if isinstance(rec, r.LocomoConditionRecord):
        return {
            "condition": _enum("condition", rec.condition, LocomoCondition, required=True),
            "onset_on": _day("onset_on", rec.onset_on, today, birth),
            "resolved_on": _day("resolved_on", rec.resolved_on, today, birth, required=False),
            "management_plan": svc._text("management_plan", rec.management_plan, max_length=256),
            "orthopaedic_review_on": _day("orthopaedic_review_on", rec.orthopaedic_review_on, today, birth, False),
        }, warnings
    if isinstance(rec, r.DentalExamRecord):
        return {
            "examined_on": _day("examined_on", rec.examined_on, today, birth),
            "onj_suspected": bool(svc._bool("onj_suspected", rec.onj_suspected)),
            "findings": svc._text("findings", rec.findings, max_length=2000),
        }, warnings
    if isinstance(rec, r.BoardCaseRecord):
        return {
            "queued_on": _day("queued_on", rec.queued_on, today, birth),
            "reason": svc._text("reason", rec.reason, max_length=256, required=True),
            "decided_on": _day("decided_on", rec.decided_on, today, birth, required=False),
            "decision": svc._text("decision", rec.decision, max_length=4000),
            "decided_by": svc._text("decided_by", rec.decided_by, max_length=64),
        }, warnings
    raise TypeError(f"not an import record: {type(rec).__name__}")


# --------------------------------------------------------------------------- the batch row


def _record_batch(
    conn: Connection,
    *,
    sha: str,
    name: str,
    fmt: str,
    actor: str,
    now: datetime,
    status: str,
    entries: int,
    counts: dict[str, int],
    issues: int,
) -> int:
    bulk.execute(
        conn,
        "INSERT INTO import_batch (file_sha256, file_name, file_format, actor, imported_at, status, entries, "
        "counts, issues) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (sha, name[:256], fmt[:8], actor[:64], now, status, entries, json.dumps(counts, sort_keys=True), issues),
    )
    return bulk.fetchall(conn, "SELECT MAX(id) FROM import_batch WHERE file_sha256 = ?", (sha,))[0][0]


def _finish_without_data(engine: Engine, result: ImportResult, *, fmt: str, actor: str, now: datetime) -> ImportResult:
    """Record a rejected or unchanged attempt: the batch row and an audit event, no data."""
    with write_session(engine) as session:
        conn = session.connection()
        result.batch_id = _record_batch(
            conn,
            sha=result.file_sha256,
            name=result.file_name,
            fmt=fmt,
            actor=actor,
            now=now,
            status=result.status,
            entries=result.entries,
            counts={},
            issues=len(result.issues),
        )
        audit.record(
            session,
            actor=actor,
            action="import.file",
            target=f"import_batch:{result.batch_id}",
            outcome="failure" if result.status == "rejected" else "success",
            detail={
                "file_name": result.file_name,
                "file_sha256": result.file_sha256,
                "status": result.status,
                "errors": len(result.errors),
            },
            now=now,
        )
    return result


# --------------------------------------------------------------------------- the writer


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def write_records(
    engine: Engine,
    records: Sequence[r.Record],
    *,
    file_name: str,
    file_sha256: str,
    actor: str,
    now: datetime,
    partial: bool = False,
    parse_issues: Sequence[ImportIssue] = (),
    entries: int = 0,
    progress: Progress | None = None,
    file_format: str = "fhir",
    rescore_after: bool = True,
) -> ImportResult:
    result = ImportResult("imported", file_sha256, file_name, issues=list(parse_issues), entries=entries)
    today = clinical_day(now)

    with engine.connect() as conn:
        prior = bulk.fetchall(
            conn,
            "SELECT MIN(id) FROM import_batch WHERE file_sha256 = ? AND status IN ('imported', 'partial')",
            (file_sha256,),
        )[0][0]
    if prior is not None:
        result.status = "unchanged"
        result.issues = [
            ImportIssue(
                None,
                file_name,
                f"this file (SHA-256 {file_sha256[:12]}…) was imported as batch {prior}; nothing changed",
                "info",
            )
        ]
        return _finish_without_data(engine, result, fmt=file_format, actor=actor, now=now)

    # -- patients of the file ------------------------------------------------
    patients: dict[tuple[str, str], r.PatientRecord] = {}
    facts: list[r.Record] = []
    for rec in records:
        if isinstance(rec, r.PatientRecord):
            key = (rec.source_system, rec.source_id)
            if key in patients:
                result.issues.append(
                    ImportIssue.at(rec.origin, f"duplicate patient {rec.source_id}: the first one is used", "warning")
                )
                continue
            patients[key] = rec
        else:
            facts.append(rec)

    bad_entries: set[int | None] = {i.entry_index for i in result.issues if i.severity == "error"}
    patient_values: dict[tuple[str, str], dict[str, Any]] = {}
    for key, rec in patients.items():
        try:
            patient_values[key] = _patient_values(rec, today)
        except ValidationError as err:
            result.issues.append(ImportIssue.at(rec.origin, f"Patient {rec.source_id}: {err}"))
            bad_entries.add(rec.origin.entry_index)

    mrn_refs = sorted({f.patient_ref[4:] for f in facts if f.patient_ref.startswith("mrn:")})

    with write_session(engine) as session:
        conn = session.connection()
        _resolve_nurses(conn, patients, patient_values, result)
        source_ids = [k[1] for k in patient_values]
        mrns = sorted({v["mrn"] for v in patient_values.values() if v["mrn"]} | set(mrn_refs))
        locked = _lock_patients(conn, _patient_ids(conn, source_ids, mrns))
        # existing patients: by source id, then by MRN (read after the lock: what they hold now)
        existing: dict[tuple[str, str], tuple] = {}
        cols = "id, mrn, source_system, source_id, birth_date, " + ", ".join(_PATIENT_UPDATABLE)
        for chunk in _chunks(source_ids):
            marks = ", ".join("?" for _ in chunk)
            for row in bulk.fetchall(conn, f"SELECT {cols} FROM patient WHERE source_id IN ({marks})", chunk):
                existing[(row[2], row[3])] = row
        by_mrn: dict[str, tuple] = {}
        for chunk in _chunks(mrns):
            marks = ", ".join("?" for _ in chunk)
            for row in bulk.fetchall(conn, f"SELECT {cols} FROM patient WHERE mrn IN ({marks})", chunk):
                by_mrn[row[1]] = row
        # a patient another import committed between the two reads: lock it too (after the others)
        _lock_patients(conn, {row[0] for row in (*existing.values(), *by_mrn.values())} - locked)

        matched: dict[tuple[str, str], tuple] = {}
        for key, values in patient_values.items():
            row = existing.get(key) or (by_mrn.get(values["mrn"]) if values["mrn"] else None)
            if row is None:
                rec = patients[key]
                if values["mrn"] is None:
                    result.issues.append(
                        ImportIssue.at(
                            rec.origin,
                            f"unresolved patient reference {key[1]!r}: not in this file and not imported before",
                        )
                    )
                    bad_entries.add(rec.origin.entry_index)
                elif values["family_name"] is None and values["given_name"] is None:
                    # a row that only adds to a patient (e.g. an mCODE condition row): its patient is missing
                    result.issues.append(
                        ImportIssue.at(
                            rec.origin,
                            f"no patient with MRN {values['mrn']}: not in this file and not imported before "
                            "(import the patient first)",
                        )
                    )
                    bad_entries.add(rec.origin.entry_index)
                else:
                    for name in ("family_name", "given_name"):
                        if values[name] is None:
                            result.issues.append(ImportIssue.at(rec.origin, f"Patient {key[1]}: {name}: is required"))
                            bad_entries.add(rec.origin.entry_index)
            if row is not None:
                if row[2] is not None and row[3] is not None and (row[2], row[3]) != key:
                    rec = patients[key]
                    result.issues.append(
                        ImportIssue.at(
                            rec.origin,
                            f"MRN {values['mrn']} belongs to a patient imported from {row[2]} {row[3]}, "
                            f"not {key[0]} {key[1]}",
                        )
                    )
                    bad_entries.add(rec.origin.entry_index)
                    continue
                matched[key] = row

        # validate facts (birth date from the file or from the database, looked up once per patient)
        births: dict[tuple[tuple[str, str] | None, str | None], date | None] = {}

        def birth_of(key: tuple[str, str] | None, mrn: str | None) -> date | None:
            found = births.get((key, mrn), births)
            if found is not births:
                return found
            found = None
            if key is not None and patient_values.get(key, {}).get("birth_date"):
                found = date.fromisoformat(patient_values[key]["birth_date"])
            else:
                row = matched.get(key) if key is not None else by_mrn.get(mrn)
                if row is not None and row[4] is not None:
                    found = row[4] if isinstance(row[4], date) else date.fromisoformat(str(row[4]))
            births[(key, mrn)] = found
            return found

        planned: list[tuple[r.Record, dict[str, Any], tuple[str, str] | None, str | None]] = []
        for rec in facts:
            key = mrn = None
            if rec.patient_ref.startswith("mrn:"):
                mrn = rec.patient_ref[4:]
                if mrn not in by_mrn:
                    result.issues.append(
                        ImportIssue.at(rec.origin, f"unresolved patient reference: no patient with MRN {mrn}")
                    )
                    bad_entries.add(rec.origin.entry_index)
                    continue
            else:
                if (rec.source_system, rec.patient_ref) not in patients:
                    result.issues.append(
                        ImportIssue.at(
                            rec.origin, f"unresolved patient reference {rec.patient_ref!r}: no such Patient in the file"
                        )
                    )
                    bad_entries.add(rec.origin.entry_index)
                    continue
                key = (rec.source_system, rec.patient_ref)
            try:
                values, warnings = _fact_values(rec, today, birth_of(key, mrn))
            except ValidationError as err:
                result.issues.append(ImportIssue.at(rec.origin, f"{r.kind_of(rec)}: {err}"))
                bad_entries.add(rec.origin.entry_index)
                continue
            if warnings:
                result.issues.extend(ImportIssue.at(rec.origin, w, "warning") for w in warnings)
            planned.append((rec, values, key, mrn))

        errors = [i for i in result.issues if i.severity == "error"]
        if errors and not partial:
            session.rollback()
            result.status = "rejected"
            result.counts = {}
            return _finish_without_data(engine, result, fmt=file_format, actor=actor, now=now)
        if errors:
            result.status = "partial"
            # a patient whose entry failed takes its facts with it
            bad_patients = {k for k, p in patients.items() if p.origin.entry_index in bad_entries}
            for k in bad_patients:
                patient_values.pop(k, None)
            dropped = [p for p in planned if p[0].origin.entry_index in bad_entries or p[2] in bad_patients]
            for rec, _v, key, _m in dropped:
                if key in bad_patients and rec.origin.entry_index not in bad_entries:
                    result.issues.append(
                        ImportIssue.at(rec.origin, "left out: its patient was not imported", "warning")
                    )
            planned = [p for p in planned if p[0].origin.entry_index not in bad_entries and p[2] not in bad_patients]

        total = len(patient_values) + len(planned)
        if progress:
            progress(0, total, "write")

        # -- write patients -----------------------------------------------------
        patient_id: dict[tuple[str, str], int] = {}
        touched: set[int] = set()
        new_rows = []
        for key, values in patient_values.items():
            row = matched.get(key)
            if row is None:
                new_rows.append((key, values))
                continue
            pid = row[0]
            patient_id[key] = pid
            current = dict(zip(_PATIENT_UPDATABLE, row[5:], strict=True))
            changes = {
                c: values[c]
                for c in _PATIENT_UPDATABLE
                if values.get(c) is not None and _norm(current[c]) != _norm(values[c])
            }
            if row[2] is None:
                changes.update(source_system=key[0], source_id=key[1])
            if changes:
                sets = ", ".join(f"{c} = ?" for c in changes)
                bulk.execute(
                    conn,
                    f"UPDATE patient SET {sets}, version = version + 1, updated_at = ? WHERE id = ?",
                    (*changes.values(), now, pid),
                )
                result.counts["patient_updated"] = result.counts.get("patient_updated", 0) + 1
                touched.add(pid)
            else:
                result.skipped["patient"] = result.skipped.get("patient", 0) + 1
        if new_rows:
            columns = [
                *_PATIENT_INSERT,
                "registered_on",
                "source_system",
                "source_id",
                "created_at",
                "updated_at",
                "version",
            ]
            bulk.executemany(
                conn,
                bulk.insert_sql("patient", columns),
                [
                    (
                        *(values[c] if c != "status" else values[c] or "active" for c in _PATIENT_INSERT),
                        values.get("registered_on") or today.isoformat(),
                        key[0],
                        key[1],
                        now,
                        now,
                        1,
                    )
                    for key, values in new_rows
                ],
            )
            keys = [k for k, _ in new_rows]
            for chunk in _chunks(keys):
                marks = ", ".join("?" for _ in chunk)
                rows = bulk.fetchall(
                    conn,
                    f"SELECT id, source_system, source_id FROM patient WHERE source_id IN ({marks})",
                    [k[1] for k in chunk],
                )
                wanted = set(chunk)
                for pid, system, sid in rows:
                    if (system, sid) in wanted:
                        patient_id[(system, sid)] = pid
                        touched.add(pid)
            result.counts["patient"] = len(new_rows)
        for mrn in mrn_refs:
            if mrn in by_mrn:
                patient_id[("mrn", mrn)] = by_mrn[mrn][0]
        if progress:
            progress(len(patient_values), total, "write")

        # -- write facts --------------------------------------------------------
        by_table: dict[str, list[tuple[r.Record, dict[str, Any], int]]] = defaultdict(list)
        for rec, values, key, mrn in planned:
            pid = patient_id.get(key) if key is not None else patient_id.get(("mrn", mrn))
            if pid is None:  # its patient was left out
                continue
            by_table[r.kind_of(rec)].append((rec, values, pid))
        done = len(patient_values)
        for table, rows in by_table.items():
            if table == "spinal_lesion":
                written = _write_lesions(conn, rows, actor=actor, now=now, result=result)
            elif table == "board_case":
                written = _write_board_cases(conn, rows, now=now, result=result)
            else:
                written = _write_facts(conn, table, rows, now=now, result=result)
            touched.update(written)
            done += len(rows)
            if progress:
                progress(done, total, "write")

        # -- state, queue, batch row, audit --------------------------------------
        ids = sorted(touched)
        refresh_patient_state(session, ids)  # one refresh for every touched patient (it reads in chunks)
        bulk.executemany(
            conn, "INSERT INTO recompute_queue (patient_id, queued_at) VALUES (?, ?)", [(pid, now) for pid in ids]
        )
        result.patient_ids = sorted(set(patient_id.values()))
        if not ids and result.status == "imported":
            result.status = "unchanged"
        result.batch_id = _record_batch(
            conn,
            sha=file_sha256,
            name=file_name,
            fmt=file_format,
            actor=actor,
            now=now,
            status=result.status,
            entries=entries,
            counts=result.counts,
            issues=len(result.issues),
        )
        audit.record(
            session,
            actor=actor,
            action="import.file",
            target=f"import_batch:{result.batch_id}",
            detail={
                "file_name": file_name,
                "file_sha256": file_sha256,
                "status": result.status,
                "counts": result.counts,
                "patients": len(result.patient_ids),
                "patient_ids": result.patient_ids[:100],
                "errors": len(result.errors),
            },
            now=now,
        )
    if ids and rescore_after:
        if progress:
            progress(total, total, "rescore")
        svc.rescore(engine, ids, now)
    return result


def _patient_ids(conn: Connection, source_ids: Sequence[str], mrns: Sequence[str]) -> set[int]:
    """Ids of the stored patients a file names (by source id or MRN); PostgreSQL only (for the lock)."""
    if conn.dialect.name == "sqlite":
        return set()
    ids: set[int] = set()
    for column, values in (("source_id", source_ids), ("mrn", mrns)):
        for chunk in _chunks(list(values)):
            marks = ", ".join("?" for _ in chunk)
            query = f"SELECT id FROM patient WHERE {column} IN ({marks})"
            ids.update(pid for (pid,) in bulk.fetchall(conn, query, chunk))
    return ids


def _lock_patients(conn: Connection, ids: Iterable[int]) -> set[int]:
    """Hold these patients' rows for the transaction (PostgreSQL ``SELECT … FOR UPDATE``), in id order.

    The same lock every fact write of ``surveillance.service`` takes (``_load_patient(lock=True)``):
    under READ COMMITTED two writers for one patient would otherwise each rebuild
    ``patient_state`` without the other's uncommitted facts (a lost update) or both insert its
    row (a unique violation).  Ascending id order, chunk after chunk, so two imports sharing
    patients queue instead of deadlocking.  SQLite needs no lock: ``BEGIN IMMEDIATE`` already
    serialises every write.
    """
    ordered = sorted(ids)
    if conn.dialect.name == "sqlite" or not ordered:
        return set()
    for chunk in _chunks(ordered, 1000):
        bulk.fetchall(conn, f"SELECT id FROM patient WHERE id IN {bulk.in_list(chunk)} ORDER BY id FOR UPDATE")
    return set(ordered)


def _norm(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()[:10]
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return value


_PATIENT_INSERT = (
    "mrn",
    "family_name",
    "given_name",
    "birth_date",
    "sex",
    "department",
    "primary_site",
    "primary_histology",
    "hormone_dependent",
    "molecular_targeted_therapy",
    "previous_chemotherapy",
    "status",
    "status_on",
    "deceased_on",
    "fit_for_surgery",
    "zoledronic_regimen",
    "bma_not_indicated_reason",
    "denosumab_transition_plan",
    "assigned_nurse_id",
)
_PATIENT_UPDATABLE = tuple(c for c in _PATIENT_INSERT if c != "mrn")


def _existing_sources(conn: Connection, table: str, pids: Sequence[int]) -> set[tuple[int, str, str]]:
    found: set[tuple[int, str, str]] = set()
    unique = sorted(set(pids))
    for chunk in _chunks(unique):
        found.update(
            bulk.fetchall(
                conn,
                f"SELECT patient_id, source_system, source_id FROM {table} "
                f"WHERE source_id IS NOT NULL AND patient_id IN {bulk.in_list(chunk)}",
            )
        )
    return found


def _write_facts(
    conn: Connection,
    table: str,
    rows: list[tuple[r.Record, dict[str, Any], int]],
    *,
    now: datetime,
    result: ImportResult,
) -> set[int]:
    present = _existing_sources(conn, table, [pid for _, _, pid in rows])
    columns: list[str] | None = None
    out = []
    written: set[int] = set()
    for rec, values, pid in rows:
        key = (pid, rec.source_system, rec.source_id)
        if key in present:
            result.skipped[table] = result.skipped.get(table, 0) + 1
            continue
        present.add(key)
        if columns is None:
            columns = ["patient_id", *values, "source_system", "source_id", "created_at"]
        out.append((pid, *values.values(), rec.source_system, rec.source_id, now))
        written.add(pid)
    if columns is not None and out:
        bulk.executemany(conn, bulk.insert_sql(table, columns), out)
        result.counts[table] = result.counts.get(table, 0) + len(out)
    return written


_COMPONENTS = ("pain", "lesion_type", "alignment", "collapse", "posterolateral", "bilsky_escc")


def _write_lesions(
    conn: Connection,
    rows: list[tuple[r.Record, dict[str, Any], int]],
    *,
    actor: str,
    now: datetime,
    result: ImportResult,
) -> set[int]:
    pids = sorted({pid for _, _, pid in rows})
    present = _existing_sources(conn, "spinal_lesion", pids)
    active: dict[tuple[int, str], tuple[int, str | None]] = {}
    assessed: set[tuple[int, str]] = set()
    for chunk in _chunks(pids):
        for lid, pid, level, assessed_on, is_active in bulk.fetchall(
            conn,
            f"SELECT id, patient_id, level, assessed_on, active FROM spinal_lesion "
            f"WHERE patient_id IN {bulk.in_list(chunk)} ORDER BY id",
        ):
            key = (pid, level if is_active else level + _INACTIVE)
            active.setdefault(key, (lid, None if assessed_on is None else str(assessed_on)[:10]))
        for lid, day in bulk.fetchall(
            conn,
            f"SELECT lesion_id, assessed_on FROM lesion_assessment WHERE patient_id IN {bulk.in_list(chunk)}",
        ):
            assessed.add((lid, str(day)[:10]))

    written: set[int] = set()
    new: dict[tuple[int, str], tuple[r.Record, dict[str, Any]]] = {}
    later: list[tuple[tuple[int, str], dict[str, Any]]] = []  # assessments of lesions created here
    assessments: list[tuple[int, int, dict[str, Any]]] = []  # (lesion_id, patient_id, values)
    ordered = sorted(rows, key=lambda row: (row[1]["first_seen_on"], row[1]["assessed_on"] or ""))
    for rec, values, pid in ordered:
        if (pid, rec.source_system, rec.source_id) in present:
            result.skipped["spinal_lesion"] = result.skipped.get("spinal_lesion", 0) + 1
            continue
        has = any(values[c] is not None for c in _COMPONENTS)
        level_key = (pid, values["level"] if values["active"] else values["level"] + _INACTIVE)
        if level_key in active:
            lid, _ = active[level_key]
            result.skipped["spinal_lesion"] = result.skipped.get("spinal_lesion", 0) + 1
            if has and (lid, values["assessed_on"]) not in assessed:
                assessed.add((lid, values["assessed_on"]))
                assessments.append((lid, pid, values))
            continue
        if level_key in new:
            if has:
                later.append((level_key, values))
            continue
        new[level_key] = (rec, values)
    if new:
        columns = [
            "patient_id",
            "level",
            "level_span_end",
            "first_seen_on",
            "active",
            *_COMPONENTS,
            "assessed_on",
            "wbb_zones",
            "wbb_layers",
            "wbb_numbering",
            "version",
            "source_system",
            "source_id",
        ]
        bulk.executemany(
            conn,
            bulk.insert_sql("spinal_lesion", columns),
            [
                (
                    pid,
                    v["level"],
                    v["level_span_end"],
                    v["first_seen_on"],
                    v["active"],
                    *(v[c] for c in _COMPONENTS),
                    v["assessed_on"] if any(v[c] is not None for c in _COMPONENTS) else None,
                    v["wbb_zones"],
                    v["wbb_layers"],
                    v["wbb_numbering"],
                    1,
                    rec.source_system,
                    rec.source_id,
                )
                for (pid, _lv), (rec, v) in new.items()
            ],
        )
        result.counts["spinal_lesion"] = len(new)
        ids: dict[tuple[int, str], int] = {}
        for chunk in _chunks(sorted({pid for pid, _ in new})):
            for lid, pid, level, is_active in bulk.fetchall(
                conn,
                f"SELECT id, patient_id, level, active FROM spinal_lesion WHERE patient_id IN {bulk.in_list(chunk)} "
                "AND source_id IS NOT NULL ORDER BY id",
            ):
                key = (pid, level if is_active else level + _INACTIVE)
                if key in new:
                    ids[key] = lid
        for (pid, level), (_rec, v) in new.items():
            written.add(pid)
            if any(v[c] is not None for c in _COMPONENTS):
                assessments.append((ids[(pid, level)], pid, v))
        for level_key, v in later:
            assessments.append((ids[level_key], level_key[0], v))
    if assessments:
        studies = _imaging_ids(conn, assessments)
        bulk.executemany(
            conn,
            bulk.insert_sql(
                "lesion_assessment",
                ["lesion_id", "patient_id", "assessed_on", *_COMPONENTS, "recorded_by", "created_at",
                 "imaging_study_id"],  # fmt: skip
            ),
            [
                (lid, pid, v["assessed_on"], *(v[c] for c in _COMPONENTS), actor, now,
                 studies.get((pid, v["imaging_source"])))  # fmt: skip
                for lid, pid, v in assessments
            ],
        )
        result.counts["lesion_assessment"] = len(assessments)
        # the lesion row carries its latest assessment
        latest: dict[int, dict[str, Any]] = {}
        for lid, _pid, v in assessments:
            if lid not in latest or v["assessed_on"] >= latest[lid]["assessed_on"]:
                latest[lid] = v
        bulk.executemany(
            conn,
            "UPDATE spinal_lesion SET "
            + ", ".join(f"{c} = ?" for c in _COMPONENTS)
            + ", assessed_on = ?, version = version + 1 WHERE id = ? AND (assessed_on IS NULL OR assessed_on <= ?)",
            [(*(v[c] for c in _COMPONENTS), v["assessed_on"], lid, v["assessed_on"]) for lid, v in latest.items()],
        )
        written.update(pid for _, pid, _ in assessments)
    return written


#: Suffix of the level key of an inactive lesion: it is never the lesion an import's record at that level joins.
_INACTIVE = "#inactive"


def _resolve_nurses(conn: Connection, patients: dict, patient_values: dict, result: ImportResult) -> None:
    """A patient's assigned nurse comes by user name (user ids differ between databases): the id of that
    nurse's account, else a warning and no nurse (``surveillance.service`` assigns nurses only)."""
    wanted = {k: p.assigned_nurse for k, p in patients.items() if p.assigned_nurse and k in patient_values}
    if not wanted:
        return
    found: dict[str, int] = {}
    names = sorted(set(wanted.values()))
    for chunk in _chunks(names):
        for uid, username in bulk.fetchall(
            conn,
            f"SELECT id, username FROM app_user WHERE role = 'nurse' AND username IN ({', '.join('?' for _ in chunk)})",
            list(chunk),
        ):
            found[username] = uid
    for key, name in wanted.items():
        if name in found:
            patient_values[key]["assigned_nurse_id"] = found[name]
        else:
            result.issues.append(
                ImportIssue.at(patients[key].origin, f"assigned nurse {name!r}: no such nurse here; not assigned",
                               "warning")  # fmt: skip
            )


def _imaging_ids(conn: Connection, assessments: list[tuple[int, int, dict[str, Any]]]) -> dict[tuple[int, str], int]:
    """(patient, source id) -> imaging_study id of the studies assessments name (``imaging_source``)."""
    wanted = {(pid, v["imaging_source"]) for _, pid, v in assessments if v.get("imaging_source")}
    found: dict[tuple[int, str], int] = {}
    for chunk in _chunks(sorted({pid for pid, _ in wanted})):
        for sid, pid, source in bulk.fetchall(
            conn,
            f"SELECT id, patient_id, source_id FROM imaging_study WHERE source_id IS NOT NULL "
            f"AND patient_id IN {bulk.in_list(chunk)}",
        ):
            if (pid, source) in wanted:
                found[(pid, source)] = sid
    return found


def _write_board_cases(
    conn: Connection, rows: list[tuple[r.Record, dict[str, Any], int]], *, now: datetime, result: ImportResult
) -> set[int]:
    """Board cases: ``board_case`` has no source columns, so one already there on the same day for the same
    reason is this case (a re-import adds nothing)."""
    present: set[tuple[int, str, str]] = set()
    for chunk in _chunks(sorted({pid for _, _, pid in rows})):
        for pid, day, reason in bulk.fetchall(
            conn, f"SELECT patient_id, queued_on, reason FROM board_case WHERE patient_id IN {bulk.in_list(chunk)}"
        ):
            present.add((pid, str(day)[:10], reason))
    out = []
    for _rec, v, pid in rows:
        key = (pid, v["queued_on"], v["reason"])
        if key in present:
            result.skipped["board_case"] = result.skipped.get("board_case", 0) + 1
            continue
        present.add(key)
        out.append((pid, v["queued_on"], v["reason"], v["decided_on"], v["decision"], v["decided_by"], now, 1))
    if out:
        columns = ["patient_id", "queued_on", "reason", "decided_on", "decision", "decided_by", "created_at", "version"]
        bulk.executemany(conn, bulk.insert_sql("board_case", columns), out)
        result.counts["board_case"] = result.counts.get("board_case", 0) + len(out)
    return {pid for pid, *_ in out}


__all__ = ["write_records"]
