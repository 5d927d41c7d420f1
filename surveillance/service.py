"""Clinical writes: facts, patients, the alert lifecycle and board decisions.

Every write with clinical meaning goes through here (pages, the CLI and the
importers), and each one, in a single transaction:

1. checks the identity's role and patient scope (``surveillance.access``;
   refusals are audited in their own transaction, since the refused
   transaction is rolled back);
2. validates every field — ranges, units, vocabularies, dates neither in the
   future nor before birth — raising :class:`ValidationError` that names the
   field and what is allowed;
3. writes the fact, refreshes ``patient_state`` and queues the patient;
4. appends the audit event.

After the commit the patient is re-scored at once, so the page that saved the
form shows the new scores and alerts.  Edits of existing rows carry a
``version``; a stale version raises :class:`ConflictError` instead of silently
overwriting someone else's change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from db import models as m
from db.engine import write_session
from surveillance import audit
from surveillance.access import ALL_DEPARTMENTS, Action, Identity, PermissionDenied, Role, in_scope, require
from surveillance.break_glass import active_grant
from surveillance.calendar import clinical_day
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

PATIENT_STATUSES = ("active", "deceased", "transferred", "on_hold")
IMAGING_MODALITIES = ("mri", "ct", "pet_ct", "bone_scan", "xray")
IMAGING_REGIONS = ("whole_spine", "cervical", "thoracic", "lumbar", "sacral", "other")
BMA_AGENTS = ("denosumab", "zoledronic_acid", "pamidronate")
ZOLEDRONIC_REGIMENS = ("q4w", "q12w")
TREATMENTS = {
    "radiotherapy": ("cebrt", "sbrt", "srs"),
    "surgery": ("tes", "en_bloc", "separation", "decompression_fixation", "mist", "bkp", "pvp", "other_spine_surgery"),
    "systemic": ("chemotherapy", "targeted", "hormone", "immunotherapy"),
}
#: Plausible single doses (mg) of each agent: outside is refused as a likely entry error.
BMA_DOSE_LIMITS_MG = {"denosumab": (60.0, 120.0), "zoledronic_acid": (3.0, 4.0), "pamidronate": (30.0, 90.0)}
OSTEOPOROSIS_DENOSUMAB_MG = 60.0
MAX_SNOOZE_DAYS = 90


class ServiceError(Exception):
    """A write that was refused; ``str(err)`` is safe to show to the user."""


class ValidationError(ServiceError, ValueError):
    def __init__(self, field_name: str, problem: str):
        self.field = field_name
        self.problem = problem
        super().__init__(f"{field_name}: {problem}")


class ConflictError(ServiceError):
    """The row changed since it was read: reload and try again."""


class NotFound(ServiceError, LookupError):
    pass


@dataclass
class WriteResult:
    id: int | None
    patient_id: int
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------


def _choice(name: str, value: Any, allowed: tuple[str, ...] | list[str], *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise ValidationError(name, "is required; allowed: " + ", ".join(allowed))
        return None
    if value not in allowed:
        raise ValidationError(name, f"{value!r} is not allowed; allowed: " + ", ".join(allowed))
    return str(value)


def _enum(name: str, value: Any, enum, *, required: bool = False) -> str | None:
    return _choice(name, value, [e.value for e in enum], required=required)


def _day(name: str, value: Any, *, today: date, birth: date | None = None, required: bool = True) -> date | None:
    if value is None or value == "":
        if required:
            raise ValidationError(name, "is required (a date)")
        return None
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            raise ValidationError(name, f"{value!r} is not a date (YYYY-MM-DD)") from None
    if not isinstance(value, date):
        raise ValidationError(name, "must be a date")
    if value > today:
        raise ValidationError(name, f"{value.isoformat()} is in the future")
    if birth is not None and value < birth:
        raise ValidationError(name, f"{value.isoformat()} is before the patient's birth ({birth.isoformat()})")
    return value


def _number(
    name: str, value: Any, low: float, high: float, unit: str, *, required: bool = False, integer: bool = False
) -> float | int | None:
    if value is None or value == "":
        if required:
            raise ValidationError(name, f"is required ({low:g}–{high:g} {unit})")
        return None
    if isinstance(value, bool):
        raise ValidationError(name, "must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError(name, f"{value!r} is not a number") from None
    if number != number or not low <= number <= high:
        raise ValidationError(name, f"{value} is outside {low:g}–{high:g} {unit}")
    if integer:
        if number != int(number):
            raise ValidationError(name, f"{value} must be a whole number")
        return int(number)
    return number


def _text(name: str, value: Any, *, max_length: int, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError(name, "is required")
        return None
    value = str(value).strip()
    if len(value) > max_length:
        raise ValidationError(name, f"is longer than {max_length} characters")
    return value


def _bool(name: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ValidationError(name, "must be yes, no or unknown")


# ---------------------------------------------------------------------------
# The write envelope
# ---------------------------------------------------------------------------


def _deny(engine: Engine, identity: Identity, action: str, patient_id: int | None, reason: str, now: datetime) -> None:
    with write_session(engine) as session:
        audit.record(
            session,
            actor=identity.actor,
            action=action,
            patient_id=patient_id,
            outcome="denied",
            detail={"reason": reason},
            now=now,
        )


def _load_patient(session: Session, patient_id: int, *, lock: bool = False) -> m.Patient:
    """The patient row; ``lock`` holds it for the transaction (PostgreSQL ``FOR UPDATE``).

    Every fact write locks its patient first, so two writes for one patient run one
    after the other: otherwise, under READ COMMITTED, each would rebuild
    ``patient_state`` without the other's uncommitted fact and the later commit
    would drop the earlier fact from the state the recompute reads (a lost update).
    SQLite needs no lock: ``BEGIN IMMEDIATE`` already serialises every write.
    """
    patient = session.get(m.Patient, patient_id, with_for_update=lock or None)
    if patient is None:
        raise NotFound(f"patient {patient_id} does not exist")
    return patient


def _check_scope(engine: Engine, identity: Identity, patient: m.Patient, action: str, now: datetime) -> int | None:
    """Refuse (audited) a patient outside the scope; the id of the break-glass grant that opens it, if any."""
    if in_scope(identity, assigned_nurse_id=patient.assigned_nurse_id, department=patient.department):
        return None
    with engine.connect() as conn:
        grant_id = active_grant(conn, identity, patient.id, now)
    if grant_id is not None:
        return int(grant_id)
    _deny(engine, identity, action, patient.id, "patient outside the user's scope", now)
    raise PermissionDenied("this patient is not in your caseload")


def rescore(engine: Engine, patient_ids: list[int], now: datetime) -> None:
    """Re-score patients at once after a write (an incremental run restricted to them)."""
    from surveillance.pipeline import recompute

    recompute(engine, full=False, now=now, trigger="service", only=patient_ids, refresh_trends=False)


def _fact_write(
    engine: Engine,
    identity: Identity,
    patient_id: int,
    action: str,
    now: datetime,
    build: Callable[[Session, m.Patient], tuple[int | None, dict, list[str]]],
    *,
    rescore_after: bool = True,
) -> WriteResult:
    try:
        require(identity, Action.RECORD_FACT)
    except PermissionDenied as err:
        _deny(engine, identity, action, patient_id, str(err), now)
        raise
    with write_session(engine) as session:
        patient = _load_patient(session, patient_id)
    grant_id = _check_scope(engine, identity, patient, action, now)
    with write_session(engine) as session:
        patient = _load_patient(session, patient_id, lock=True)
        row_id, detail, warnings = build(session, patient)
        if grant_id is not None:
            detail = {**detail, "break_glass": grant_id}
        session.flush()
        refresh_patient_state(session, [patient_id])
        session.add(m.RecomputeQueue(patient_id=patient_id, queued_at=now))
        audit.record(
            session,
            actor=identity.actor,
            action=action,
            patient_id=patient_id,
            target=f"{action.split('.')[-1]}:{row_id}",
            detail=detail,
            now=now,
        )
    if rescore_after:
        rescore(engine, [patient_id], now)
    return WriteResult(row_id, patient_id, warnings)


def _today(now: datetime) -> date:
    return clinical_day(now)


# ---------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------


def record_performance_status(
    engine: Engine,
    identity: Identity,
    patient_id: int,
    *,
    recorded_on: Any,
    ecog: Any = None,
    kps: Any = None,
    now: datetime,
) -> WriteResult:
    def build(session: Session, patient: m.Patient):
        day = _day("recorded_on", recorded_on, today=_today(now), birth=patient.birth_date)
        e = _number("ecog", ecog, 0, 4, "(ECOG grade; 5 = dead is recorded as a status)", integer=True)
        k = _number("kps", kps, 10, 100, "% (multiples of 10)", integer=True)
        if e is None and k is None:
            raise ValidationError("ecog", "give an ECOG grade, a Karnofsky score, or both")
        if k is not None and k % 10:
            raise ValidationError("kps", f"{k} is not a multiple of 10")
        warnings = []
        if e is not None and k is not None:
            from surveillance.scoring.performance_status import kps_to_ecog

            if abs(kps_to_ecog(k) - e) >= 2:
                warnings.append(f"ECOG {e} and KPS {k} disagree (KPS {k} is about ECOG {kps_to_ecog(k)}): please check")
        row = m.PerformanceStatus(patient_id=patient.id, recorded_on=day, ecog=e, kps=k)
        session.add(row)
        session.flush()
        return row.id, {"ecog": e, "kps": k, "recorded_on": day}, warnings

    return _fact_write(engine, identity, patient_id, "record.performance_status", now, build)


def record_neuro_status(
    engine: Engine,
    identity: Identity,
    patient_id: int,
    *,
    recorded_on: Any,
    frankel_grade: Any = None,
    ambulatory_status: Any = None,
    new_deficit: bool = False,
    pain_suggests_cord_compression: bool = False,
    new_spinal_pain: bool = False,
    now: datetime,
) -> WriteResult:
    def build(session: Session, patient: m.Patient):
        day = _day("recorded_on", recorded_on, today=_today(now), birth=patient.birth_date)
        row = m.NeuroStatus(
            patient_id=patient.id,
            recorded_on=day,
            frankel_grade=_enum("frankel_grade", frankel_grade, Frankel),
            ambulatory_status=_enum("ambulatory_status", ambulatory_status, Ambulation),
            new_deficit=bool(_bool("new_deficit", new_deficit)),
            pain_suggests_cord_compression=bool(
                _bool("pain_suggests_cord_compression", pain_suggests_cord_compression)
            ),
            new_spinal_pain=bool(_bool("new_spinal_pain", new_spinal_pain)),
        )
        if not any(
            [
                row.frankel_grade,
                row.ambulatory_status,
                row.new_deficit,
                row.pain_suggests_cord_compression,
                row.new_spinal_pain,
            ]
        ):
            raise ValidationError("frankel_grade", "record at least one finding")
        session.add(row)
        session.flush()
        return (
            row.id,
            {
                k: getattr(row, k)
                for k in (
                    "recorded_on",
                    "frankel_grade",
                    "ambulatory_status",
                    "new_deficit",
                    "pain_suggests_cord_compression",
                    "new_spinal_pain",
                )
            },
            [],
        )

    return _fact_write(engine, identity, patient_id, "record.neuro_status", now, build)


@dataclass
class LesionFinding:
    """One lesion seen on an imaging study: an existing lesion (``lesion_id``) or a new one (``level``)."""

    lesion_id: int | None = None
    level: str | None = None
    level_span_end: str | None = None
    pain: str | None = None
    lesion_type: str | None = None
    alignment: str | None = None
    collapse: str | None = None
    posterolateral: str | None = None
    bilsky_escc: str | None = None


def _validate_finding(index: int, finding: LesionFinding) -> dict[str, Any]:
    prefix = f"lesions[{index}]."
    values = {
        "pain": _enum(prefix + "pain", finding.pain, Pain),
        "lesion_type": _enum(prefix + "lesion_type", finding.lesion_type, LesionType),
        "alignment": _enum(prefix + "alignment", finding.alignment, Alignment),
        "collapse": _enum(prefix + "collapse", finding.collapse, Collapse),
        "posterolateral": _enum(prefix + "posterolateral", finding.posterolateral, Posterolateral),
        "bilsky_escc": _enum(prefix + "bilsky_escc", finding.bilsky_escc, BilskyGrade),
    }
    if finding.lesion_id is None:
        level = _enum(prefix + "level", finding.level, Level, required=True)
        end = _enum(prefix + "level_span_end", finding.level_span_end, Level)
        if end is not None and LEVEL_ORDER[Level(end)] < LEVEL_ORDER[Level(level)]:
            raise ValidationError(prefix + "level_span_end", f"{end} is above {level}: give the span cranio-caudally")
        if end is not None and LEVEL_ORDER[Level(end)] - LEVEL_ORDER[Level(level)] > 5:
            raise ValidationError(prefix + "level_span_end", "spans more than 6 levels: record separate lesions")
        values["level"] = level
        values["level_span_end"] = None if end == level else end
    return values


def record_imaging(
    engine: Engine,
    identity: Identity,
    patient_id: int,
    *,
    performed_on: Any,
    modality: Any,
    region: Any,
    findings: str | None = None,
    lesions: list[LesionFinding] | None = None,
    now: datetime,
) -> WriteResult:
    """An imaging study, with the SINS components and ESCC grade of each lesion it shows."""

    def build(session: Session, patient: m.Patient):
        day = _day("performed_on", performed_on, today=_today(now), birth=patient.birth_date)
        study = m.ImagingStudy(
            patient_id=patient.id,
            performed_on=day,
            modality=_choice("modality", modality, IMAGING_MODALITIES, required=True),
            region=_choice("region", region, IMAGING_REGIONS, required=True),
            findings=_text("findings", findings, max_length=4000),
        )
        session.add(study)
        session.flush()
        assessed = []
        for index, finding in enumerate(lesions or []):
            values = _validate_finding(index, finding)
            if finding.lesion_id is not None:
                lesion = session.get(m.SpinalLesion, finding.lesion_id)
                if lesion is None or lesion.patient_id != patient.id:
                    raise ValidationError(f"lesions[{index}].lesion_id", "is not a lesion of this patient")
            else:
                lesion = m.SpinalLesion(
                    patient_id=patient.id,
                    level=values["level"],
                    level_span_end=values["level_span_end"],
                    first_seen_on=day,
                )
                session.add(lesion)
                session.flush()
            components = {
                k: values[k] for k in ("pain", "lesion_type", "alignment", "collapse", "posterolateral", "bilsky_escc")
            }
            session.add(
                m.LesionAssessment(
                    lesion_id=lesion.id,
                    patient_id=patient.id,
                    assessed_on=day,
                    imaging_study_id=study.id,
                    recorded_by=identity.actor,
                    **components,
                )
            )
            if lesion.assessed_on is None or day >= lesion.assessed_on:
                for key, value in components.items():
                    setattr(lesion, key, value)
                lesion.assessed_on = day
                lesion.version += 1
            assessed.append({"lesion_id": lesion.id, "level": lesion.level, **components})
        return (
            study.id,
            {"performed_on": day, "modality": study.modality, "region": study.region, "lesions": assessed},
            [],
        )

    return _fact_write(engine, identity, patient_id, "record.imaging", now, build)


def record_bma_dose(
    engine: Engine, identity: Identity, patient_id: int, *, given_on: Any, agent: Any, dose_mg: Any, now: datetime
) -> WriteResult:
    def build(session: Session, patient: m.Patient):
        day = _day("given_on", given_on, today=_today(now), birth=patient.birth_date)
        a = _choice("agent", agent, BMA_AGENTS, required=True)
        low, high = BMA_DOSE_LIMITS_MG[a]
        dose = _number("dose_mg", dose_mg, low, high, f"mg for {a}", required=True)
        warnings = []
        prevention = not (a == "denosumab" and dose <= OSTEOPOROSIS_DENOSUMAB_MG)
        if not prevention:
            warnings.append("denosumab 60 mg is the osteoporosis dose, not an SRE-prevention regimen (120 mg q4w)")
        row = m.BmaAdministration(patient_id=patient.id, given_on=day, agent=a, dose_mg=dose, sre_prevention=prevention)
        session.add(row)
        session.flush()
        return row.id, {"given_on": day, "agent": a, "dose_mg": dose, "sre_prevention": prevention}, warnings

    return _fact_write(engine, identity, patient_id, "record.bma_dose", now, build)


def record_lab(
    engine: Engine,
    identity: Identity,
    patient_id: int,
    *,
    collected_on: Any,
    test: Any,
    value: Any,
    unit: Any = None,
    now: datetime,
) -> WriteResult:
    def build(session: Session, patient: m.Patient):
        day = _day("collected_on", collected_on, today=_today(now), birth=patient.birth_date)
        t = LabTest(_enum("test", test, LabTest, required=True))
        definition = LABS[t]
        u = unit or definition.unit
        raw = _number("value", value, 0, 1e9, u, required=True)
        try:
            canonical = to_canonical(t, raw, u)
        except ValueError as err:
            raise ValidationError("unit", str(err)) from None
        low, high = definition.plausible
        if not low <= canonical <= high:
            raise ValidationError(
                "value",
                f"{raw:g} {u} is implausible for {definition.label} "
                f"({low:g}–{high:g} {definition.unit}); check the unit",
            )
        row = m.LabResult(
            patient_id=patient.id,
            collected_on=day,
            test=t.value,
            loinc=definition.loinc[0],
            value=canonical,
            unit=definition.unit,
        )
        session.add(row)
        session.flush()
        return row.id, {"collected_on": day, "test": t.value, "value": canonical, "unit": definition.unit}, []

    return _fact_write(engine, identity, patient_id, "record.lab", now, build)


def record_sre(
    engine: Engine,
    identity: Identity,
    patient_id: int,
    *,
    occurred_on: Any,
    event_type: Any,
    level: Any = None,
    emergency: bool = False,
    now: datetime,
) -> WriteResult:
    def build(session: Session, patient: m.Patient):
        row = m.SkeletalEvent(
            patient_id=patient.id,
            occurred_on=_day("occurred_on", occurred_on, today=_today(now), birth=patient.birth_date),
            event_type=_enum("event_type", event_type, SreType, required=True),
            level=_enum("level", level, Level),
            emergency=bool(_bool("emergency", emergency)),
        )
        session.add(row)
        session.flush()
        return (
            row.id,
            {
                "occurred_on": row.occurred_on,
                "event_type": row.event_type,
                "level": row.level,
                "emergency": row.emergency,
            },
            [],
        )

    return _fact_write(engine, identity, patient_id, "record.sre", now, build)


def record_treatment(
    engine: Engine,
    identity: Identity,
    patient_id: int,
    *,
    kind: Any,
    modality: Any,
    started_on: Any,
    ended_on: Any = None,
    level: Any = None,
    dose_gy: Any = None,
    fractions: Any = None,
    separation_margin_mm: Any = None,
    emergency: bool = False,
    now: datetime,
) -> WriteResult:
    def build(session: Session, patient: m.Patient):
        k = _choice("kind", kind, tuple(TREATMENTS), required=True)
        mod = _choice("modality", modality, TREATMENTS[k], required=True)
        start = _day("started_on", started_on, today=_today(now), birth=patient.birth_date)
        end = _day("ended_on", ended_on, today=_today(now), birth=patient.birth_date, required=False)
        if end is not None and end < start:
            raise ValidationError("ended_on", "is before the start")
        lv = _enum("level", level, Level)
        if k != "systemic" and lv is None:
            raise ValidationError("level", "is required for spinal radiotherapy or surgery")
        margin = _number("separation_margin_mm", separation_margin_mm, 0, 50, "mm")
        if margin is not None and mod != "separation":
            raise ValidationError("separation_margin_mm", "applies to separation surgery only")
        row = m.Treatment(
            patient_id=patient.id,
            kind=k,
            modality=mod,
            started_on=start,
            ended_on=end,
            level=lv,
            to_bone=k != "systemic",
            dose_gy=_number("dose_gy", dose_gy, 0.5, 80, "Gy") if k == "radiotherapy" else None,
            fractions=_number("fractions", fractions, 1, 40, "fractions", integer=True)
            if k == "radiotherapy"
            else None,
            separation_margin_mm=margin,
            emergency=bool(_bool("emergency", emergency)),
        )
        session.add(row)
        session.flush()
        return row.id, {"kind": k, "modality": mod, "started_on": start, "level": lv}, []

    return _fact_write(engine, identity, patient_id, "record.treatment", now, build)


def record_locomo_condition(
    engine: Engine,
    identity: Identity,
    patient_id: int,
    *,
    condition: Any,
    onset_on: Any,
    management_plan: Any = None,
    orthopaedic_review_on: Any = None,
    now: datetime,
) -> WriteResult:
    def build(session: Session, patient: m.Patient):
        row = m.LocomoConditionRecord(
            patient_id=patient.id,
            condition=_enum("condition", condition, LocomoCondition, required=True),
            onset_on=_day("onset_on", onset_on, today=_today(now), birth=patient.birth_date),
            management_plan=_text("management_plan", management_plan, max_length=256),
            orthopaedic_review_on=_day(
                "orthopaedic_review_on",
                orthopaedic_review_on,
                today=_today(now),
                birth=patient.birth_date,
                required=False,
            ),
        )
        session.add(row)
        session.flush()
        return row.id, {"condition": row.condition, "onset_on": row.onset_on}, []

    return _fact_write(engine, identity, patient_id, "record.locomo_condition", now, build)


def record_dental_exam(
    engine: Engine,
    identity: Identity,
    patient_id: int,
    *,
    examined_on: Any,
    onj_suspected: bool = False,
    findings: Any = None,
    now: datetime,
) -> WriteResult:
    def build(session: Session, patient: m.Patient):
        row = m.DentalExam(
            patient_id=patient.id,
            examined_on=_day("examined_on", examined_on, today=_today(now), birth=patient.birth_date),
            onj_suspected=bool(_bool("onj_suspected", onj_suspected)),
            findings=_text("findings", findings, max_length=2000),
        )
        session.add(row)
        session.flush()
        return row.id, {"examined_on": row.examined_on, "onj_suspected": row.onj_suspected}, []

    return _fact_write(engine, identity, patient_id, "record.dental_exam", now, build)


def record_metastatic_status(
    engine: Engine,
    identity: Identity,
    patient_id: int,
    *,
    recorded_on: Any,
    visceral_status: Any = None,
    visceral_treatable: Any = None,
    visceral_removable: Any = None,
    brain_metastases: Any = None,
    extraspinal_bone_metastases: Any = None,
    vertebral_body_metastases: Any = None,
    extraspinal_pathological_fracture: Any = None,
    now: datetime,
) -> WriteResult:
    def build(session: Session, patient: m.Patient):
        row = m.MetastaticStatus(
            patient_id=patient.id,
            recorded_on=_day("recorded_on", recorded_on, today=_today(now), birth=patient.birth_date),
            visceral_status=_enum("visceral_status", visceral_status, VisceralStatus),
            visceral_treatable=_bool("visceral_treatable", visceral_treatable),
            visceral_removable=_bool("visceral_removable", visceral_removable),
            brain_metastases=_bool("brain_metastases", brain_metastases),
            extraspinal_bone_metastases=_number(
                "extraspinal_bone_metastases", extraspinal_bone_metastases, 0, 500, "foci", integer=True
            ),
            vertebral_body_metastases=_number(
                "vertebral_body_metastases", vertebral_body_metastases, 1, 30, "vertebral bodies", integer=True
            ),
            extraspinal_pathological_fracture=_bool(
                "extraspinal_pathological_fracture", extraspinal_pathological_fracture
            ),
        )
        session.add(row)
        session.flush()
        return row.id, {"recorded_on": row.recorded_on, "visceral_status": row.visceral_status}, []

    return _fact_write(engine, identity, patient_id, "record.metastatic_status", now, build)


# ---------------------------------------------------------------------------
# Patients
# ---------------------------------------------------------------------------

PATIENT_EDITABLE = (
    "primary_site",
    "primary_histology",
    "hormone_dependent",
    "molecular_targeted_therapy",
    "previous_chemotherapy",
    "fit_for_surgery",
    "status",
    "status_on",
    "deceased_on",
    "assigned_nurse_id",
    "zoledronic_regimen",
    "bma_not_indicated_reason",
    "denosumab_transition_plan",
    "department",
)


def _validate_patient_fields(values: dict[str, Any], *, birth: date | None, today: date) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in PATIENT_EDITABLE:
            raise ValidationError(key, "cannot be changed here")
        if key == "primary_site":
            out[key] = _enum(key, value, PrimarySite)
        elif key == "primary_histology":
            text_value = _text(key, value, max_length=256)
            if text_value:
                from surveillance.scoring.histology import UnknownHistology, normalise_histology

                try:
                    normalise_histology(text_value)
                except UnknownHistology as err:
                    raise ValidationError(
                        key, f"could not be mapped; nearest codes: {', '.join(err.suggestions)}"
                    ) from None
            out[key] = text_value
        elif key in ("hormone_dependent", "molecular_targeted_therapy", "previous_chemotherapy", "fit_for_surgery"):
            out[key] = _bool(key, value)
        elif key == "status":
            out[key] = _choice(key, value, PATIENT_STATUSES, required=True)
        elif key in ("status_on", "deceased_on"):
            out[key] = _day(key, value, today=today, birth=birth, required=False)
        elif key == "zoledronic_regimen":
            out[key] = _choice(key, value, ZOLEDRONIC_REGIMENS)
        elif key == "assigned_nurse_id":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | str)
                                      or not str(value).strip().isdigit()):
                raise ValidationError(key, f"{value!r} is not a user id")
            out[key] = None if value is None else int(value)
        else:
            out[key] = _text(key, value, max_length=256)
    if out.get("status") == "deceased" and "deceased_on" in values and out.get("deceased_on") is None:
        raise ValidationError("deceased_on", "is required when the status is deceased")
    return out


def update_patient(
    engine: Engine, identity: Identity, patient_id: int, *, version: int, changes: dict[str, Any], now: datetime
) -> WriteResult:
    """Change patient fields, guarded by ``version`` (optimistic locking)."""

    def build(session: Session, patient: m.Patient):
        values = _validate_patient_fields(changes, birth=patient.birth_date, today=_today(now))
        if "assigned_nurse_id" in values and values["assigned_nurse_id"] is not None:
            nurse = session.get(m.AppUser, values["assigned_nurse_id"])
            if nurse is None or nurse.role != Role.NURSE:
                raise ValidationError("assigned_nurse_id", "is not a nurse")
        assignments = ", ".join(f"{k} = :{k}" for k in values)
        result = session.execute(
            text(
                f"UPDATE patient SET {assignments}, version = version + 1, updated_at = :updated_at "
                "WHERE id = :id AND version = :version"
            ),
            dict(values, id=patient.id, version=version, updated_at=now),
        )
        if result.rowcount != 1:
            raise ConflictError("this patient was changed by someone else since you opened it; reload and try again")
        return patient.id, {"changes": values, "from_version": version}, []

    return _fact_write(engine, identity, patient_id, "patient.update", now, build)


def create_patient(
    engine: Engine,
    identity: Identity,
    *,
    mrn: Any,
    family_name: Any,
    given_name: Any,
    birth_date: Any = None,
    sex: Any = None,
    department: Any = None,
    now: datetime,
    **fields: Any,
) -> WriteResult:
    try:
        require(identity, Action.RECORD_FACT)
    except PermissionDenied as err:
        _deny(engine, identity, "patient.create", None, str(err), now)
        raise
    today = _today(now)
    mrn_value = _text("mrn", mrn, max_length=32, required=True)
    birth = _day("birth_date", birth_date, today=today, required=False)
    values = _validate_patient_fields(fields, birth=birth, today=today)
    with write_session(engine) as session:
        if session.exec(select(m.Patient.id).where(m.Patient.mrn == mrn_value)).first() is not None:
            raise ValidationError("mrn", f"{mrn_value} already exists")
        patient = m.Patient(
            mrn=mrn_value,
            family_name=_text("family_name", family_name, max_length=128, required=True),
            given_name=_text("given_name", given_name, max_length=128, required=True),
            birth_date=birth,
            sex=_text("sex", sex, max_length=16),
            department=_text("department", department, max_length=64)
            or (identity.department if identity.department != ALL_DEPARTMENTS else None),
            registered_on=today,
            assigned_nurse_id=identity.user_id
            if identity.role == Role.NURSE
            else values.pop("assigned_nurse_id", None),
            created_at=now,
            updated_at=now,
            **{k: v for k, v in values.items() if k != "assigned_nurse_id"},
        )
        session.add(patient)
        session.flush()
        refresh_patient_state(session, [patient.id])
        session.add(m.RecomputeQueue(patient_id=patient.id, queued_at=now))
        audit.record(
            session,
            actor=identity.actor,
            action="patient.create",
            patient_id=patient.id,
            target=f"patient:{patient.id}",
            detail={"mrn": mrn_value},
            now=now,
        )
        patient_id = patient.id
    rescore(engine, [patient_id], now)
    return WriteResult(patient_id, patient_id)


# ---------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------

ALERT_TRANSITIONS = {
    "acknowledge": ({"open"}, "acknowledged"),
    "snooze": ({"open", "acknowledged"}, "snoozed"),
    "complete": ({"open", "acknowledged", "snoozed"}, "done"),
    "dismiss": ({"open", "acknowledged", "snoozed"}, "dismissed"),
    "escalate": ({"open", "acknowledged", "snoozed"}, None),
    "assign": ({"open", "acknowledged", "snoozed"}, None),
}


def _alert_action(
    engine: Engine,
    identity: Identity,
    alert_id: int,
    version: int,
    action: str,
    now: datetime,
    updates: dict[str, Any],
    detail: dict[str, Any],
) -> WriteResult:
    try:
        require(identity, Action.WORK_ALERT)
    except PermissionDenied as err:
        _deny(engine, identity, f"alert.{action}", None, str(err), now)
        raise
    with write_session(engine) as session:
        alert = session.get(m.Alert, alert_id)
        if alert is None:
            raise NotFound(f"alert {alert_id} does not exist")
        patient = _load_patient(session, alert.patient_id)
    grant_id = _check_scope(engine, identity, patient, f"alert.{action}", now)
    if grant_id is not None:
        detail = {**detail, "break_glass": grant_id}
    allowed_from, new_status = ALERT_TRANSITIONS[action]
    with write_session(engine) as session:
        alert = session.get(m.Alert, alert_id)
        if alert.status not in allowed_from:
            raise ConflictError(f"this alert is {alert.status}; it cannot be {action}d now")
        values = dict(updates)
        if new_status:
            values["status"] = new_status
        assignments = ", ".join(f"{k} = :{k}" for k in values)
        result = session.execute(
            text(f"UPDATE alert SET {assignments}, version = version + 1 WHERE id = :id AND version = :version"),
            dict(values, id=alert_id, version=version),
        )
        if result.rowcount != 1:
            raise ConflictError("this alert was changed by someone else since you opened it; reload and try again")
        audit.record(
            session,
            actor=identity.actor,
            action=f"alert.{action}",
            patient_id=alert.patient_id,
            target=f"alert:{alert_id}:{alert.rule_id}",
            detail=detail,
            now=now,
        )
        patient_id = alert.patient_id
    rescore(engine, [patient_id], now)
    return WriteResult(alert_id, patient_id)


def acknowledge_alert(engine: Engine, identity: Identity, alert_id: int, *, version: int, now: datetime) -> WriteResult:
    return _alert_action(
        engine,
        identity,
        alert_id,
        version,
        "acknowledge",
        now,
        {"acknowledged_at": now, "acknowledged_by": identity.actor},
        {},
    )


def snooze_alert(
    engine: Engine, identity: Identity, alert_id: int, *, version: int, until: datetime, reason: Any, now: datetime
) -> WriteResult:
    reason_text = _text("reason", reason, max_length=256, required=True)
    if until.tzinfo is None:
        raise ValidationError("until", "must carry a time zone")
    if until <= now:
        raise ValidationError("until", "must be in the future")
    if until > now + timedelta(days=MAX_SNOOZE_DAYS):
        raise ValidationError("until", f"may be at most {MAX_SNOOZE_DAYS} days ahead")
    return _alert_action(
        engine,
        identity,
        alert_id,
        version,
        "snooze",
        now,
        {"snoozed_until": until, "snooze_reason": reason_text},
        {"until": until.isoformat(), "reason": reason_text},
    )


def complete_alert(
    engine: Engine, identity: Identity, alert_id: int, *, version: int, action_taken: Any, now: datetime
) -> WriteResult:
    taken = _text("action_taken", action_taken, max_length=256, required=True)
    return _alert_action(
        engine,
        identity,
        alert_id,
        version,
        "complete",
        now,
        {"closed_at": now, "closed_by": identity.actor, "action_taken": taken, "close_reason": "action taken"},
        {"action_taken": taken},
    )


def dismiss_alert(
    engine: Engine, identity: Identity, alert_id: int, *, version: int, reason: Any, now: datetime
) -> WriteResult:
    reason_text = _text("reason", reason, max_length=256, required=True)
    return _alert_action(
        engine,
        identity,
        alert_id,
        version,
        "dismiss",
        now,
        {"closed_at": now, "closed_by": identity.actor, "close_reason": reason_text},
        {"reason": reason_text},
    )


def _clinician(engine: Engine, name: str, user_id: Any, *, required: bool) -> int | None:
    """An active nurse or physician's id (whom an alert may be handed to), else :class:`ValidationError`."""
    if user_id is None:
        if required:
            raise ValidationError(name, "is required (a nurse or physician)")
        return None
    if isinstance(user_id, bool) or not str(user_id).strip().isdigit():
        raise ValidationError(name, f"{user_id!r} is not a user id")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT role, active FROM app_user WHERE id = :u"), {"u": int(user_id)}).first()
    if row is None or not row.active or row.role not in (Role.NURSE, Role.PHYSICIAN):
        raise ValidationError(name, "is not an active nurse or physician")
    return int(user_id)


def escalate_alert(
    engine: Engine, identity: Identity, alert_id: int, *, version: int, to_user_id: int | None, note: Any, now: datetime
) -> WriteResult:
    note_text = _text("note", note, max_length=256, required=True)
    to_user_id = _clinician(engine, "to_user_id", to_user_id, required=False)
    return _alert_action(
        engine,
        identity,
        alert_id,
        version,
        "escalate",
        now,
        {"escalated_at": now, "assigned_to_id": to_user_id},
        {"to_user_id": to_user_id, "note": note_text},
    )


def assign_alert(
    engine: Engine, identity: Identity, alert_id: int, *, version: int, to_user_id: int, now: datetime
) -> WriteResult:
    to_user_id = _clinician(engine, "to_user_id", to_user_id, required=True)
    return _alert_action(
        engine, identity, alert_id, version, "assign", now, {"assigned_to_id": to_user_id}, {"to_user_id": to_user_id}
    )


# ---------------------------------------------------------------------------
# Cancer board
# ---------------------------------------------------------------------------

#: The alerts a recorded board decision answers (closed as done).
BOARD_ANSWERS = ("board-candidate", "tes-candidate", "sins-potentially-unstable", "sins-kakutani-10")


def record_board_decision(
    engine: Engine,
    identity: Identity,
    patient_id: int,
    *,
    decision: Any,
    decided_on: Any,
    reason: Any = None,
    now: datetime,
) -> WriteResult:
    try:
        require(identity, Action.DECIDE_BOARD)
    except PermissionDenied as err:
        _deny(engine, identity, "board.decide", patient_id, str(err), now)
        raise

    def build(session: Session, patient: m.Patient):
        day = _day("decided_on", decided_on, today=_today(now), birth=patient.birth_date)
        text_value = _text("decision", decision, max_length=4000, required=True)
        case = m.BoardCase(
            patient_id=patient.id,
            queued_on=day,
            reason=_text("reason", reason, max_length=256) or "board review",
            decided_on=day,
            decision=text_value,
            decided_by=identity.actor,
            created_at=now,
        )
        session.add(case)
        session.flush()
        closed = session.execute(
            text(
                "UPDATE alert SET status = 'done', closed_at = :now, closed_by = :actor, action_taken = :taken, "
                "close_reason = 'answered by the cancer board', version = version + 1 "
                f"WHERE patient_id = :pid AND status IN {m.ACTIVE_ALERT_SQL} AND rule_id IN "
                "('" + "', '".join(BOARD_ANSWERS) + "')"
            ),
            {"now": now, "actor": identity.actor, "taken": f"board decision: {text_value[:200]}", "pid": patient.id},
        ).rowcount
        return case.id, {"decided_on": day, "decision": text_value, "alerts_closed": closed}, []

    return _fact_write(engine, identity, patient_id, "board.decide", now, build)


def audit_view(
    engine: Engine,
    identity: Identity,
    *,
    patient_id: int | None,
    what: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record that ``identity`` viewed or exported patient data, or was refused (``what`` = ``denied.…``).

    A refusal is recorded with outcome ``denied``, so the audit report can filter refused attempts.
    """
    with write_session(engine) as session:
        audit.record(
            session,
            actor=identity.actor,
            action=what,
            patient_id=patient_id,
            outcome="denied" if what.startswith("denied.") else "success",
            detail=json.loads(json.dumps(detail or {}, default=str)),
            now=now,
        )
