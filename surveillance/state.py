"""Keeping ``patient_state`` — the latest facts of each patient — in step with the facts.

The recompute pipeline reads one ``patient_state`` row per patient instead of
every dated fact, which is what lets a full recompute of a million patients
finish in seconds.  The state is *derived*: :func:`compute_state` rebuilds it
from a patient's facts (no clock: nothing here depends on today), and every
fact writer calls :func:`refresh_patient_state` in the same transaction, so the
state can never be older than the facts it summarises.  ``python -m
surveillance state rebuild`` recomputes it for everyone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import delete, insert, select
from sqlmodel import Session

from db import models as m
from surveillance.labs import LABS, LabTest
from surveillance.locomo import CONDITION_TYPE, LocomoCondition
from surveillance.scoring.vocab import LEVEL_ORDER, Level

QUALIFYING_MODALITIES = frozenset({"mri", "ct", "pet_ct", "bone_scan"})
WHOLE_BODY_MODALITIES = frozenset({"pet_ct", "bone_scan"})
SPINE_REGIONS = frozenset({"whole_spine", "cervical", "thoracic", "lumbar", "sacral"})
SPINE_SBRT_MODALITIES = frozenset({"sbrt", "srs"})
KATAGIRI_LABS = (LabTest.ALBUMIN, LabTest.CRP, LabTest.LDH, LabTest.PLATELETS, LabTest.CALCIUM, LabTest.BILIRUBIN)

STATE_COLUMNS = [c.name for c in m.PatientState.__table__.columns if c.name not in ("patient_id", "updated_at")]


@dataclass
class PatientFacts:
    """Every fact row of one patient, as plain mappings (column name -> value)."""

    performance: list[dict] = field(default_factory=list)
    neuro: list[dict] = field(default_factory=list)
    labs: list[dict] = field(default_factory=list)
    metastatic: list[dict] = field(default_factory=list)
    lesions: list[dict] = field(default_factory=list)
    imaging: list[dict] = field(default_factory=list)
    bma: list[dict] = field(default_factory=list)
    dental: list[dict] = field(default_factory=list)
    treatments: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    locomo: list[dict] = field(default_factory=list)
    board: list[dict] = field(default_factory=list)


def lesion_levels(level: str, span_end: str | None) -> list[Level]:
    """The levels a lesion covers, cranio-caudal."""
    first = LEVEL_ORDER[Level(level)]
    last = LEVEL_ORDER[Level(span_end)] if span_end else first
    lo, hi = min(first, last), max(first, last)
    return [lv for lv, i in LEVEL_ORDER.items() if lo <= i <= hi]


def _latest(rows: Sequence[dict], date_key: str, value_key: str) -> tuple[Any, date | None, Any]:
    """(latest non-null value, its date, the non-null value before it)."""
    found = [r for r in rows if r[value_key] is not None]
    found.sort(key=lambda r: (r[date_key], r["id"]))
    if not found:
        return None, None, None
    previous = found[-2][value_key] if len(found) > 1 else None
    return found[-1][value_key], found[-1][date_key], previous


def _max_date(rows: Iterable[dict], key: str) -> date | None:
    dates = [r[key] for r in rows if r[key] is not None]
    return max(dates) if dates else None


def compute_state(facts: PatientFacts) -> dict[str, Any]:
    """The ``patient_state`` columns for one patient, from all of its facts."""
    s: dict[str, Any] = {}
    s["ecog"], s["ecog_on"], s["previous_ecog"] = _latest(facts.performance, "recorded_on", "ecog")
    s["kps"], s["kps_on"], _ = _latest(facts.performance, "recorded_on", "kps")

    s["frankel_grade"], _, s["previous_frankel_grade"] = _latest(facts.neuro, "recorded_on", "frankel_grade")
    s["ambulatory_status"], _, s["previous_ambulatory_status"] = _latest(
        facts.neuro, "recorded_on", "ambulatory_status"
    )
    s["neuro_on"] = _max_date(facts.neuro, "recorded_on")
    s["new_deficit_on"] = _max_date((r for r in facts.neuro if r["new_deficit"]), "recorded_on")
    s["cord_compression_pain_on"] = _max_date(
        (r for r in facts.neuro if r["pain_suggests_cord_compression"]), "recorded_on"
    )
    s["new_spinal_pain_on"] = _max_date((r for r in facts.neuro if r["new_spinal_pain"]), "recorded_on")

    by_test: dict[str, list[dict]] = defaultdict(list)
    for row in facts.labs:
        by_test[row["test"]].append(row)
    for test in LabTest:
        value, on, _ = _latest(by_test.get(test.value, []), "collected_on", "value")
        s[LABS[test].state_field] = value
        if test in (LabTest.ALBUMIN, LabTest.CALCIUM, LabTest.CREATININE):
            s[f"{test.value}_on"] = on
    s["labs_on"] = max(
        (d for t in KATAGIRI_LABS for d in [_latest(by_test.get(t.value, []), "collected_on", "value")[1]] if d),
        default=None,
    )

    sre_prevention = sorted((r for r in facts.bma if r["sre_prevention"]), key=lambda r: (r["given_on"], r["id"]))
    zoledronic = [r for r in sre_prevention if r["agent"] == "zoledronic_acid"]
    denosumab = [r for r in sre_prevention if r["agent"] == "denosumab"]
    s["bma_agent"] = sre_prevention[-1]["agent"] if sre_prevention else None
    s["bma_first_on"] = sre_prevention[0]["given_on"] if sre_prevention else None
    s["bma_last_on"] = sre_prevention[-1]["given_on"] if sre_prevention else None
    s["bma_last_dose_mg"] = sre_prevention[-1]["dose_mg"] if sre_prevention else None
    s["bma_sre_prevention"] = bool(sre_prevention) if facts.bma else None
    s["denosumab_last_on"] = denosumab[-1]["given_on"] if denosumab else None
    s["zoledronic_first_on"] = zoledronic[0]["given_on"] if zoledronic else None

    # Creatinine baseline: the last value on or before the first zoledronic-acid dose.
    s["creatinine_baseline_mg_dl"] = None
    if zoledronic:
        before = [r for r in by_test.get("creatinine", []) if r["collected_on"] <= zoledronic[0]["given_on"]]
        if before:
            s["creatinine_baseline_mg_dl"] = max(before, key=lambda r: (r["collected_on"], r["id"]))["value"]

    dental = sorted(facts.dental, key=lambda r: (r["examined_on"], r["id"]))
    s["dental_last_on"] = dental[-1]["examined_on"] if dental else None
    s["onj_suspected"] = bool(dental and dental[-1]["onj_suspected"])
    s["dental_before_first_bma"] = (
        None if not sre_prevention else any(r["examined_on"] <= s["bma_first_on"] for r in dental)
    )

    for key in (
        "visceral_status",
        "visceral_treatable",
        "visceral_removable",
        "brain_metastases",
        "extraspinal_bone_metastases",
        "extraspinal_pathological_fracture",
    ):
        s[key], _, _ = _latest(facts.metastatic, "recorded_on", key)
    explicit_vertebral, _, _ = _latest(facts.metastatic, "recorded_on", "vertebral_body_metastases")

    active_lesions = [r for r in facts.lesions if r["active"]]
    s["lesion_count"] = len(active_lesions)
    s["last_new_lesion_on"] = _max_date(active_lesions, "first_seen_on")
    levels = {lv for r in active_lesions for lv in lesion_levels(r["level"], r["level_span_end"])}
    s["vertebral_body_metastases"] = explicit_vertebral if explicit_vertebral is not None else (len(levels) or None)

    s["last_imaging_on"] = _max_date(
        (
            r
            for r in facts.imaging
            if r["modality"] in QUALIFYING_MODALITIES
            and (r["region"] in SPINE_REGIONS or r["modality"] in WHOLE_BODY_MODALITIES)
        ),
        "performed_on",
    )

    s["last_spine_sbrt_on"] = _max_date(
        (r for r in facts.treatments if r["modality"] in SPINE_SBRT_MODALITIES and r["level"]), "started_on"
    )
    separations = sorted(
        (r for r in facts.treatments if r["modality"] == "separation"), key=lambda r: (r["started_on"], r["id"])
    )
    s["separation_surgery_on"] = separations[-1]["started_on"] if separations else None
    s["separation_margin_mm"] = separations[-1]["separation_margin_mm"] if separations else None
    s["on_cancer_therapy"] = any(r["kind"] == "systemic" and r["ended_on"] is None for r in facts.treatments)

    s["sre_count"] = len(facts.events)
    s["last_sre_on"] = _max_date(facts.events, "occurred_on")

    active_conditions = [r for r in facts.locomo if r["resolved_on"] is None]
    types = {CONDITION_TYPE[LocomoCondition(r["condition"])] for r in active_conditions}
    s["locomo_types"] = sum(1 << (t - 1) for t in types)
    s["locomo_type2_without_plan"] = any(
        CONDITION_TYPE[LocomoCondition(r["condition"])] == 2 and not r["management_plan"] for r in active_conditions
    )
    s["locomo_type3_last_review_on"] = _max_date(
        (r for r in active_conditions if CONDITION_TYPE[LocomoCondition(r["condition"])] == 3),
        "orthopaedic_review_on",
    )
    s["board_decided_on"] = _max_date(facts.board, "decided_on")
    return s


_FACT_TABLES: tuple[tuple[str, Any], ...] = (
    ("performance", m.PerformanceStatus),
    ("neuro", m.NeuroStatus),
    ("labs", m.LabResult),
    ("metastatic", m.MetastaticStatus),
    ("lesions", m.SpinalLesion),
    ("imaging", m.ImagingStudy),
    ("bma", m.BmaAdministration),
    ("dental", m.DentalExam),
    ("treatments", m.Treatment),
    ("events", m.SkeletalEvent),
    ("locomo", m.LocomoConditionRecord),
    ("board", m.BoardCase),
)


def load_facts(session: Session, patient_ids: Sequence[int]) -> dict[int, PatientFacts]:
    facts = {pid: PatientFacts() for pid in patient_ids}
    for start in range(0, len(patient_ids), 500):
        chunk = list(patient_ids[start : start + 500])
        for attribute, model in _FACT_TABLES:
            table = model.__table__
            for row in session.execute(select(table).where(table.c.patient_id.in_(chunk))).mappings():
                getattr(facts[row["patient_id"]], attribute).append(dict(row))
    return facts


def refresh_patient_state(session: Session, patient_ids: Iterable[int]) -> None:
    """Recompute ``patient_state`` for these patients from their facts (same transaction)."""
    ids = sorted(set(patient_ids))
    if not ids:
        return
    facts = load_facts(session, ids)
    table = m.PatientState.__table__
    now = m.utcnow()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        session.execute(delete(table).where(table.c.patient_id.in_(chunk)))
        session.execute(
            insert(table),
            [dict(compute_state(facts[pid]), patient_id=pid, updated_at=now) for pid in chunk],
        )


def rebuild_all_states(engine, *, batch: int = 2000, progress=None) -> int:
    """Recompute ``patient_state`` for every patient from the facts (maintenance)."""
    from sqlalchemy import text

    from db.engine import write_session

    with engine.connect() as conn:
        ids = [row[0] for row in conn.execute(text("SELECT id FROM patient ORDER BY id"))]
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        with write_session(engine) as session:
            refresh_patient_state(session, chunk)
            session.add_all(m.RecomputeQueue(patient_id=pid) for pid in chunk)
        if progress:
            progress(min(start + batch, len(ids)), len(ids))
    return len(ids)
