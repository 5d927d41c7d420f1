"""Normalised import records: what every importer (FHIR, CSV) produces and the writer stores.

The contract between a parser and :func:`surveillance.importing.writer.write_records`:

* A parser turns one file into a list of records (the dataclasses below) plus a
  list of :class:`ImportIssue` for entries it could not read.  It never touches
  the database.
* Every record carries ``origin`` (the entry index and location in the file, for
  the report), ``source_system`` and ``source_id`` — a *stable* identifier of the
  fact in its source (FHIR ``Observation/abc``, a CSV file + row key …).  The
  writer stores both on the row; a unique index on them makes a re-import skip
  what is already there, so the same file imported twice changes nothing.
* Fact records name their patient by ``patient_ref``: the ``source_id`` of a
  :class:`PatientRecord` in the same list, or — when the file carries no patient
  record — ``"mrn:<MRN>"`` of a patient already in the database.
* Values are the product's tokens and canonical units (``surveillance.scoring.vocab``,
  ``surveillance.labs``, ``surveillance.service`` constants) but are **not yet
  validated**: the writer validates each record with the same rules as
  ``surveillance.service`` (ranges, vocabularies, dates neither in the future nor
  before birth) and reports a failure as an :class:`ImportIssue` at the record's
  ``origin``.  So a CSV parser may pass strings it read (``"2024-03-01"``) and let
  the writer refuse them with a located message.

``ImportResult`` is what every import returns (and what the CLI and the upload
page show).  ``status`` is ``imported`` (everything written), ``rejected``
(nothing written: at least one error and no ``partial``), ``partial`` (the valid
entries written, errors listed), or ``unchanged`` (a file with this SHA-256, or
records all already present — nothing new).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
Status = Literal["imported", "rejected", "unchanged", "partial"]


@dataclass(frozen=True)
class Origin:
    """Where a record came from in its file: entry index (Bundle entry, CSV row) and a location path."""

    entry_index: int | None
    location: str  # e.g. "Bundle.entry[3].resource(Observation/ecog-1)" or "patients.csv:row 7"


@dataclass(frozen=True)
class ImportIssue:
    entry_index: int | None
    location: str
    message: str
    severity: Severity = "error"

    @classmethod
    def at(cls, origin: Origin, message: str, severity: Severity = "error") -> ImportIssue:
        return cls(origin.entry_index, origin.location, message, severity)

    def as_dict(self) -> dict[str, Any]:
        return {
            "entry_index": self.entry_index,
            "location": self.location,
            "severity": self.severity,
            "message": self.message,
        }


@dataclass
class _Record:
    source_id: str
    origin: Origin
    source_system: str


@dataclass
class _Fact(_Record):
    patient_ref: str


# --------------------------------------------------------------------------- patient


@dataclass
class PatientRecord(_Record):
    """``patient`` row (and its primary cancer fields).  ``None`` means "not given": never overwrites."""

    mrn: str | None = None
    family_name: str | None = None
    given_name: str | None = None
    birth_date: date | str | None = None
    sex: str | None = None
    department: str | None = None
    primary_site: str | None = None  # PrimarySite token
    primary_histology: str | None = None
    hormone_dependent: bool | None = None
    molecular_targeted_therapy: bool | None = None
    previous_chemotherapy: bool | None = None
    status: str | None = None  # active | deceased | transferred | on_hold
    status_on: date | str | None = None
    deceased_on: date | str | None = None
    fit_for_surgery: bool | None = None
    registered_on: date | str | None = None  # None: the import day (a new patient)
    zoledronic_regimen: str | None = None  # q4w | q12w
    bma_not_indicated_reason: str | None = None
    denosumab_transition_plan: str | None = None
    assigned_nurse: str | None = None  # the nurse's user name; a name with no such nurse is a warning


# --------------------------------------------------------------------------- facts


@dataclass
class LesionRecord(_Fact):
    """A spinal lesion (``spinal_lesion``), with an assessment when any SINS/ESCC component is given.

    A lesion at a level where the patient already has an active lesion is the
    same lesion: the writer adds the assessment to it instead of a second lesion.
    """

    level: str = ""  # Level token ("T12")
    level_span_end: str | None = None
    first_seen_on: date | str | None = None
    pain: str | None = None
    lesion_type: str | None = None
    alignment: str | None = None
    collapse: str | None = None
    posterolateral: str | None = None
    bilsky_escc: str | None = None
    assessed_on: date | str | None = None
    active: bool | None = None  # None: active (a lesion from a foreign file)
    wbb_zones: str | None = None  # "3,4,5"
    wbb_layers: str | None = None  # "B,C"
    wbb_numbering: str | None = None
    imaging_source: str | None = None  # source_id of the imaging study the assessment was made on

    def has_assessment(self) -> bool:
        return any(
            getattr(self, k) is not None
            for k in ("pain", "lesion_type", "alignment", "collapse", "posterolateral", "bilsky_escc")
        )


@dataclass
class ImagingRecord(_Fact):
    performed_on: date | str | None = None
    modality: str = ""  # mri | ct | pet_ct | bone_scan | xray
    region: str = ""  # whole_spine | cervical | thoracic | lumbar | sacral | other
    findings: str | None = None


@dataclass
class PerformanceStatusRecord(_Fact):
    recorded_on: date | str | None = None
    ecog: int | None = None
    kps: int | None = None


@dataclass
class NeuroStatusRecord(_Fact):
    recorded_on: date | str | None = None
    frankel_grade: str | None = None
    ambulatory_status: str | None = None
    new_deficit: bool = False
    pain_suggests_cord_compression: bool = False
    new_spinal_pain: bool = False


@dataclass
class LabRecord(_Fact):
    """A lab value in the unit it was given (UCUM); the writer converts to the canonical unit."""

    collected_on: date | str | None = None
    test: str = ""  # surveillance.labs.LabTest
    value: float | str | None = None
    unit: str | None = None
    loinc: str | None = None


@dataclass
class MetastaticStatusRecord(_Fact):
    recorded_on: date | str | None = None
    visceral_status: str | None = None
    visceral_treatable: bool | None = None
    visceral_removable: bool | None = None
    brain_metastases: bool | None = None
    extraspinal_bone_metastases: int | None = None
    vertebral_body_metastases: int | None = None
    extraspinal_pathological_fracture: bool | None = None


@dataclass
class BmaRecord(_Fact):
    """A bone-modifying agent dose.  ``sre_prevention`` is decided by the writer (60 mg denosumab → False)."""

    given_on: date | str | None = None
    agent: str = ""  # denosumab | zoledronic_acid | pamidronate
    dose_mg: float | str | None = None


@dataclass
class TreatmentRecord(_Fact):
    kind: str = ""  # radiotherapy | surgery | systemic
    modality: str = ""  # surveillance.service.TREATMENTS[kind]
    started_on: date | str | None = None
    ended_on: date | str | None = None
    level: str | None = None
    region: str | None = None  # when no level is known: the spinal region (imported, with a warning)
    dose_gy: float | None = None
    fractions: int | None = None
    separation_margin_mm: float | None = None
    emergency: bool = False


@dataclass
class SkeletalEventRecord(_Fact):
    occurred_on: date | str | None = None
    event_type: str = ""  # surveillance.scoring.sre.SreType
    level: str | None = None
    emergency: bool = False


@dataclass
class LocomoConditionRecord(_Fact):
    condition: str = ""  # surveillance.locomo.LocomoCondition
    onset_on: date | str | None = None
    resolved_on: date | str | None = None
    management_plan: str | None = None
    orthopaedic_review_on: date | str | None = None


@dataclass
class DentalExamRecord(_Fact):
    examined_on: date | str | None = None
    onj_suspected: bool = False
    findings: str | None = None


@dataclass
class BoardCaseRecord(_Fact):
    """A cancer-board case (``board_case``); the table has no source columns, so a re-import is matched
    on (patient, queued_on, reason)."""

    queued_on: date | str | None = None
    reason: str | None = None
    decided_on: date | str | None = None
    decision: str | None = None
    decided_by: str | None = None


Record = (
    PatientRecord
    | LesionRecord
    | ImagingRecord
    | PerformanceStatusRecord
    | NeuroStatusRecord
    | LabRecord
    | MetastaticStatusRecord
    | BmaRecord
    | TreatmentRecord
    | SkeletalEventRecord
    | LocomoConditionRecord
    | DentalExamRecord
    | BoardCaseRecord
)

#: record class -> the name used in counts and reports
RECORD_KINDS: dict[type, str] = {
    PatientRecord: "patient",
    LesionRecord: "spinal_lesion",
    ImagingRecord: "imaging_study",
    PerformanceStatusRecord: "performance_status",
    NeuroStatusRecord: "neuro_status",
    LabRecord: "lab_result",
    MetastaticStatusRecord: "metastatic_status",
    BmaRecord: "bma_administration",
    TreatmentRecord: "treatment",
    SkeletalEventRecord: "skeletal_event",
    LocomoConditionRecord: "locomo_condition",
    DentalExamRecord: "dental_exam",
    BoardCaseRecord: "board_case",
}


def kind_of(record: Record) -> str:
    return RECORD_KINDS[type(record)]


def record_values(record: Record) -> dict[str, Any]:
    """The record's own fields (without the bookkeeping ones)."""
    skip = {"source_id", "origin", "source_system", "patient_ref"}
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name not in skip}


@dataclass
class ParseResult:
    """What a parser returns: records, issues, and the number of entries it looked at."""

    records: list[Record] = field(default_factory=list)
    issues: list[ImportIssue] = field(default_factory=list)
    entries: int = 0
    format: str = ""  # "fhir" | "csv"


@dataclass
class ImportResult:
    status: Status
    file_sha256: str
    file_name: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # record kind -> rows written
    skipped: dict[str, int] = field(default_factory=dict)  # record kind -> already present
    issues: list[ImportIssue] = field(default_factory=list)
    patient_ids: list[int] = field(default_factory=list)
    batch_id: int | None = None
    entries: int = 0

    @property
    def errors(self) -> list[ImportIssue]:
        return [i for i in self.issues if i.severity == "error"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "file_name": self.file_name,
            "file_sha256": self.file_sha256,
            "batch_id": self.batch_id,
            "entries": self.entries,
            "counts": dict(self.counts),
            "skipped": dict(self.skipped),
            "patient_ids": list(self.patient_ids),
            "issues": [i.as_dict() for i in self.issues],
        }


__all__ = [
    "RECORD_KINDS",
    "BmaRecord",
    "BoardCaseRecord",
    "DentalExamRecord",
    "ImagingRecord",
    "ImportIssue",
    "ImportResult",
    "LabRecord",
    "LesionRecord",
    "LocomoConditionRecord",
    "MetastaticStatusRecord",
    "NeuroStatusRecord",
    "Origin",
    "ParseResult",
    "PatientRecord",
    "PerformanceStatusRecord",
    "Record",
    "SkeletalEventRecord",
    "TreatmentRecord",
    "kind_of",
    "record_values",
]
