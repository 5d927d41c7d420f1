"""Every table of the patient store.

Three kinds of table (``shared/design.md``):

* **Facts**, each row dated, written only through ``surveillance.service`` and
  the importers: patients, spinal lesions and their assessments, imaging,
  performance status, neurology, labs, metastatic status, bone-modifying agents,
  dental exams, treatments, skeletal events, Cancer Locomo conditions, board
  cases.
* **Derived**, written only by the recompute pipeline: ``patient_state`` (the
  latest facts per patient, kept current when facts are written so a recompute
  never re-reads history), ``risk_snapshot`` (the current scores per patient) and
  its change history, ``alert``, ``job_run``, ``recompute_queue``, ``job_lease``.
* **Security**: ``app_user`` and ``audit_event``.

Categorical clinical values are stored as the lowercase tokens of the case
format (``surveillance.scoring.vocab``); ``db`` is the bottom layer and does not
import them, so the service layer validates every value before it is written.
Dates of clinical facts are ``date``; every timestamp is UTC-aware.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------
# Security
# ---------------------------------------------------------------------------


class AppUser(SQLModel, table=True):
    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True)
    display_name: str = Field(max_length=128)
    role: str = Field(max_length=16)  # nurse | physician | lead | admin
    department: str | None = Field(default=None, max_length=64)
    password_hash: str = Field(max_length=256)
    active: bool = Field(default=True)
    failed_logins: int = Field(default=0)
    locked_until: datetime | None = Field(default=None)
    password_changed_at: datetime = Field(default_factory=utcnow)
    created_at: datetime = Field(default_factory=utcnow)
    version: int = Field(default=1)


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained: ``hash = sha256(prev_hash + canonical(event))``."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    occurred_at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=64, index=True)  # username, or "system:<service>"
    action: str = Field(max_length=64, index=True)
    patient_id: int | None = Field(default=None, index=True)
    target: str | None = Field(default=None, max_length=128)
    outcome: str = Field(default="success", max_length=16)
    detail: str = Field(default="{}")  # canonical JSON
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class AuditHead(SQLModel, table=True):
    """The chain's anchor: one row (``id = 1``) holding the last event's id, hash and time and the
    event count, advanced by ``surveillance.audit.record`` in the same transaction as each append.

    Database triggers (migration ``a1d17a0e0001``) let it move only one event forward, onto an event
    that exists and links to the old head, so cutting the chain's tail is caught by comparing with it.
    """

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_id: int = Field(default=0)
    last_hash: str = Field(max_length=64)
    last_at: datetime | None = Field(default=None)
    events: int = Field(default=0)


class BreakGlassGrant(SQLModel, table=True):
    """Emergency access (HIPAA 164.312(a)(2)(ii), ONC 170.315(d)(6)): one user, one patient, a reason, a time box.

    Written only by ``surveillance.break_glass``; the scope checks of the data
    layer and the service read it and honour a grant only while
    ``granted_at <= now < expires_at``.
    """

    __tablename__ = "break_glass_grant"
    __table_args__ = (sa.Index("ix_break_glass_grant_user_patient_expires", "user_id", "patient_id", "expires_at"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id")
    patient_id: int = Field(foreign_key="patient.id", index=True)
    reason: str = Field(max_length=1000)
    granted_at: datetime
    expires_at: datetime


class AppSetting(SQLModel, table=True):
    """Small named settings kept with the data (demo mode, the audit anchor)."""

    __tablename__ = "app_setting"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(default="")
    updated_at: datetime = Field(default_factory=utcnow)


# ---------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------


class Patient(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    mrn: str = Field(max_length=32, unique=True, index=True)
    family_name: str = Field(max_length=128)
    given_name: str = Field(max_length=128)
    birth_date: date | None = Field(default=None)
    sex: str | None = Field(default=None, max_length=16)
    department: str | None = Field(default=None, max_length=64, index=True)
    primary_site: str | None = Field(default=None, max_length=32)  # case-format code
    primary_histology: str | None = Field(default=None, max_length=256)
    hormone_dependent: bool | None = Field(default=None)
    molecular_targeted_therapy: bool | None = Field(default=None)
    previous_chemotherapy: bool | None = Field(default=None)
    fit_for_surgery: bool | None = Field(default=None)
    status: str = Field(default="active", max_length=16)  # active | deceased | transferred | on_hold
    status_on: date | None = Field(default=None)
    deceased_on: date | None = Field(default=None)
    registered_on: date = Field(default_factory=lambda: utcnow().date())
    assigned_nurse_id: int | None = Field(default=None, foreign_key="app_user.id", index=True)
    zoledronic_regimen: str | None = Field(default=None, max_length=8)  # q4w | q12w (per patient)
    bma_not_indicated_reason: str | None = Field(default=None, max_length=256)
    denosumab_transition_plan: str | None = Field(default=None, max_length=256)
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    version: int = Field(default=1)


class SpinalLesion(SQLModel, table=True):
    """A lesion, with its current assessment copied from the latest ``LesionAssessment``."""

    __tablename__ = "spinal_lesion"

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    level: str = Field(max_length=8)
    level_span_end: str | None = Field(default=None, max_length=8)  # last level of a contiguous span
    first_seen_on: date
    active: bool = Field(default=True)
    pain: str | None = Field(default=None, max_length=16)
    lesion_type: str | None = Field(default=None, max_length=16)
    alignment: str | None = Field(default=None, max_length=16)
    collapse: str | None = Field(default=None, max_length=24)
    posterolateral: str | None = Field(default=None, max_length=16)
    bilsky_escc: str | None = Field(default=None, max_length=4)
    wbb_zones: str | None = Field(default=None, max_length=64)  # "3,4,5"
    wbb_layers: str | None = Field(default=None, max_length=16)  # "B,C"
    wbb_numbering: str | None = Field(default=None, max_length=24)
    assessed_on: date | None = Field(default=None)
    version: int = Field(default=1)
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128)


class LesionAssessment(SQLModel, table=True):
    __tablename__ = "lesion_assessment"
    __table_args__ = (sa.Index("ix_lesion_assessment_lesion_date", "lesion_id", "assessed_on"),)

    id: int | None = Field(default=None, primary_key=True)
    lesion_id: int = Field(foreign_key="spinal_lesion.id")
    patient_id: int = Field(foreign_key="patient.id", index=True)
    assessed_on: date
    imaging_study_id: int | None = Field(default=None, foreign_key="imaging_study.id")
    pain: str | None = Field(default=None, max_length=16)
    lesion_type: str | None = Field(default=None, max_length=16)
    alignment: str | None = Field(default=None, max_length=16)
    collapse: str | None = Field(default=None, max_length=24)
    posterolateral: str | None = Field(default=None, max_length=16)
    bilsky_escc: str | None = Field(default=None, max_length=4)
    recorded_by: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class ImagingStudy(SQLModel, table=True):
    __tablename__ = "imaging_study"
    __table_args__ = (sa.Index("ix_imaging_patient_date", "patient_id", "performed_on"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    performed_on: date
    modality: str = Field(max_length=16)  # mri | ct | pet_ct | bone_scan | xray
    region: str = Field(max_length=24)  # whole_spine | cervical | thoracic | lumbar | sacral | other
    findings: str | None = Field(default=None)
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class PerformanceStatus(SQLModel, table=True):
    __tablename__ = "performance_status"
    __table_args__ = (sa.Index("ix_ps_patient_date", "patient_id", "recorded_on"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    recorded_on: date
    ecog: int | None = Field(default=None)
    kps: int | None = Field(default=None)
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class NeuroStatus(SQLModel, table=True):
    __tablename__ = "neuro_status"
    __table_args__ = (sa.Index("ix_neuro_patient_date", "patient_id", "recorded_on"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    recorded_on: date
    frankel_grade: str | None = Field(default=None, max_length=1)
    ambulatory_status: str | None = Field(default=None, max_length=24)
    new_deficit: bool = Field(default=False)  # new motor, sensory or bladder symptoms
    pain_suggests_cord_compression: bool = Field(default=False)
    new_spinal_pain: bool = Field(default=False)  # suggestive of metastasis, no neurological signs
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class LabResult(SQLModel, table=True):
    __tablename__ = "lab_result"
    __table_args__ = (sa.Index("ix_lab_patient_test_date", "patient_id", "test", "collected_on"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    collected_on: date
    test: str = Field(max_length=24)  # albumin | crp | ldh | platelets | calcium | bilirubin | creatinine
    loinc: str | None = Field(default=None, max_length=16)
    value: float
    unit: str = Field(max_length=16)  # the canonical unit of the test (see surveillance.labs)
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class MetastaticStatus(SQLModel, table=True):
    __tablename__ = "metastatic_status"
    __table_args__ = (sa.Index("ix_metastatic_patient_date", "patient_id", "recorded_on"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    recorded_on: date
    visceral_status: str | None = Field(default=None, max_length=16)  # none | nodular | disseminated
    visceral_treatable: bool | None = Field(default=None)
    visceral_removable: bool | None = Field(default=None)
    brain_metastases: bool | None = Field(default=None)
    extraspinal_bone_metastases: int | None = Field(default=None)
    vertebral_body_metastases: int | None = Field(default=None)  # explicit count; else derived from lesions
    extraspinal_pathological_fracture: bool | None = Field(default=None)
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class BmaAdministration(SQLModel, table=True):
    __tablename__ = "bma_administration"
    __table_args__ = (sa.Index("ix_bma_patient_date", "patient_id", "given_on"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    given_on: date
    agent: str = Field(max_length=24)  # denosumab | zoledronic_acid | pamidronate
    dose_mg: float | None = Field(default=None)  # None: an imported dose the source did not give
    sre_prevention: bool = Field(default=True)  # False for 60 mg osteoporosis-dose denosumab
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class DentalExam(SQLModel, table=True):
    __tablename__ = "dental_exam"
    __table_args__ = (sa.Index("ix_dental_patient_date", "patient_id", "examined_on"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    examined_on: date
    onj_suspected: bool = Field(default=False)
    findings: str | None = Field(default=None)
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class Treatment(SQLModel, table=True):
    __table_args__ = (sa.Index("ix_treatment_patient_date", "patient_id", "started_on"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    kind: str = Field(max_length=16)  # radiotherapy | surgery | systemic
    modality: str = Field(max_length=32)  # cebrt | sbrt | srs | tes | en_bloc | separation | ... | chemotherapy
    started_on: date
    ended_on: date | None = Field(default=None)
    level: str | None = Field(default=None, max_length=8)
    to_bone: bool = Field(default=False)
    dose_gy: float | None = Field(default=None)
    fractions: int | None = Field(default=None)
    separation_margin_mm: float | None = Field(default=None)
    emergency: bool = Field(default=False)
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class SkeletalEvent(SQLModel, table=True):
    __tablename__ = "skeletal_event"
    __table_args__ = (
        sa.Index("ix_sre_patient_date", "patient_id", "occurred_on"),
        sa.Index("ix_sre_date_type", "occurred_on", "event_type"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    occurred_on: date
    event_type: str = Field(max_length=40)  # surveillance.scoring.sre.SreType
    level: str | None = Field(default=None, max_length=8)
    emergency: bool = Field(default=False)
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class LocomoConditionRecord(SQLModel, table=True):
    __tablename__ = "locomo_condition"

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    condition: str = Field(max_length=48)  # surveillance.locomo.LocomoCondition
    onset_on: date
    resolved_on: date | None = Field(default=None)
    management_plan: str | None = Field(default=None, max_length=256)
    orthopaedic_review_on: date | None = Field(default=None)
    source_system: str | None = Field(default=None, max_length=64)
    source_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class BoardCase(SQLModel, table=True):
    __tablename__ = "board_case"

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    queued_on: date
    reason: str = Field(max_length=256)
    decided_on: date | None = Field(default=None)
    decision: str | None = Field(default=None)
    decided_by: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    version: int = Field(default=1)


# ---------------------------------------------------------------------------
# Imports (surveillance.importing): one batch row per file; imported fact rows carry
# source_system + source_id, unique per patient, so importing a file again changes nothing.
# ---------------------------------------------------------------------------


class ImportBatch(SQLModel, table=True):
    """One imported (or rejected) file: its SHA-256 (ONC 170.315(d)(8) integrity), who, when, what."""

    __tablename__ = "import_batch"

    id: int | None = Field(default=None, primary_key=True)
    file_sha256: str = Field(max_length=64, index=True)
    file_name: str = Field(max_length=256)
    file_format: str = Field(max_length=8)  # fhir | csv
    actor: str = Field(max_length=64)
    imported_at: datetime
    status: str = Field(max_length=12)  # imported | partial | rejected | unchanged
    entries: int = 0
    counts: str = Field(default="{}")  # JSON: record kind -> rows written
    issues: int = 0  # issues reported (errors + warnings)


#: Tables whose imported rows carry (source_system, source_id): unique per patient.
IMPORTED_FACT_TABLES = (
    "spinal_lesion",
    "imaging_study",
    "performance_status",
    "neuro_status",
    "lab_result",
    "metastatic_status",
    "bma_administration",
    "dental_exam",
    "treatment",
    "skeletal_event",
    "locomo_condition",
)

sa.Index("ux_patient_source", Patient.__table__.c.source_system, Patient.__table__.c.source_id, unique=True)
for _model in (
    SpinalLesion,
    ImagingStudy,
    PerformanceStatus,
    NeuroStatus,
    LabResult,
    MetastaticStatus,
    BmaAdministration,
    DentalExam,
    Treatment,
    SkeletalEvent,
    LocomoConditionRecord,
):
    _t = _model.__table__
    sa.Index(f"ux_{_t.name}_source", _t.c.patient_id, _t.c.source_system, _t.c.source_id, unique=True)
del _model, _t


# ---------------------------------------------------------------------------
# Derived (written by the pipeline and by the fact writers' state refresh)
# ---------------------------------------------------------------------------


class PatientState(SQLModel, table=True):
    """The latest facts of one patient, so a recompute reads one row, not the history.

    Rebuilt from the facts by ``surveillance.state.refresh_patient_state`` in the
    same transaction as every fact write; ``previous_*`` columns hold the record
    before the latest, for decline rules.
    """

    __tablename__ = "patient_state"

    patient_id: int = Field(foreign_key="patient.id", primary_key=True)
    ecog: int | None = None
    ecog_on: date | None = None
    previous_ecog: int | None = None
    kps: int | None = None
    kps_on: date | None = None
    frankel_grade: str | None = Field(default=None, max_length=1)
    previous_frankel_grade: str | None = Field(default=None, max_length=1)
    ambulatory_status: str | None = Field(default=None, max_length=24)
    previous_ambulatory_status: str | None = Field(default=None, max_length=24)
    neuro_on: date | None = None
    new_deficit_on: date | None = None
    cord_compression_pain_on: date | None = None
    new_spinal_pain_on: date | None = None
    albumin_g_dl: float | None = None
    albumin_on: date | None = None
    crp_mg_dl: float | None = None
    ldh_u_l: float | None = None
    platelets_per_ul: float | None = None
    calcium_mg_dl: float | None = None
    calcium_on: date | None = None
    total_bilirubin_mg_dl: float | None = None
    creatinine_mg_dl: float | None = None
    creatinine_on: date | None = None
    creatinine_baseline_mg_dl: float | None = None
    labs_on: date | None = None
    visceral_status: str | None = Field(default=None, max_length=16)
    visceral_treatable: bool | None = None
    visceral_removable: bool | None = None
    brain_metastases: bool | None = None
    extraspinal_bone_metastases: int | None = None
    vertebral_body_metastases: int | None = None
    extraspinal_pathological_fracture: bool | None = None
    lesion_count: int = 0
    last_new_lesion_on: date | None = None
    last_imaging_on: date | None = None
    bma_agent: str | None = Field(default=None, max_length=24)
    bma_first_on: date | None = None
    bma_last_on: date | None = None
    bma_last_dose_mg: float | None = None
    bma_sre_prevention: bool | None = None
    denosumab_last_on: date | None = None
    zoledronic_first_on: date | None = None
    dental_before_first_bma: bool | None = None
    dental_last_on: date | None = None
    onj_suspected: bool = False
    last_spine_sbrt_on: date | None = None
    separation_surgery_on: date | None = None
    separation_margin_mm: float | None = None
    on_cancer_therapy: bool = False
    sre_count: int = 0
    last_sre_on: date | None = None
    locomo_types: int = 0  # bit 1, 2, 4 for types 1, 2, 3
    locomo_type2_without_plan: bool = False
    locomo_type3_last_review_on: date | None = None  # latest orthopaedic review of an active type-3 condition
    board_decided_on: date | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class RecomputeQueue(SQLModel, table=True):
    """Patients whose facts changed since they were last scored (one row per change)."""

    __tablename__ = "recompute_queue"

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(index=True)
    queued_at: datetime = Field(default_factory=utcnow)


class RiskSnapshot(SQLModel, table=True):
    """The current scores of one patient (one row per patient; history in ``risk_snapshot_history``).

    ``*_mask`` columns hold the possible totals as a bit set (bit ``t`` set when
    total ``t`` is reachable); ``*_total`` is the total when exactly one is.
    """

    __tablename__ = "risk_snapshot"
    __table_args__ = (
        # The caseload walks one of the four priority indexes (db/queries.py).  Each also carries the
        # caseload's filters that seldom change (active, primary site, tier, nurse) after the priority,
        # so SQLite checks them on the index entry and reads the row only of a patient who passes: a
        # rare primary site at 1M, 48 ms -> 4 ms.  The open-alert count and open-rule bits would save
        # more row reads, but they change with nearly every recompute of a patient, and an incremental
        # run at 1M then wrote 15 % more pages (docs/performance.md).
        sa.Index("ix_snapshot_active_priority", "active", "priority", "primary_site", "tier", "assigned_nurse_id"),
        sa.Index("ix_snapshot_active_due", "active", "next_imaging_due"),
        sa.Index("ix_snapshot_nurse_priority", "assigned_nurse_id", "priority", "active", "primary_site", "tier"),
        # The caseload's tier filter, alone and with a nurse: walk the tier in priority order
        # instead of every row of higher priority (95 ms -> under 20 ms at 1M patients).
        sa.Index("ix_snapshot_tier_priority", "tier", "priority", "active", "primary_site", "assigned_nurse_id"),
        sa.Index("ix_snapshot_nurse_tier_priority", "assigned_nurse_id", "tier", "priority", "active", "primary_site"),
        sa.Index("ix_snapshot_recheck", "recheck_on"),
        # The caseload driven by a rare primary site (db/queries.py).  A site does not change when a
        # patient's scores do, so recomputes leave this index alone.
        sa.Index("ix_snapshot_site", "primary_site"),
    )

    patient_id: int = Field(foreign_key="patient.id", primary_key=True)
    run_id: int  # not indexed: no query selects by it, and every write of a snapshot changes it
    computed_at: datetime
    content_hash: str = Field(max_length=32)
    active: bool
    assigned_nurse_id: int | None = None
    primary_site: str | None = Field(default=None, max_length=32)
    lesion_count: int = 0
    sins_worst_mask: int = 0
    sins_worst_total: int | None = None
    sins_worst_category: str | None = Field(default=None, max_length=24)
    bilsky_worst: str | None = Field(default=None, max_length=4)
    tomita_mask: int = 0
    tomita_total: int | None = None
    tomita_band: str | None = Field(default=None, max_length=8)
    tokuhashi_mask: int = 0
    tokuhashi_total: int | None = None
    tokuhashi_band: str | None = Field(default=None, max_length=8)
    bauer_mask: int = 0
    bauer_total: int | None = None
    bauer_band: str | None = Field(default=None, max_length=8)
    modified_bauer_mask: int = 0
    modified_bauer_total: int | None = None
    modified_bauer_band: str | None = Field(default=None, max_length=8)
    nesms_mask: int = 0
    nesms_total: int | None = None
    nesms_band: str | None = Field(default=None, max_length=8)
    katagiri_mask: int = 0
    katagiri_total: int | None = None
    katagiri_band: str | None = Field(default=None, max_length=16)
    tes_screen: str | None = Field(default=None, max_length=16)
    locomo_types: int = 0
    tier: str = Field(max_length=16)  # high | intermediate | low | screening | none
    last_imaging_on: date | None = None
    next_imaging_due: date | None = None
    recheck_on: date | None = None
    open_alerts: int = 0
    critical_alerts: int = 0
    priority: int = Field(default=0)
    alert_reasons: str | None = Field(default=None, max_length=512)
    next_bma_due: date | None = None
    # What the alert plan of the last write saw (surveillance/prepare.py): the firings'
    # fingerprint, the digest of the patient's alert rows after the plan, and which rules'
    # alerts it left open (bit i = RULE_ORDER[i]).  When a later run finds the same firings
    # and the same alert rows, the plan is empty and the open alerts are these.  Incremental
    # runs leave fingerprint and digest NULL (the next full run plans their patients again).
    alert_fingerprint: int | None = Field(default=None, sa_type=sa.BigInteger)
    alert_digest: str | None = Field(default=None, max_length=64)
    open_rules: int | None = Field(default=None, sa_type=sa.BigInteger)


class RiskSnapshotHistory(SQLModel, table=True):
    """A patient's snapshot each time it changed, for timelines and audit."""

    __tablename__ = "risk_snapshot_history"
    __table_args__ = (sa.Index("ix_snapshot_history_patient", "patient_id", "run_id"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int
    run_id: int
    computed_at: datetime
    content_hash: str = Field(max_length=32)
    sins_worst_mask: int = 0
    tomita_mask: int = 0
    tokuhashi_mask: int = 0
    bauer_mask: int = 0
    modified_bauer_mask: int = 0
    nesms_mask: int = 0
    katagiri_mask: int = 0
    tier: str = Field(max_length=16)
    next_imaging_due: date | None = None
    priority: int = 0


ACTIVE_ALERT_STATUSES = ("open", "acknowledged", "snoozed")
#: Closed by a person: the plan does not reopen these episodes.
PERSON_CLOSED_STATUSES = ("done", "dismissed")


def status_list(statuses: tuple[str, ...]) -> str:
    """Statuses as an SQL list: ``('open', 'acknowledged', 'snoozed')``."""
    return "(" + ", ".join(f"'{s}'" for s in statuses) + ")"


#: The partial alert indexes below are defined with these lists, and a query must spell its
#: condition the same way for SQLite to use such an index: queries take them from here.
ACTIVE_ALERT_SQL = status_list(ACTIVE_ALERT_STATUSES)
PERSON_CLOSED_SQL = status_list(PERSON_CLOSED_STATUSES)
ACTIVE_ALERT_WHERE = f"status IN {ACTIVE_ALERT_SQL}"
PERSON_CLOSED_WHERE = f"status IN {PERSON_CLOSED_SQL}"
#: Open alerts whose escalation time is still ahead or due: the wake-up queries spell it so.
ESCALATION_PENDING_WHERE = "status = 'open' AND escalated_at IS NULL AND escalate_at IS NOT NULL"


def _partial(where: str) -> dict[str, Any]:
    """The same partial-index condition on both backends."""
    return {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}


class Alert(SQLModel, table=True):
    """One alert; at most one *active* alert per patient and rule (partial unique index)."""

    __table_args__ = (
        sa.Index(
            "ux_alert_active_patient_rule",
            "patient_id",
            "rule_id",
            unique=True,
            **_partial(ACTIVE_ALERT_WHERE),
        ),
        # The status-led indexes hold active alerts only (every query through them asks for active
        # ones): resolved alerts accumulate for as long as the store lives, and a recompute that
        # resolves an alert then only removes its entries instead of also inserting new ones
        # at random places (docs/performance.md, the incremental run).
        sa.Index(
            "ix_alert_status_severity",
            "status",
            "severity",
            "opened_at",
            **_partial(ACTIVE_ALERT_WHERE),
        ),
        sa.Index("ix_alert_patient_rule_key", "patient_id", "rule_id", "evidence_key"),
        # Most alerts are nobody's in particular (the patient's nurse holds them).
        sa.Index(
            "ix_alert_assignee_status",
            "assigned_to_id",
            "status",
            **_partial("assigned_to_id IS NOT NULL"),
        ),
        # An alert type's open alerts, for the caseload driven by a rare type (db/queries.py); it also
        # covers the Trends page's active-alert burden (every active alert's patient, severity, assignee).
        sa.Index(
            "ix_alert_rule_status_patient",
            "rule_id",
            "status",
            "patient_id",
            "severity",
            "assigned_to_id",
            **_partial(ACTIVE_ALERT_WHERE),
        ),
        # The episodes a person closed, which the alert plan must not reopen: few, read per patient.
        sa.Index(
            "ix_alert_person_closed",
            "patient_id",
            "rule_id",
            "evidence_key",
            **_partial(PERSON_CLOSED_WHERE),
        ),
        # The incremental run's wake-ups (a snooze ending, an escalation falling due): small partial
        # indexes, so finding them does not read every active alert.
        sa.Index(
            "ix_alert_snooze_ends",
            "snoozed_until",
            **_partial("status = 'snoozed'"),
        ),
        # Only alerts of a rule that escalates have an escalation time (a few thousand of the
        # millions open): without ``escalate_at IS NOT NULL`` this index held every open alert.
        sa.Index(
            "ix_alert_escalation_due",
            "escalate_at",
            **_partial(ESCALATION_PENDING_WHERE),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    rule_id: str = Field(max_length=48)
    rule_version: str = Field(max_length=16)
    severity: str = Field(max_length=12)  # critical | high | routine | info
    status: str = Field(default="open", max_length=16)  # open | acknowledged | snoozed | resolved | dismissed | done
    title: str = Field(max_length=160)
    evidence: str = Field(default="{}")  # JSON: the inputs that fired the rule
    evidence_key: str = Field(max_length=128)  # what makes this episode distinct
    source: str = Field(max_length=256)
    opened_at: datetime
    opened_run_id: int | None = None
    action_due_at: datetime | None = None
    escalate_at: datetime | None = None
    escalated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = Field(default=None, max_length=64)
    snoozed_until: datetime | None = None
    snooze_reason: str | None = Field(default=None, max_length=256)
    assigned_to_id: int | None = Field(default=None, foreign_key="app_user.id")
    closed_at: datetime | None = None
    closed_by: str | None = Field(default=None, max_length=64)
    close_reason: str | None = Field(default=None, max_length=256)
    action_taken: str | None = Field(default=None, max_length=256)
    version: int = Field(default=1)


class JobRun(SQLModel, table=True):
    __tablename__ = "job_run"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # full | incremental
    trigger: str = Field(max_length=16)  # scheduler | cli | app | missed
    started_at: datetime = Field(index=True)
    finished_at: datetime | None = None
    status: str = Field(max_length=12)  # running | success | failed | missed
    patients: int = 0
    snapshots_written: int = 0
    alerts_opened: int = 0
    alerts_resolved: int = 0
    batches: int = 0
    owner: str | None = Field(default=None, max_length=128)
    message: str | None = None
    engine_version: str | None = Field(default=None, max_length=32)
    rules_version: str | None = Field(default=None, max_length=32)
    as_of: date | None = None


class JobLease(SQLModel, table=True):
    """A database lease so two scheduler processes never run the same job at once."""

    __tablename__ = "job_lease"

    name: str = Field(primary_key=True, max_length=64)
    owner: str | None = Field(default=None, max_length=128)
    until: datetime | None = None
    heartbeat_at: datetime | None = None


class SreMonthly(SQLModel, table=True):
    """Skeletal events per month, primary site and type: the leads' trend reads this, not raw events."""

    __tablename__ = "sre_monthly"

    month: date = Field(primary_key=True)
    primary_site: str = Field(primary_key=True, max_length=32)
    event_type: str = Field(primary_key=True, max_length=40)
    events: int = 0
    emergency_events: int = 0


class PersonTimeMonthly(SQLModel, table=True):
    """Patient-days under surveillance per month and primary site (the rate denominator)."""

    __tablename__ = "person_time_monthly"

    month: date = Field(primary_key=True)
    primary_site: str = Field(primary_key=True, max_length=32)
    patient_days: int = 0


# ---------------------------------------------------------------------------
# Trend tables for the Trends page, rebuilt by surveillance.trend_tables.refresh_trend_tables.
# Sites: the case-format code or "unknown"; departments: the patient's or "" (none).
# ---------------------------------------------------------------------------


class TrendRefresh(SQLModel, table=True):
    """The day (and instant) the trend tables describe; the page falls back to live reads when not current."""

    __tablename__ = "trend_refresh"

    name: str = Field(primary_key=True, max_length=32)
    as_of: date
    as_of_at: datetime


class BmaMonthly(SQLModel, table=True):
    """Running-count inputs of the BMA view per month, site and department (``surveillance.trends.bma_monthly``)."""

    __tablename__ = "bma_monthly"

    month: date = Field(primary_key=True)
    primary_site: str = Field(primary_key=True, max_length=32)
    department: str = Field(primary_key=True, max_length=64)
    eligible_start: int = 0  # patients with bone metastasis entering the denominator
    eligible_stop: int = 0  # … leaving it (end of surveillance on or before the as-of day)
    cover_start: int = 0  # 90-day cover segments starting
    cover_stop: int = 0  # … ending
    evaluated: int = 0  # SRE-prevention doses given after a previous one
    on_time: int = 0  # … within the regimen's allowed gap


class SreIncidence(SQLModel, table=True):
    """Patients by registration period, site, department, SRE definition, tier, follow-up month and outcome."""

    __tablename__ = "sre_incidence"

    registered_within: int = Field(primary_key=True)  # shortest page period (months back) holding it; 0 = older
    primary_site: str = Field(primary_key=True, max_length=32)
    department: str = Field(primary_key=True, max_length=64)
    definition: str = Field(primary_key=True, max_length=16)  # core | extended
    tier: str = Field(primary_key=True, max_length=16)
    follow_up_month: int = Field(primary_key=True)  # -1: no usable stop day
    outcome: int = Field(primary_key=True)  # 1 first SRE, 2 death first, 0 censored
    patients: int = 0


class AlertResponseMonthly(SQLModel, table=True):
    """Alerts per month opened, severity, site and department: opened, response/done hour buckets, judged."""

    __tablename__ = "alert_response_monthly"

    month: date = Field(primary_key=True)
    severity: str = Field(primary_key=True, max_length=12)
    primary_site: str = Field(primary_key=True, max_length=32)
    department: str = Field(primary_key=True, max_length=64)
    measure: str = Field(primary_key=True, max_length=16)  # opened | response | done | judged
    bucket: int = Field(primary_key=True)  # hours upper bound (response, done); 1/0 acted (judged); 0 (opened)
    alerts: int = 0
