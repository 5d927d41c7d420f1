"""Independent tests of the alert-rule engine against shared/surveillance-rules.md.

Every expectation below was written by hand from the document and the parameters
of ``default_rules.toml`` (intervals 42/91/182/365 days, lookbacks, thresholds,
severity weights 1000/100/10/0), as literal dates, with ``today`` injected.  None
is derived from the engine's code.

Conventions used to *build* inputs (field names and encodings only, from
``FRAME_FIELDS``): dates are ISO strings (None = unknown), possible totals are
bit masks, Bilsky is a rank (0, 1a, 1b, 1c, 2, 3 → 0..5; -1 = no known grade),
Cancer Locomo types are bits (type t → bit t-1).

Months: the document counts some windows in months (new lesion 6, post-SBRT 13,
fracture window 4) without saying how a month is counted.  Boundary dates here
are chosen where a calendar month and a mean month (30.44 days) give the same
day, so the tests hold under either reading:
  * 2025-10-01 + 6 months  = 2026-04-01 (182 days)
  * 2025-06-01 + 13 months = 2026-07-01 (395 days)
  * 2026-03-01 + 4 months  = 2026-07-01 (122 days)
"""

from __future__ import annotations

import random
from datetime import date, timedelta

import numpy as np
import pytest

from surveillance.rules.engine import FRAME_FIELDS, Frame, evaluate, implemented_rules, load_rules
from surveillance.rules.schema import DEFAULT_RULES_PATH, RuleFileError, parse_rules

RULES = load_rules()
SHIPPED_TEXT = DEFAULT_RULES_PATH.read_text(encoding="utf-8")

BILSKY = {"0": 0, "1a": 1, "1b": 2, "1c": 3, "2": 4, "3": 5}
WEIGHT = {"critical": 1000, "high": 100, "routine": 10, "info": 0}  # [severity_weights] of the shipped file

ALL_RULES = [
    "mscc-suspected",
    "spinal-pain-no-neuro",
    "escc-high-grade",
    "sins-unstable",
    "sins-potentially-unstable",
    "sins-kakutani-10",
    "sins-10-on-denosumab",
    "imaging-due-soon",
    "imaging-overdue",
    "post-sbrt-fracture-window",
    "bma-indicated-none",
    "bma-dose-overdue",
    "bma-predose-lab-missing",
    "bma-renal-hold",
    "bma-hypocalcaemia",
    "bma-dental-missing",
    "bma-stopped-denosumab",
    "ecog-decline",
    "ambulation-lost",
    "locomo-type2-untreated",
    "locomo-type3-overlooked",
    "board-candidate",
    "tes-candidate",
    "separation-margin-lt3mm",
    "prognosis-poor",
]


def m(*totals: int) -> int:
    """Bit mask of possible totals."""
    return sum(1 << t for t in totals)


def d(text: str) -> date:
    return date.fromisoformat(text)


def patient(**fields):
    record = {"patient_id": 1, "active": True, "registered_on": "2025-01-01"}
    record.update(fields)
    return record


def lesion(sins=(4,), bilsky="0", **more):
    """One active spinal lesion at T8 (SINS 4, Bilsky 0 unless given)."""
    fields = {
        "lesion_count": 1,
        "sins_worst_mask": m(*sins),
        "sins_worst_level": "T8",
        "bilsky_worst_rank": BILSKY[bilsky] if bilsky is not None else -1,
        "bilsky_worst_level": "T8",
        "bma_not_indicated": True,  # keeps bma-indicated-none out of tests about other rules
    }
    fields.update(more)
    return fields


def run(today: str, **fields):
    return evaluate(Frame.from_records([patient(**fields)]), RULES, d(today))


def fires(rule_id: str, today: str, **fields) -> bool:
    return bool(run(today, **fields).outputs[rule_id].fired[0])


def fired_set(ev, row: int = 0) -> set[str]:
    return {rule_id for rule_id in ALL_RULES if ev.outputs[rule_id].fired[row]}


def due_of(ev, row: int = 0) -> str | None:
    value = ev.next_imaging_due[row]
    return None if np.isnat(value) else str(value.astype("datetime64[D]"))


def recheck_of(ev, row: int = 0) -> str | None:
    value = ev.recheck_on[row]
    return None if np.isnat(value) else str(value.astype("datetime64[D]"))


def says_absent(evidence: dict, word: str) -> bool:
    """Some evidence text says that no ``word`` record exists."""
    return any(isinstance(v, str) and "no " in v.lower() and word in v.lower() for v in evidence.values())


# ===========================================================================
# 1. Tiers and the imaging clock
# ===========================================================================

# Last qualifying imaging 2026-01-01: +42 = 2026-02-12, +91 = 2026-04-02, +182 = 2026-07-02, +365 = 2027-01-01.
TIER_CASES = [
    ("SINS 10 possible", lesion(sins=(10,)), "high", "2026-02-12"),
    ("SINS 7 or 10 possible", lesion(sins=(7, 10)), "high", "2026-02-12"),
    ("SINS 18", lesion(sins=(18,)), "high", "2026-02-12"),
    ("SINS 9", lesion(sins=(9,)), "intermediate", "2026-04-02"),
    ("SINS 7", lesion(sins=(7,)), "intermediate", "2026-04-02"),
    ("SINS 6 or 7 possible", lesion(sins=(6, 7)), "intermediate", "2026-04-02"),
    ("SINS 6", lesion(sins=(6,)), "low", "2026-07-02"),
    ("SINS 0", lesion(sins=(0,)), "low", "2026-07-02"),
    ("Bilsky 1a", lesion(bilsky="1a"), "low", "2026-07-02"),
    ("Bilsky 1b", lesion(bilsky="1b"), "high", "2026-02-12"),
    ("Bilsky 1c", lesion(bilsky="1c"), "high", "2026-02-12"),
    ("Bilsky 3", lesion(bilsky="3"), "high", "2026-02-12"),
    ("a lesion with unknown Bilsky", lesion(bilsky_unknown=True), "intermediate", "2026-04-02"),
    ("unknown Bilsky but SINS 10", lesion(sins=(10,), bilsky_unknown=True), "high", "2026-02-12"),
    ("new lesion 2025-12-01", lesion(last_new_lesion_on="2025-12-01"), "intermediate", "2026-04-02"),
    ("SBRT 2025-09-01, SINS 4", lesion(last_spine_sbrt_on="2025-09-01"), "intermediate", "2026-04-02"),
    ("SBRT 2025-09-01, SINS 8", lesion(sins=(8,), last_spine_sbrt_on="2025-09-01"), "high", "2026-02-12"),
    ("SBRT 2025-09-01, Bilsky 1b", lesion(bilsky="1b", last_spine_sbrt_on="2025-09-01"), "high", "2026-02-12"),
    ("SBRT 2025-09-01, Bilsky 1a", lesion(bilsky="1a", last_spine_sbrt_on="2025-09-01"), "intermediate", "2026-04-02"),
    ("breast, no lesion", {"primary_site": "breast"}, "screening", "2027-01-01"),
    ("prostate, no lesion", {"primary_site": "prostate"}, "screening", "2027-01-01"),
    ("NSCLC, no lesion", {"primary_site": "lung_nsclc"}, "screening", "2027-01-01"),
    ("SCLC, no lesion", {"primary_site": "lung_sclc"}, "screening", "2027-01-01"),
    ("kidney, no lesion", {"primary_site": "kidney"}, "screening", "2027-01-01"),
    ("myeloma, no lesion", {"primary_site": "myeloma"}, "screening", "2027-01-01"),
    ("thyroid, no lesion", {"primary_site": "thyroid"}, "screening", "2027-01-01"),
    ("breast with a lesion is not screening", {"primary_site": "breast", **lesion()}, "low", "2026-07-02"),
    ("colon, no lesion", {"primary_site": "colon"}, "none", None),
    ("unknown primary site, no lesion", {"primary_site": None}, "none", None),
]


@pytest.mark.parametrize(("why", "fields", "tier", "due"), TIER_CASES, ids=[c[0] for c in TIER_CASES])
def test_tier_and_due_date(why, fields, tier, due):
    ev = run("2026-01-10", last_imaging_on="2026-01-01", **fields)
    assert ev.tier[0] == tier
    assert due_of(ev) == due


@pytest.mark.parametrize(
    ("today", "tier", "due"),
    [
        ("2026-03-31", "intermediate", "2026-05-31"),  # day 181 after the new lesion
        ("2026-04-01", "intermediate", "2026-05-31"),  # 6 months to the day: still "in the last 6 months"
        ("2026-04-02", "low", "2026-08-30"),  # one day past 6 months: imaging 2026-03-01 + 182
    ],
)
def test_new_lesion_keeps_intermediate_for_six_months(today, tier, due):
    ev = run(today, last_imaging_on="2026-03-01", **lesion(last_new_lesion_on="2025-10-01"))
    assert (ev.tier[0], due_of(ev)) == (tier, due)


@pytest.mark.parametrize(
    ("today", "tier", "due"),
    [
        ("2026-06-30", "high", "2026-07-27"),  # imaging 2026-06-15 + 42
        ("2026-07-01", "high", "2026-07-27"),  # 13 months after SBRT to the day
        ("2026-07-02", "intermediate", "2026-09-14"),  # past 13 months: SINS 8 alone is intermediate (+91)
    ],
)
def test_post_sbrt_high_risk_window_is_13_months(today, tier, due):
    ev = run(today, last_imaging_on="2026-06-15", **lesion(sins=(8,), last_spine_sbrt_on="2025-06-01"))
    assert (ev.tier[0], due_of(ev)) == (tier, due)


def test_after_sbrt_is_intermediate_even_after_13_months():
    # The document: intermediate = "SINS 7–9, or a new lesion in the last 6 months, or after SBRT" —
    # the 13-month limit is written only for the high tier.  SBRT 2024-01-15, SINS 4, Bilsky 0.
    ev = run("2026-01-10", last_imaging_on="2026-01-01", **lesion(last_spine_sbrt_on="2024-01-15"))
    assert ev.tier[0] == "intermediate"
    assert due_of(ev) == "2026-04-02"


def test_no_imaging_means_due_since_registration():
    ev = run("2026-01-10", registered_on="2025-03-01", **lesion())
    assert due_of(ev) == "2025-03-01"
    assert ev.outputs["imaging-overdue"].fired[0]
    assert ev.severity["imaging-overdue"][0] == "high"  # 315 days overdue, past +30
    decision = ev.decision("imaging-overdue", 0)
    assert decision.evidence_key == "2025-03-01"
    assert says_absent(decision.evidence, "imaging")


def test_screening_patient_without_imaging_is_due_since_registration():
    ev = run("2025-03-20", registered_on="2025-03-01", primary_site="prostate")
    assert ev.tier[0] == "screening"
    assert due_of(ev) == "2025-03-01"
    assert ev.outputs["imaging-overdue"].fired[0]
    assert ev.severity["imaging-overdue"][0] == "routine"  # 19 days overdue


def _everything_fires():
    """A patient who would fire most rules if active (today 2026-03-20)."""
    return {
        "primary_site": "unknown_primary",
        "lesion_count": 2,
        "sins_worst_mask": m(13, 14),
        "sins_worst_level": "L1",
        "bilsky_worst_rank": BILSKY["3"],
        "bilsky_worst_level": "L1",
        "lesions_assessed_on": "2026-03-01",
        "mechanical_pain_on": "2026-03-10",
        "last_spine_sbrt_on": "2026-02-01",
        "tokuhashi_mask": m(10),
        "katagiri_mask": m(7, 8),
        "tes_screen": "positive",
        "ecog": 3,
        "previous_ecog": 1,
        "ecog_on": "2026-03-15",
        "frankel_grade": "C",
        "previous_frankel_grade": "E",
        "ambulatory_status": "non_ambulatory",
        "previous_ambulatory_status": "independent",
        "neuro_on": "2026-03-15",
        "new_deficit_on": "2026-03-15",
        "new_spinal_pain_on": "2026-03-14",
        "last_imaging_on": "2025-01-01",
        "bma_agent": "denosumab",
        "bma_first_on": "2025-06-01",
        "bma_last_on": "2026-01-20",
        "denosumab_last_on": "2026-01-20",
        "dental_before_first_bma": False,
        "calcium_mg_dl": 7.0,
        "calcium_on": "2026-02-01",
        "separation_surgery_on": "2026-02-10",
        "separation_margin_mm": 1.0,
        "locomo_types": 0b110,
        "locomo_type2_without_plan": True,
        "on_cancer_therapy": True,
        "last_sre_on": "2026-03-01",
    }


@pytest.mark.parametrize("status", ["deceased", "transferred", "on_hold"])
def test_inactive_patients_never_have_a_due_date_and_never_fire(status):
    # The frame carries activity as a flag; deceased, transferred and on-hold patients arrive inactive.
    active = run("2026-03-20", **_everything_fires())
    assert len(fired_set(active)) >= 15  # sanity: the same facts do fire when the patient is active
    ev = run("2026-03-20", **{**_everything_fires(), "active": False})
    assert due_of(ev) is None
    assert fired_set(ev) == set()
    assert ev.priority[0] == 0


# ===========================================================================
# 2. imaging-due-soon and imaging-overdue
# ===========================================================================

# Low tier, last imaging 2026-01-01 -> due 2026-07-02; due soon from 2026-06-18; high from 2026-08-01.
LOW = {"last_imaging_on": "2026-01-01", **lesion()}


@pytest.mark.parametrize(
    ("today", "soon", "overdue", "severity"),
    [
        ("2026-06-17", False, False, None),
        ("2026-06-18", True, False, None),  # 14 days before the due date
        ("2026-06-19", True, False, None),
        ("2026-07-01", True, False, None),
        ("2026-07-02", False, True, "routine"),  # the due date
        ("2026-07-03", False, True, "routine"),
        ("2026-07-31", False, True, "routine"),  # +29
        ("2026-08-01", False, True, "high"),  # +30
        ("2026-08-02", False, True, "high"),
    ],
)
def test_imaging_clock_boundaries(today, soon, overdue, severity):
    ev = run(today, **LOW)
    assert due_of(ev) == "2026-07-02"
    assert bool(ev.outputs["imaging-due-soon"].fired[0]) is soon
    assert bool(ev.outputs["imaging-overdue"].fired[0]) is overdue
    if soon:
        assert ev.severity["imaging-due-soon"][0] == "routine"
        assert ev.decision("imaging-due-soon", 0).evidence_key == "2026-07-02"
    if overdue:
        assert ev.severity["imaging-overdue"][0] == severity
        assert ev.decision("imaging-overdue", 0).evidence_key == "2026-07-02"


def test_imaging_episode_key_is_the_due_date():
    first = run("2026-07-10", **LOW).decision("imaging-overdue", 0)
    rerun = run("2026-07-20", **LOW).decision("imaging-overdue", 0)
    assert first.evidence_key == rerun.evidence_key == "2026-07-02"  # a re-run is the same episode
    # New imaging 2026-07-20 -> due 2027-01-18: a new episode.
    later = run("2027-01-18", **{**LOW, "last_imaging_on": "2026-07-20"})
    assert later.outputs["imaging-overdue"].fired[0]
    assert later.decision("imaging-overdue", 0).evidence_key == "2027-01-18"
    soon = run("2027-01-04", **{**LOW, "last_imaging_on": "2026-07-20"})
    assert soon.outputs["imaging-due-soon"].fired[0]
    assert soon.decision("imaging-due-soon", 0).evidence_key == "2027-01-18"


@pytest.mark.parametrize(
    ("fields", "due"),
    [
        (lesion(sins=(10,)), "2026-02-12"),  # high: +42, soon from 2026-01-29
        (lesion(sins=(8,)), "2026-04-02"),  # intermediate: +91, soon from 2026-03-19
        ({"primary_site": "kidney"}, "2027-01-01"),  # screening: +365, soon from 2026-12-18
    ],
)
def test_imaging_clock_per_tier(fields, due):
    soon_start = str(d(due) - timedelta(days=14))
    before = run(str(d(soon_start) - timedelta(days=1)), last_imaging_on="2026-01-01", **fields)
    at_start = run(soon_start, last_imaging_on="2026-01-01", **fields)
    at_due = run(due, last_imaging_on="2026-01-01", **fields)
    assert due_of(at_due) == due
    assert not before.outputs["imaging-due-soon"].fired[0]
    assert at_start.outputs["imaging-due-soon"].fired[0]
    assert at_due.outputs["imaging-overdue"].fired[0] and not at_due.outputs["imaging-due-soon"].fired[0]


def test_no_imaging_clock_for_tier_none():
    ev = run("2026-07-10", primary_site="colon", registered_on="2020-01-01")
    assert due_of(ev) is None
    assert not ev.outputs["imaging-overdue"].fired[0] and not ev.outputs["imaging-due-soon"].fired[0]


# ===========================================================================
# 3. The other rules
# ===========================================================================

# --- mscc-suspected (lookback 30 days) --------------------------------------


@pytest.mark.parametrize(
    ("trigger", "fields"),
    [
        ("new deficit", {"new_deficit_on": "{on}"}),
        ("pain suggestive", {"cord_compression_pain_on": "{on}"}),
        ("Frankel worsened", {"frankel_grade": "D", "previous_frankel_grade": "E", "neuro_on": "{on}"}),
    ],
)
@pytest.mark.parametrize(
    ("on", "expected"),
    [("2026-05-02", True), ("2026-05-01", True), ("2026-04-30", False)],  # 29 / 30 / 31 days before today
)
def test_mscc_suspected_lookback(trigger, fields, on, expected):
    filled = {k: v.format(on=on) if isinstance(v, str) else v for k, v in fields.items()}
    ev = run("2026-05-31", last_imaging_on="2026-03-01", **filled)
    assert bool(ev.outputs["mscc-suspected"].fired[0]) is expected
    if expected:
        assert ev.severity["mscc-suspected"][0] == "critical"
        assert ev.decision("mscc-suspected", 0).evidence_key == on


@pytest.mark.parametrize(
    ("imaging_on", "expected"),
    [("2026-05-19", True), ("2026-05-20", False), ("2026-05-21", False)],  # day before / of / after the event
)
def test_mscc_suspected_cleared_by_imaging_on_or_after_the_event(imaging_on, expected):
    assert fires("mscc-suspected", "2026-05-31", new_deficit_on="2026-05-20", last_imaging_on=imaging_on) is expected


@pytest.mark.parametrize(
    ("grade", "previous"),
    [("E", "E"), ("E", "D"), ("D", None), (None, "E"), ("A", "A")],
)
def test_mscc_not_from_frankel_unless_worsened(grade, previous):
    assert not fires(
        "mscc-suspected", "2026-05-31", frankel_grade=grade, previous_frankel_grade=previous, neuro_on="2026-05-25"
    )


def test_mscc_no_event_date_does_not_fire():
    assert not fires("mscc-suspected", "2026-05-31", frankel_grade="C", previous_frankel_grade="D", neuro_on=None)
    assert not fires("mscc-suspected", "2026-05-31")


# --- spinal-pain-no-neuro (lookback 30 days) ---------------------------------


@pytest.mark.parametrize(("on", "expected"), [("2026-05-02", True), ("2026-05-01", True), ("2026-04-30", False)])
def test_spinal_pain_lookback(on, expected):
    ev = run("2026-05-31", new_spinal_pain_on=on)
    assert bool(ev.outputs["spinal-pain-no-neuro"].fired[0]) is expected
    if expected:
        assert ev.severity["spinal-pain-no-neuro"][0] == "high"


def test_spinal_pain_cleared_by_later_imaging_and_superseded_by_mscc():
    assert fires("spinal-pain-no-neuro", "2026-05-31", new_spinal_pain_on="2026-05-20", last_imaging_on="2026-05-19")
    assert not fires(
        "spinal-pain-no-neuro", "2026-05-31", new_spinal_pain_on="2026-05-20", last_imaging_on="2026-05-21"
    )
    ev = run("2026-05-31", new_spinal_pain_on="2026-05-20", new_deficit_on="2026-05-22")
    assert ev.outputs["mscc-suspected"].fired[0]
    assert not ev.outputs["spinal-pain-no-neuro"].fired[0]


# --- escc-high-grade ---------------------------------------------------------


@pytest.mark.parametrize(
    ("grade", "expected"),
    [("0", False), ("1a", False), ("1b", False), ("1c", False), ("2", True), ("3", True), (None, False)],
)
def test_escc_high_grade(grade, expected):
    ev = run("2026-03-01", **lesion(bilsky=grade, bilsky_unknown=grade is None))
    assert bool(ev.outputs["escc-high-grade"].fired[0]) is expected
    if expected:
        assert ev.severity["escc-high-grade"][0] == "critical"
        assert ev.decision("escc-high-grade", 0).evidence["level"] == "T8"


# --- SINS rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("totals", "unstable", "potentially"),
    [
        ((), False, False),  # unknown
        ((5, 6), False, False),
        ((6, 7), False, True),
        ((7,), False, True),
        ((12,), False, True),
        ((11, 12), False, True),
        ((12, 13), True, False),  # unstable supersedes
        ((13,), True, False),
        ((18,), True, False),
        ((5, 14), True, False),
    ],
)
def test_sins_unstable_and_potentially_unstable(totals, unstable, potentially):
    ev = run("2026-03-01", **lesion(sins=totals))
    assert bool(ev.outputs["sins-unstable"].fired[0]) is unstable
    assert bool(ev.outputs["sins-potentially-unstable"].fired[0]) is potentially
    if unstable:
        assert ev.severity["sins-unstable"][0] == "high"
    if potentially:
        assert ev.severity["sins-potentially-unstable"][0] == "routine"


@pytest.mark.parametrize(
    ("sins", "tokuhashi", "katagiri", "expected"),
    [
        ((10,), (9,), (8,), True),  # Tokuhashi >= 9
        ((9,), (12,), (2,), False),  # SINS below 10
        ((8, 10), (12,), (2,), True),  # SINS 10 possible
        ((10,), (8,), (7,), False),  # neither prognosis allows >= 6 months
        ((10,), (8,), (6,), True),  # Katagiri <= 6
        ((10,), (8,), (6, 7), True),  # Katagiri 6 possible
        ((10,), (8, 9), (8,), True),  # Tokuhashi 9 possible
        ((10,), (), (8,), True),  # Tokuhashi uncomputable: does not exclude
        ((10,), (5,), (), True),  # Katagiri uncomputable: does not exclude
        ((10,), (), (), True),
        ((13,), (0,), (10,), False),
    ],
)
def test_sins_kakutani_10(sins, tokuhashi, katagiri, expected):
    ev = run("2026-03-01", **lesion(sins=sins, tokuhashi_mask=m(*tokuhashi), katagiri_mask=m(*katagiri)))
    assert bool(ev.outputs["sins-kakutani-10"].fired[0]) is expected
    if expected:
        assert ev.severity["sins-kakutani-10"][0] == "high"


@pytest.mark.parametrize(
    ("sins", "denosumab_last_on", "expected"),
    [
        ((10,), "2025-12-02", True),  # 89 days before 2026-03-01
        ((10,), "2025-12-01", True),  # 90 days
        ((10,), "2025-11-30", False),  # 91 days: no longer on denosumab
        ((9,), "2026-02-01", False),
        ((9, 10), "2026-02-01", True),
        ((10,), None, False),
    ],
)
def test_sins_10_on_denosumab(sins, denosumab_last_on, expected):
    ev = run("2026-03-01", **lesion(sins=sins, denosumab_last_on=denosumab_last_on, bma_agent="denosumab"))
    assert bool(ev.outputs["sins-10-on-denosumab"].fired[0]) is expected


# --- post-sbrt-fracture-window (4 months; high if SINS >= 7) ------------------


@pytest.mark.parametrize(
    ("today", "expected"),
    [("2026-06-30", True), ("2026-07-01", True), ("2026-07-02", False)],
)
def test_post_sbrt_fracture_window_is_four_months(today, expected):
    fields = lesion(last_spine_sbrt_on="2026-03-01", mechanical_pain_on="2026-04-10")
    assert fires("post-sbrt-fracture-window", today, **fields) is expected


@pytest.mark.parametrize(("sins", "severity"), [((6,), "routine"), ((7,), "high"), ((6, 7), "high")])
def test_post_sbrt_fracture_window_severity(sins, severity):
    ev = run("2026-04-20", **lesion(sins=sins, last_spine_sbrt_on="2026-03-01", mechanical_pain_on="2026-04-10"))
    assert ev.outputs["post-sbrt-fracture-window"].fired[0]
    assert ev.severity["post-sbrt-fracture-window"][0] == severity


@pytest.mark.parametrize("pain_on", ["2026-02-28", None])
def test_post_sbrt_needs_new_mechanical_pain_after_sbrt(pain_on):
    assert not fires(
        "post-sbrt-fracture-window", "2026-04-20", **lesion(last_spine_sbrt_on="2026-03-01", mechanical_pain_on=pain_on)
    )


def test_post_sbrt_pain_on_the_day_of_sbrt_counts():
    assert fires(
        "post-sbrt-fracture-window",
        "2026-04-20",
        **lesion(last_spine_sbrt_on="2026-03-01", mechanical_pain_on="2026-03-01"),
    )


# --- bma-indicated-none -------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"lesion_count": 1}, True),
        ({"extraspinal_bone_metastases": 2}, True),
        ({"extraspinal_bone_metastases": None}, False),  # unknown is not a bone metastasis
        ({"extraspinal_bone_metastases": 0}, False),
        ({"lesion_count": 1, "bma_first_on": "2025-01-01"}, False),
        ({"lesion_count": 1, "bma_not_indicated": True}, False),
        # Excluded only when Katagiri is certainly 7-10 and Tokuhashi certainly 0-8.
        ({"lesion_count": 1, "katagiri_mask": m(7), "tokuhashi_mask": m(8)}, False),
        ({"lesion_count": 1, "katagiri_mask": m(10), "tokuhashi_mask": m(0)}, False),
        ({"lesion_count": 1, "katagiri_mask": m(7, 8), "tokuhashi_mask": m(3, 5)}, False),
        ({"lesion_count": 1, "katagiri_mask": m(6, 7), "tokuhashi_mask": m(8)}, True),
        ({"lesion_count": 1, "katagiri_mask": m(7), "tokuhashi_mask": m(8, 9)}, True),
        ({"lesion_count": 1, "katagiri_mask": m(7)}, True),  # Tokuhashi unknown
        ({"lesion_count": 1, "tokuhashi_mask": m(5)}, True),  # Katagiri unknown
        ({"lesion_count": 1, "katagiri_mask": m(6), "tokuhashi_mask": m(5)}, True),
    ],
)
def test_bma_indicated_none(fields, expected):
    ev = run("2026-03-01", **fields)
    assert bool(ev.outputs["bma-indicated-none"].fired[0]) is expected
    if expected:
        assert ev.severity["bma-indicated-none"][0] == "high"


# --- bma-dose-overdue -------------------------------------------------------------
# Last dose 2026-01-01: +35 = 02-05, +49 = 02-19, +90 = 04-01, +91 = 04-02, +105 = 04-16, +182 = 07-02.


def _on_bma(agent, last="2026-01-01", regimen=None, **more):
    fields = {
        "extraspinal_bone_metastases": 1,
        "bma_agent": agent,
        "bma_first_on": "2025-06-01",
        "bma_last_on": last,
        "zoledronic_regimen": regimen,
        "dental_before_first_bma": True,
        "dental_last_on": last,
    }
    if agent == "denosumab":
        fields["denosumab_last_on"] = last
    if agent == "zoledronic_acid":
        fields["zoledronic_first_on"] = "2025-06-01"
    fields.update(more)
    return fields


# Overdue after more than N days; the document's "high at +2 weeks" is read as more than N + 14 days,
# symmetric with "> N days" (the document does not say whether day N + 14 itself is escalated).
DOSE_CASES = [
    ("denosumab", None, "2026-02-05", None),  # day 35
    ("denosumab", None, "2026-02-06", "routine"),  # day 36
    ("denosumab", None, "2026-02-19", "routine"),  # day 49
    ("denosumab", None, "2026-02-20", "high"),  # day 50
    ("denosumab", None, "2026-04-01", "high"),  # day 90
    ("denosumab", None, "2026-04-02", None),  # day 91: counts as stopped
    ("zoledronic_acid", "q4w", "2026-02-05", None),
    ("zoledronic_acid", "q4w", "2026-02-06", "routine"),
    ("zoledronic_acid", "q4w", "2026-02-20", "high"),
    ("zoledronic_acid", "q4w", "2026-04-01", "high"),
    ("zoledronic_acid", "q4w", "2026-04-02", None),
    ("zoledronic_acid", None, "2026-02-05", None),  # unknown regimen = q4w
    ("zoledronic_acid", None, "2026-02-06", "routine"),
    ("zoledronic_acid", None, "2026-02-20", "high"),
    ("zoledronic_acid", None, "2026-04-02", None),
    ("zoledronic_acid", "q12w", "2026-04-02", None),  # day 91
    ("zoledronic_acid", "q12w", "2026-04-03", "routine"),  # day 92
    ("zoledronic_acid", "q12w", "2026-04-16", "routine"),  # day 105
    ("zoledronic_acid", "q12w", "2026-04-17", "high"),  # day 106
    ("zoledronic_acid", "q12w", "2026-07-02", "high"),  # day 182
    ("zoledronic_acid", "q12w", "2026-07-03", None),  # day 183: counts as stopped
]


@pytest.mark.parametrize(("agent", "regimen", "today", "severity"), DOSE_CASES)
def test_bma_dose_overdue(agent, regimen, today, severity):
    ev = run(today, **_on_bma(agent, regimen=regimen))
    assert bool(ev.outputs["bma-dose-overdue"].fired[0]) is (severity is not None)
    if severity:
        assert ev.severity["bma-dose-overdue"][0] == severity
        decision = ev.decision("bma-dose-overdue", 0)
        assert decision.evidence_key == "2026-01-01"
        if agent == "zoledronic_acid" and regimen is None:
            assert "assumed" in decision.evidence["regimen"]


def test_bma_dose_overdue_denosumab_stops_at_90_days_whatever_the_stored_zoledronic_regimen():
    # A patient switched from zoledronic acid q12w to denosumab keeps "q12w" as the stored zoledronic
    # regimen.  Denosumab counts as stopped after 90 days (stopped_after_days); q12w's 182 is for zoledronic acid.
    ev = run("2026-04-11", **_on_bma("denosumab", regimen="q12w"))  # day 100
    assert not ev.outputs["bma-dose-overdue"].fired[0]
    assert ev.outputs["bma-stopped-denosumab"].fired[0]


def test_bma_dose_overdue_unknown_last_dose_does_not_fire():
    assert not fires("bma-dose-overdue", "2026-04-01", **_on_bma("denosumab", last=None))


# --- bma-predose-lab-missing -----------------------------------------------------
# Denosumab / zoledronic q4w: last dose 2026-03-01 -> next dose 2026-03-29 (28 days); window 03-22 .. 04-12.
# Zoledronic q12w: last dose 2026-03-01 -> next dose 2026-05-24 (84 days); window 05-17 .. 06-07.


@pytest.mark.parametrize(
    ("agent", "regimen", "today", "expected", "next_dose"),
    [
        ("denosumab", None, "2026-03-21", False, "2026-03-29"),
        ("denosumab", None, "2026-03-22", True, "2026-03-29"),
        ("denosumab", None, "2026-03-23", True, "2026-03-29"),
        ("denosumab", None, "2026-04-12", True, "2026-03-29"),
        ("denosumab", None, "2026-04-13", False, "2026-03-29"),
        ("zoledronic_acid", "q4w", "2026-03-21", False, "2026-03-29"),
        ("zoledronic_acid", "q4w", "2026-03-22", True, "2026-03-29"),
        ("zoledronic_acid", None, "2026-03-22", True, "2026-03-29"),  # unknown regimen = q4w
        ("zoledronic_acid", "q4w", "2026-04-12", True, "2026-03-29"),
        ("zoledronic_acid", "q4w", "2026-04-13", False, "2026-03-29"),
        ("zoledronic_acid", "q12w", "2026-05-16", False, "2026-05-24"),
        ("zoledronic_acid", "q12w", "2026-05-17", True, "2026-05-24"),
        ("zoledronic_acid", "q12w", "2026-06-07", True, "2026-05-24"),
        ("zoledronic_acid", "q12w", "2026-06-08", False, "2026-05-24"),
    ],
)
def test_bma_predose_lab_window(agent, regimen, today, expected, next_dose):
    ev = run(today, **_on_bma(agent, last="2026-03-01", regimen=regimen))
    assert bool(ev.outputs["bma-predose-lab-missing"].fired[0]) is expected
    if expected:
        assert ev.severity["bma-predose-lab-missing"][0] == "high"
        decision = ev.decision("bma-predose-lab-missing", 0)
        assert decision.evidence_key == next_dose
        assert decision.evidence["test_needed"] == ("calcium" if agent == "denosumab" else "creatinine")


@pytest.mark.parametrize(
    ("lab_on", "expected"),
    [("2026-03-09", False), ("2026-03-08", False), ("2026-03-07", True), (None, True)],  # 13 / 14 / 15 days
)
def test_bma_predose_lab_within_14_days(lab_on, expected):
    today = "2026-03-22"
    den = _on_bma("denosumab", last="2026-03-01", calcium_on=lab_on, calcium_mg_dl=9.0, creatinine_on="2026-03-20")
    assert fires("bma-predose-lab-missing", today, **den) is expected  # a creatinine does not count for denosumab
    za = _on_bma(
        "zoledronic_acid", last="2026-03-01", creatinine_on=lab_on, creatinine_mg_dl=1.0, calcium_on="2026-03-20"
    )
    assert fires("bma-predose-lab-missing", today, **za) is expected  # a calcium does not count for zoledronic acid


# --- bma-renal-hold ------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "creatinine", "expected"),
    [
        (1.0, 1.4, False),
        (1.0, 1.5, True),  # +0.5 from a normal baseline
        (1.0, 1.6, True),
        (0.9, 1.3, False),
        (0.9, 1.4, True),  # +0.5 from a normal baseline
        (0.9, 1.5, True),
        (1.4, 1.8, False),  # 1.4 is still a normal baseline
        (1.4, 1.9, True),
        (1.5, 1.9, False),  # abnormal baseline: +1.0 needed
        (1.5, 2.4, False),
        (1.5, 2.5, True),
        (1.5, 2.6, True),
        (1.8, 2.7, False),
        (1.8, 2.8, True),  # +1.0 from an abnormal baseline
        (1.8, 2.9, True),
        (None, 3.0, False),  # unknown baseline
        (1.0, None, False),  # unknown creatinine
    ],
)
def test_bma_renal_hold(baseline, creatinine, expected):
    fields = _on_bma(
        "zoledronic_acid",
        last="2026-02-20",
        creatinine_baseline_mg_dl=baseline,
        creatinine_mg_dl=creatinine,
        creatinine_on="2026-03-01",
    )
    ev = run("2026-03-02", **fields)
    assert bool(ev.outputs["bma-renal-hold"].fired[0]) is expected
    if expected:
        assert ev.severity["bma-renal-hold"][0] == "high"


def test_bma_renal_hold_only_on_zoledronic_acid_and_after_its_start():
    den = _on_bma("denosumab", creatinine_baseline_mg_dl=1.0, creatinine_mg_dl=2.0, creatinine_on="2026-03-01")
    assert not fires("bma-renal-hold", "2026-03-02", **den)
    before_start = _on_bma(
        "zoledronic_acid",
        creatinine_baseline_mg_dl=1.0,
        creatinine_mg_dl=2.0,
        creatinine_on="2025-05-01",
        zoledronic_first_on="2025-06-01",
    )
    assert not fires("bma-renal-hold", "2026-03-02", **before_start)


# --- bma-hypocalcaemia: Ca + 0.8 x (4.0 - albumin) < 8.0 ------------------------------


@pytest.mark.parametrize(
    ("calcium", "albumin", "expected", "corrected"),
    [
        (7.9, None, True, 7.9),  # measured calcium when albumin is unknown
        (8.0, None, False, 8.0),
        (8.1, None, False, 8.1),
        (7.1, 3.0, True, 7.9),  # 7.1 + 0.8
        (7.2, 3.0, False, 8.0),
        (7.3, 3.0, False, 8.1),
        (8.3, 4.5, True, 7.9),  # 8.3 - 0.4
        (8.4, 4.5, False, 8.0),
        (9.1, 5.5, True, 7.9),  # 9.1 - 1.2
        (9.2, 5.5, False, 8.0),
        (7.6, 4.0, True, 7.6),
        (None, 3.0, False, None),
    ],
)
def test_bma_hypocalcaemia(calcium, albumin, expected, corrected):
    fields = _on_bma(
        "denosumab", last="2026-03-01", calcium_mg_dl=calcium, albumin_g_dl=albumin, calcium_on="2026-03-18"
    )
    ev = run("2026-03-20", **fields)
    assert bool(ev.outputs["bma-hypocalcaemia"].fired[0]) is expected
    if expected:
        assert ev.severity["bma-hypocalcaemia"][0] == "critical"
        assert ev.decision("bma-hypocalcaemia", 0).evidence["corrected_calcium_mg_dl"] == pytest.approx(corrected)


@pytest.mark.parametrize(
    ("denosumab_last_on", "expected"),
    [("2025-12-21", True), ("2025-12-20", True), ("2025-12-19", False), (None, False)],  # 89 / 90 / 91 days
)
def test_bma_hypocalcaemia_only_on_denosumab(denosumab_last_on, expected):
    fields = {"calcium_mg_dl": 7.0, "calcium_on": "2026-03-18", "denosumab_last_on": denosumab_last_on}
    assert fires("bma-hypocalcaemia", "2026-03-20", bma_agent="denosumab", **fields) is expected


# --- bma-dental-missing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("before_first", "dental_last_on", "expected"),
    [
        (True, "2025-09-20", False),  # 181 days before 2026-03-20
        (True, "2025-09-19", False),  # 182 days: within the 6-month review interval
        (True, "2025-09-18", True),  # 183 days
        (False, None, True),  # no dental examination at all
        (False, "2025-06-01", True),
        (None, "2026-01-10", False),  # unknown "before first dose", recent review: nothing missing
    ],
)
def test_bma_dental_missing(before_first, dental_last_on, expected):
    fields = _on_bma(
        "zoledronic_acid", last="2026-03-01", dental_before_first_bma=before_first, dental_last_on=dental_last_on
    )
    ev = run("2026-03-20", **fields)
    assert bool(ev.outputs["bma-dental-missing"].fired[0]) is expected
    if expected:
        assert ev.severity["bma-dental-missing"][0] == "routine"


@pytest.mark.parametrize(("last_dose", "expected"), [("2025-12-21", True), ("2025-12-20", True), ("2025-12-19", False)])
def test_bma_dental_missing_only_on_therapy(last_dose, expected):
    # on_drug_within_days = 90: 89 / 90 / 91 days before 2026-03-20
    fields = _on_bma("denosumab", last=last_dose, dental_before_first_bma=True, dental_last_on="2025-01-01")
    assert fires("bma-dental-missing", "2026-03-20", **fields) is expected


@pytest.mark.parametrize("before_first", [False, None])
def test_bma_dental_missing_evidence_says_no_exam_recorded(before_first):
    # Absence is the finding: with no dental examination on record the evidence must say so
    # (not that a review is "older than the interval", which presumes one exists).
    fields = _on_bma("denosumab", last="2026-03-01", dental_before_first_bma=before_first, dental_last_on=None)
    ev = run("2026-03-20", **fields)
    assert ev.outputs["bma-dental-missing"].fired[0]
    assert says_absent(ev.decision("bma-dental-missing", 0).evidence, "dental")


# --- bma-stopped-denosumab --------------------------------------------------------------


@pytest.mark.parametrize(
    ("today", "fields", "expected"),
    [
        ("2026-04-01", {}, False),  # 90 days after 2026-01-01
        ("2026-04-02", {}, True),  # 91 days
        ("2026-04-03", {}, True),
        ("2026-06-01", {"denosumab_transition_plan": True}, False),
        ("2026-06-01", {"bma_agent": "zoledronic_acid", "bma_last_on": "2026-05-01"}, False),  # switched
        ("2026-06-01", {"denosumab_last_on": None, "bma_last_on": None}, False),
    ],
)
def test_bma_stopped_denosumab(today, fields, expected):
    ev = run(today, **{**_on_bma("denosumab"), **fields})
    assert bool(ev.outputs["bma-stopped-denosumab"].fired[0]) is expected
    if expected:
        assert ev.severity["bma-stopped-denosumab"][0] == "high"
        assert ev.decision("bma-stopped-denosumab", 0).evidence_key == "2026-01-01"


# --- ecog-decline ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "now", "expected"),
    [
        (0, 1, True),  # worse by 1
        (1, 2, True),  # worse and crossing 1 -> 2
        (0, 2, True),
        (2, 3, True),
        (3, 4, True),
        (1, 1, False),
        (2, 1, False),
        (3, 2, False),
        (None, 3, False),  # no previous record: unknown is not a decline
        (1, None, False),
    ],
)
def test_ecog_decline(previous, now, expected):
    ev = run("2026-03-10", ecog=now, previous_ecog=previous, ecog_on="2026-03-01")
    assert bool(ev.outputs["ecog-decline"].fired[0]) is expected
    if expected:
        assert ev.severity["ecog-decline"][0] == "high"


@pytest.mark.parametrize(("today", "expected"), [("2026-05-29", True), ("2026-05-30", True), ("2026-05-31", False)])
def test_ecog_decline_within_90_days(today, expected):
    assert fires("ecog-decline", today, ecog=2, previous_ecog=1, ecog_on="2026-03-01") is expected


# --- ambulation-lost -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "now", "expected"),
    [
        ("independent", "with_assistance", True),
        ("independent", "non_ambulatory", True),
        ("with_aid", "with_assistance", True),
        ("with_aid", "non_ambulatory", True),
        ("with_assistance", "non_ambulatory", True),  # "falls to ... non_ambulatory"
        ("independent", "with_aid", False),
        ("independent", "independent", False),
        ("with_assistance", "with_assistance", False),
        ("non_ambulatory", "with_assistance", False),  # improved
        (None, "non_ambulatory", False),  # no previous status: not a fall we can see
        ("independent", None, False),
    ],
)
def test_ambulation_lost(previous, now, expected):
    ev = run("2026-03-10", ambulatory_status=now, previous_ambulatory_status=previous, neuro_on="2026-03-01")
    assert bool(ev.outputs["ambulation-lost"].fired[0]) is expected
    if expected:
        assert ev.severity["ambulation-lost"][0] == "high"


@pytest.mark.parametrize(("today", "expected"), [("2026-05-29", True), ("2026-05-30", True), ("2026-05-31", False)])
def test_ambulation_lost_within_90_days(today, expected):
    fields = {"ambulatory_status": "with_assistance", "previous_ambulatory_status": "independent"}
    assert fires("ambulation-lost", today, neuro_on="2026-03-01", **fields) is expected


# --- Cancer Locomo -------------------------------------------------------------------


@pytest.mark.parametrize(("without_plan", "expected"), [(True, True), (False, False)])
def test_locomo_type2_untreated(without_plan, expected):
    ev = run("2026-03-01", locomo_types=0b010, locomo_type2_without_plan=without_plan)
    assert bool(ev.outputs["locomo-type2-untreated"].fired[0]) is expected
    if expected:
        assert ev.severity["locomo-type2-untreated"][0] == "routine"


@pytest.mark.parametrize(
    ("types", "on_therapy", "review_on", "today", "expected"),
    [
        (0b100, True, "2025-03-01", "2026-02-28", False),  # review 364 days ago
        (0b100, True, "2025-03-01", "2026-03-01", False),  # 365 days: within 12 months
        (0b100, True, "2025-03-01", "2026-03-02", True),  # 366 days
        (0b100, True, None, "2026-03-01", True),  # never reviewed
        (0b100, False, None, "2026-03-01", False),  # not on cancer therapy
        (0b011, True, None, "2026-03-01", False),  # no type-3 condition
        (0b111, True, None, "2026-03-01", True),
    ],
)
def test_locomo_type3_overlooked(types, on_therapy, review_on, today, expected):
    ev = run(today, locomo_types=types, on_cancer_therapy=on_therapy, locomo_type3_last_review_on=review_on)
    assert bool(ev.outputs["locomo-type3-overlooked"].fired[0]) is expected


# --- board-candidate ---------------------------------------------------------------


BOARD_TRIGGERS = [
    ("SINS 7 possible", lesion(sins=(6, 7), lesions_assessed_on="2026-03-01"), True),
    ("SINS 6", lesion(sins=(6,), lesions_assessed_on="2026-03-01"), False),
    ("Bilsky 2", lesion(bilsky="2", lesions_assessed_on="2026-03-01"), True),
    ("Bilsky 1c", lesion(bilsky="1c", lesions_assessed_on="2026-03-01"), False),
    ("new SRE", {"last_sre_on": "2026-03-01"}, True),
    ("ECOG decline", {"ecog": 2, "previous_ecog": 1, "ecog_on": "2026-03-01"}, True),
    ("ECOG unchanged", {"ecog": 1, "previous_ecog": 1, "ecog_on": "2026-03-01"}, False),
    (
        "unknown primary with bone metastasis",
        {"primary_site": "unknown_primary", "extraspinal_bone_metastases": 1},
        True,
    ),
    ("unknown primary with a spinal lesion", {"primary_site": "unknown_primary", **lesion()}, True),
    ("unknown primary without bone metastasis", {"primary_site": "unknown_primary"}, False),
    ("TES screen positive", {"tes_screen": "positive", "lesions_assessed_on": "2026-03-01"}, True),
    ("TES screen selected (Tomita 4-5)", {"tes_screen": "selected", "lesions_assessed_on": "2026-03-01"}, True),
    ("TES screen negative", {"tes_screen": "negative"}, False),
    ("TES screen undetermined", {"tes_screen": "undetermined"}, False),
    ("nothing", {}, False),
]


@pytest.mark.parametrize(("why", "fields", "expected"), BOARD_TRIGGERS, ids=[t[0] for t in BOARD_TRIGGERS])
def test_board_candidate_triggers(why, fields, expected):
    ev = run("2026-03-10", registered_on="2026-02-01", **fields)
    assert bool(ev.outputs["board-candidate"].fired[0]) is expected
    if expected:
        assert ev.severity["board-candidate"][0] == "routine"


@pytest.mark.parametrize(("today", "expected"), [("2026-05-29", True), ("2026-05-30", True), ("2026-05-31", False)])
def test_board_candidate_new_sre_is_90_days(today, expected):
    assert fires("board-candidate", today, last_sre_on="2026-03-01") is expected


@pytest.mark.parametrize(
    ("decided_on", "expected"),
    # A decision the same day as the trigger closes it: the document says the board's recorded decision
    # closes the candidate and does not order events within a day; the engine counts same-day as after.
    [("2026-02-28", True), ("2026-03-01", False), ("2026-03-02", False), (None, True)],
)
def test_board_decision_after_the_trigger_silences_it(decided_on, expected):
    fields = lesion(sins=(8,), lesions_assessed_on="2026-03-01", board_decided_on=decided_on)
    assert fires("board-candidate", "2026-03-10", **fields) is expected


def test_board_newer_trigger_brings_it_back_as_a_new_episode():
    base = lesion(sins=(8,), lesions_assessed_on="2026-03-01", board_decided_on="2026-03-02")
    assert not fires("board-candidate", "2026-03-20", **base)
    ev = run("2026-03-20", **{**base, "last_sre_on": "2026-03-15"})
    assert ev.outputs["board-candidate"].fired[0]
    key = ev.decision("board-candidate", 0).evidence_key
    assert "2026-03-15" in key
    # Once more: a decision after the SRE silences it again.
    assert not fires(
        "board-candidate", "2026-03-20", **{**base, "last_sre_on": "2026-03-15", "board_decided_on": "2026-03-16"}
    )


# --- tes-candidate, separation margin, prognosis -----------------------------------


@pytest.mark.parametrize(
    ("screen", "expected"),
    [("positive", True), ("selected", True), ("negative", False), ("undetermined", False), (None, False)],
)
def test_tes_candidate(screen, expected):
    assert fires("tes-candidate", "2026-03-01", tes_screen=screen) is expected


@pytest.mark.parametrize(("margin", "expected"), [(2.9, True), (3.0, False), (3.1, False), (0.0, True), (None, False)])
def test_separation_margin_lt3mm(margin, expected):
    ev = run("2026-03-10", separation_surgery_on="2026-03-01", separation_margin_mm=margin)
    assert bool(ev.outputs["separation-margin-lt3mm"].fired[0]) is expected
    if expected:
        assert ev.severity["separation-margin-lt3mm"][0] == "high"
        assert ev.decision("separation-margin-lt3mm", 0).evidence_key == "2026-03-01"


@pytest.mark.parametrize(
    ("katagiri", "expected"),
    [((7,), True), ((7, 8), True), ((10,), True), ((6,), False), ((6, 7), False), ((0, 10), False), ((), False)],
)
def test_prognosis_poor_only_when_certain(katagiri, expected):
    ev = run("2026-03-01", katagiri_mask=m(*katagiri))
    assert bool(ev.outputs["prognosis-poor"].fired[0]) is expected
    if expected:
        assert ev.severity["prognosis-poor"][0] == "info"


# ===========================================================================
# 4. Unknown is never a negative finding
# ===========================================================================


def test_a_patient_with_nothing_known_fires_nothing_but_the_clock():
    # Every field unknown except identity, activity and registration; primary site unknown -> tier none.
    ev = run("2026-03-01")
    assert fired_set(ev) == set()
    assert due_of(ev) is None


def test_unknown_values_do_not_fire_rules_that_need_them():
    ev = run(
        "2026-03-20",
        lesion_count=1,
        sins_worst_mask=0,
        bilsky_worst_rank=-1,
        bilsky_unknown=True,
        bma_not_indicated=True,
        last_imaging_on="2026-03-01",
        ecog=None,
        previous_ecog=None,
        ecog_on="2026-03-10",
        frankel_grade=None,
        previous_frankel_grade=None,
        neuro_on="2026-03-10",
        separation_surgery_on="2026-03-01",
        separation_margin_mm=None,
        calcium_mg_dl=None,
        calcium_on=None,
        denosumab_last_on="2026-03-01",
        bma_agent="denosumab",
        bma_first_on="2026-03-01",
        bma_last_on="2026-03-01",
        dental_before_first_bma=True,
        dental_last_on="2026-02-20",
    )
    silent = {
        "escc-high-grade",
        "sins-unstable",
        "sins-potentially-unstable",
        "sins-kakutani-10",
        "sins-10-on-denosumab",
        "ecog-decline",
        "mscc-suspected",
        "separation-margin-lt3mm",
        "bma-hypocalcaemia",
        "prognosis-poor",
        "bma-dental-missing",
    }
    assert fired_set(ev) & silent == set()
    # An unknown Bilsky grade is not taken as low grade for the tier.
    assert ev.tier[0] == "intermediate"


# ===========================================================================
# 5. Priority and recheck_on, by hand
# ===========================================================================


def test_priority_is_the_sum_of_the_weights_by_hand():
    fields = {
        "primary_site": "breast",
        "lesions_assessed_on": "2026-05-01",
        "last_imaging_on": "2026-05-01",  # high tier -> due 2026-06-12
        "katagiri_mask": m(7, 8),
        "tokuhashi_mask": m(5),
        **lesion(sins=(13,), bilsky="2"),
        "bma_not_indicated": False,  # excluded anyway: Katagiri certainly >= 7 and Tokuhashi certainly <= 8
    }
    ev = run("2026-06-20", **fields)
    expected = {"escc-high-grade", "sins-unstable", "imaging-overdue", "board-candidate", "prognosis-poor"}
    assert fired_set(ev) == expected
    # critical 1000 + high 100 + overdue routine 10 + board routine 10 + info 0
    assert ev.priority[0] == 1120
    # The escalation of the overdue imaging at due + 30 is the only clock-driven change ahead.
    assert recheck_of(ev) == "2026-07-12"

    escalated = run("2026-07-12", **fields)
    assert fired_set(escalated) == expected
    assert escalated.severity["imaging-overdue"][0] == "high"
    assert escalated.priority[0] == 1210
    assert recheck_of(escalated) is None


def test_priority_counts_every_severity_from_the_file():
    ev = run("2026-03-20", **_everything_fires())
    expected = sum(WEIGHT[ev.severity[r][0]] for r in fired_set(ev))
    assert ev.priority[0] == expected


def test_recheck_on_low_tier_is_the_day_imaging_becomes_due_soon():
    ev = run("2026-05-01", **LOW)
    assert fired_set(ev) == set()
    assert ev.priority[0] == 0
    assert recheck_of(ev) == "2026-06-18"
    soon = run("2026-06-18", **LOW)
    assert recheck_of(soon) == "2026-07-02"  # becomes overdue
    overdue = run("2026-07-10", **LOW)
    assert overdue.priority[0] == 10
    assert recheck_of(overdue) == "2026-08-01"  # escalates


def test_recheck_on_denosumab_patient_by_hand():
    # Denosumab 2026-05-01, calcium 2026-05-20 (9.2 mg/dL), dental fine, no lesion, colon (tier none), today 2026-05-22.
    # Next dose 2026-05-29, lab window 05-22..06-12; the calcium is recent until 06-03, so the lab alert
    # opens on 2026-06-04; the dose becomes overdue on 2026-06-06 (day 36).
    fields = _on_bma("denosumab", last="2026-05-01", calcium_mg_dl=9.2, calcium_on="2026-05-20", primary_site="colon")
    ev = run("2026-05-22", **fields)
    assert fired_set(ev) == set()
    assert recheck_of(ev) == "2026-06-04"
    later = run("2026-06-04", **fields)
    assert fired_set(later) == {"bma-predose-lab-missing"}
    assert later.priority[0] == 100
    assert recheck_of(later) == "2026-06-06"


@pytest.mark.parametrize(
    ("why", "fields", "today", "next_change"),
    [
        (
            # Intermediate because of a lesion new on 2025-10-01; imaging 2025-12-01 -> due 2026-03-02, high from
            # 2026-04-01.  On 2026-04-02 the lesion is no longer new: low tier, due 2026-06-01, not overdue.
            "new lesion ages out",
            {"last_imaging_on": "2025-12-01", **lesion(last_new_lesion_on="2025-10-01")},
            "2026-04-01",
            "2026-04-02",
        ),
        (
            # High because SINS 8 within 13 months of SBRT (2025-06-01); imaging 2026-04-01 -> due 2026-05-13.
            # On 2026-07-02 the tier is intermediate: due 2026-07-01, a new, not yet escalated episode.
            "post-SBRT window ends",
            {"last_imaging_on": "2026-04-01", **lesion(sins=(8,), last_spine_sbrt_on="2025-06-01")},
            "2026-06-20",
            "2026-07-02",
        ),
    ],
)
def test_recheck_on_includes_the_day_the_tier_changes(why, fields, today, next_change):
    now = run(today, **fields)
    then = run(next_change, **fields)
    # The outcome changes on next_change (checked directly) ...
    assert (now.tier[0], due_of(now)) != (then.tier[0], due_of(then))
    # ... so recheck_on must not be later than that day (an incremental run would keep a stale tier and alert).
    assert recheck_of(now) == next_change


def test_recheck_on_includes_the_end_of_on_therapy_for_the_dental_rule():
    # Zoledronic acid q12w, last dose 2026-06-01, no dental examination ever; creatinine 2026-08-20.
    # Dental alert: on therapy until 2026-08-30 (90 days), so it stops on 2026-08-31.  Other clock dates:
    # creatinine stale 2026-09-04, dose overdue 2026-09-01 (day 92), lab window ends 2026-09-07.
    fields = _on_bma(
        "zoledronic_acid",
        last="2026-06-01",
        regimen="q12w",
        dental_before_first_bma=False,
        dental_last_on=None,
        creatinine_on="2026-08-20",
        creatinine_mg_dl=0.9,
        primary_site="colon",
    )
    now = run("2026-08-26", **fields)
    assert fired_set(now) == {"bma-dental-missing"}
    assert fired_set(run("2026-08-31", **fields)) == set()
    assert recheck_of(now) == "2026-08-31"


# ===========================================================================
# 6. The rule file is validated
# ===========================================================================


def test_the_shipped_file_loads_with_every_rule_of_the_document():
    rules = parse_rules(SHIPPED_TEXT, known_rules=implemented_rules())
    assert {r.id for r in rules.rules} == set(ALL_RULES)
    assert rules.severity_weights == WEIGHT
    assert load_rules().digest == rules.digest


def _mutated(old: str, new: str) -> str:
    assert SHIPPED_TEXT.count(old) == 1, old
    return SHIPPED_TEXT.replace(old, new)


def _block(rule_id: str) -> str:
    start = SHIPPED_TEXT.index(f'[[rule]]\nid = "{rule_id}"')
    end = SHIPPED_TEXT.index("\n\n", start)
    return SHIPPED_TEXT[start:end]


BAD_FILES = [
    (
        "unknown rule key",
        _mutated('id = "sins-unstable"\n', 'id = "sins-unstable"\ncolour = "red"\n'),
        ["sins-unstable", "colour"],
    ),
    (
        "unknown parameter",
        _mutated("params = { min_sins = 13 }", "params = { min_sins = 13, max_sinz = 18 }"),
        ["sins-unstable", "max_sinz"],
    ),
    ("missing parameter", _mutated("params = { min_sins = 13 }", "params = {}"), ["sins-unstable", "min_sins"]),
    (
        "string threshold",
        _mutated("params = { min_sins = 13 }", 'params = { min_sins = "13" }'),
        ["sins-unstable", "min_sins"],
    ),
    (
        "true as a number",
        _mutated("params = { min_sins = 13 }", "params = { min_sins = true }"),
        ["sins-unstable", "min_sins"],
    ),
    (
        "true as a float",
        _mutated("margin_below_mm = 3.0", "margin_below_mm = true"),
        ["separation-margin-lt3mm", "margin_below_mm"],
    ),
    (
        "string float",
        _mutated("margin_below_mm = 3.0", 'margin_below_mm = "3.0"'),
        ["separation-margin-lt3mm", "margin_below_mm"],
    ),
    (
        "unknown severity",
        _mutated(
            'id = "escc-high-grade"\nversion = "1"\nseverity = "critical"',
            'id = "escc-high-grade"\nversion = "1"\nseverity = "urgent"',
        ),
        ["escc-high-grade", "severity"],
    ),
    (
        "unknown escalated severity",
        _mutated('escalated_severity = "high" }\n', 'escalated_severity = "urgent" }\n'),
        ["imaging-overdue", "escalated_severity"],
    ),
    (
        "verify not a boolean",
        _mutated(
            'source = "Tomita 1997; the review\'s criteria"\nverify = true',
            'source = "Tomita 1997; the review\'s criteria"\nverify = "yes"',
        ),
        ["tes-candidate", "verify"],
    ),
    ("duplicate id", SHIPPED_TEXT + "\n" + _block("tes-candidate") + "\n", ["tes-candidate", "duplicate"]),
    (
        "rule the engine does not implement",
        SHIPPED_TEXT
        + "\n"
        + _block("tes-candidate").replace('id = "tes-candidate"', 'id = "surgery-contraindication-screen"')
        + "\n",
        ["surgery-contraindication-screen"],
    ),
    (
        "tier interval as a string",
        _mutated("high_interval_days = 42", 'high_interval_days = "42"'),
        ["tiers", "high_interval_days"],
    ),
    (
        "tier interval true",
        _mutated("low_interval_days = 182", "low_interval_days = true"),
        ["tiers", "low_interval_days"],
    ),
    (
        "unknown tier key",
        _mutated("new_lesion_months = 6\n", "new_lesion_months = 6\nnew_lesion_weeks = 26\n"),
        ["tiers", "new_lesion_weeks"],
    ),
    ("missing tier key", _mutated("screening_interval_days = 365 ", "# "), ["tiers", "screening_interval_days"]),
    ("severity weight true", _mutated("high = 100", "high = true"), ["severity_weights", "high"]),
]


@pytest.mark.parametrize(("why", "text", "names"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_rule_files_are_refused_naming_the_rule_and_the_field(why, text, names):
    assert text != SHIPPED_TEXT
    with pytest.raises(RuleFileError) as caught:
        parse_rules(text, known_rules=implemented_rules())
    message = str(caught.value)
    for name in names:
        assert name in message, (why, message)


def test_a_missing_rule_is_refused():
    text = SHIPPED_TEXT.replace(_block("tes-candidate"), "")
    with pytest.raises(RuleFileError, match="tes-candidate"):
        parse_rules(text, known_rules=implemented_rules())


def test_an_integer_for_a_float_parameter_is_accepted():
    text = _mutated("margin_below_mm = 3.0", "margin_below_mm = 3")
    rules = parse_rules(text, known_rules=implemented_rules())
    assert rules.rule("separation-margin-lt3mm").params["margin_below_mm"] == 3.0


def test_edited_thresholds_take_effect():
    # Sites change thresholds by editing data: a 60-day high-tier interval moves the due date.
    rules = parse_rules(_mutated("high_interval_days = 42", "high_interval_days = 60"), known_rules=implemented_rules())
    ev = evaluate(
        Frame.from_records([patient(last_imaging_on="2026-01-01", **lesion(sins=(10,)))]), rules, d("2026-01-10")
    )
    assert due_of(ev) == "2026-03-02"


# ===========================================================================
# 7. One vectorised evaluation equals row-by-row evaluation
# ===========================================================================

SITES = [
    "breast",
    "prostate",
    "lung_nsclc",
    "lung_sclc",
    "kidney",
    "myeloma",
    "thyroid",
    "colon",
    "unknown_primary",
    None,
]
LEVELS = ["C5", "T8", "L2", None]


def _random_mask(rng: random.Random, top: int) -> int:
    kind = rng.random()
    if kind < 0.15:
        return 0
    if kind < 0.6:
        return 1 << rng.randint(0, top)
    low = rng.randint(0, top)
    high = rng.randint(low, top)
    return m(*range(low, high + 1))


def _random_record(rng: random.Random, pid: int, today: date) -> dict:
    def day(lo: int, hi: int = 0, p_unknown: float = 0.3):
        if rng.random() < p_unknown:
            return None
        return (today + timedelta(days=rng.randint(lo, hi))).isoformat()

    def pick(*options):
        return rng.choice(options)

    agent = pick(None, "denosumab", "zoledronic_acid")
    bma_last = day(-200) if agent else None
    record = {
        "patient_id": pid,
        "active": rng.random() < 0.85,
        "registered_on": day(-1500, -1, 0.05),
        "primary_site": rng.choice(SITES),
        "lesion_count": pick(0, 0, 1, 2, 4),
        "extraspinal_bone_metastases": pick(None, 0.0, 1.0, 6.0),
        "sins_worst_mask": _random_mask(rng, 18),
        "sins_worst_level": rng.choice(LEVELS),
        "bilsky_worst_rank": rng.randint(-1, 5),
        "bilsky_worst_level": rng.choice(LEVELS),
        "bilsky_unknown": rng.random() < 0.2,
        "lesions_assessed_on": day(-300),
        "mechanical_pain_on": day(-200),
        "last_new_lesion_on": day(-400),
        "tokuhashi_mask": _random_mask(rng, 15),
        "katagiri_mask": _random_mask(rng, 10),
        "tes_screen": pick(None, "positive", "selected", "negative", "undetermined"),
        "ecog": pick(None, 0.0, 1.0, 2.0, 3.0, 4.0),
        "previous_ecog": pick(None, 0.0, 1.0, 2.0, 3.0, 4.0),
        "ecog_on": day(-150),
        "frankel_grade": pick(None, "A", "B", "C", "D", "E"),
        "previous_frankel_grade": pick(None, "A", "B", "C", "D", "E"),
        "ambulatory_status": pick(None, "independent", "with_aid", "with_assistance", "non_ambulatory"),
        "previous_ambulatory_status": pick(None, "independent", "with_aid", "with_assistance", "non_ambulatory"),
        "neuro_on": day(-150),
        "new_deficit_on": day(-60, 0, 0.6),
        "cord_compression_pain_on": day(-60, 0, 0.7),
        "new_spinal_pain_on": day(-60, 0, 0.6),
        "last_imaging_on": day(-500),
        "last_spine_sbrt_on": day(-600, 0, 0.6),
        "bma_agent": agent,
        "bma_first_on": day(-900, -200) if agent else None,
        "bma_last_on": bma_last,
        "denosumab_last_on": bma_last if agent == "denosumab" else day(-400, 0, 0.8),
        "zoledronic_first_on": day(-900, -200) if agent == "zoledronic_acid" else None,
        "zoledronic_regimen": pick(None, "q4w", "q12w"),
        "bma_not_indicated": rng.random() < 0.15,
        "denosumab_transition_plan": rng.random() < 0.2,
        "dental_before_first_bma": pick(None, True, False) if agent else None,
        "dental_last_on": day(-400),
        "creatinine_mg_dl": pick(None, 0.8, 0.9, 1.3, 1.4, 1.5, 1.9, 2.5, 3.0),
        "creatinine_on": day(-40),
        "creatinine_baseline_mg_dl": pick(None, 0.9, 1.0, 1.4, 1.5),
        "calcium_mg_dl": pick(None, 7.0, 7.9, 8.0, 8.5, 9.5),
        "calcium_on": day(-40),
        "albumin_g_dl": pick(None, 2.5, 3.5, 4.0, 4.5),
        "separation_surgery_on": day(-300, 0, 0.7),
        "separation_margin_mm": pick(None, 1.0, 2.9, 3.0, 5.0),
        "locomo_types": rng.randint(0, 7),
        "locomo_type2_without_plan": rng.random() < 0.3,
        "locomo_type3_last_review_on": day(-700),
        "on_cancer_therapy": rng.random() < 0.5,
        "last_sre_on": day(-200),
        "board_decided_on": day(-200),
    }
    return record


def _as_str(value) -> str:
    return str(value)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorised_evaluation_equals_row_by_row(seed):
    rng = random.Random(seed)
    today = date(2026, 6, 15) + timedelta(days=rng.randint(0, 200))
    records = [_random_record(rng, pid, today) for pid in range(1, 251)]
    assert set(records[0]) == set(FRAME_FIELDS)  # the generator exercises every field
    batch = evaluate(Frame.from_records(records), RULES, today)
    assert batch.priority.sum() > 0 and any(batch.outputs[r].fired.any() for r in ALL_RULES)
    for row, record in enumerate(records):
        alone = evaluate(Frame.from_records([record]), RULES, today)
        assert alone.tier[0] == batch.tier[row]
        assert _as_str(alone.next_imaging_due[0]) == _as_str(batch.next_imaging_due[row])
        assert _as_str(alone.recheck_on[0]) == _as_str(batch.recheck_on[row])
        assert alone.priority[0] == batch.priority[row]
        for rule_id in ALL_RULES:
            fired = bool(alone.outputs[rule_id].fired[0])
            assert fired == bool(batch.outputs[rule_id].fired[row]), (rule_id, record)
            if fired:
                assert alone.decision(rule_id, 0) == batch.decision(rule_id, row), (rule_id, record)


def test_every_rule_fires_somewhere_in_the_random_population():
    # Guards the equivalence test against a generator that never reaches a rule.
    rng = random.Random(7)
    today = date(2026, 7, 1)
    records = [_random_record(rng, pid, today) for pid in range(1, 1501)]
    batch = evaluate(Frame.from_records(records), RULES, today)
    never = [r for r in ALL_RULES if not batch.outputs[r].fired.any()]
    assert never == []


# ===========================================================================
# 8. In one batch, each patient's alerts carry that patient's own evidence
# ===========================================================================
# The engine renders keys and evidence only for the rows that fire; these batches
# mix patients that fire with patients that do not, in every row position.


def batch_of(today: str, *records: dict):
    rows = [patient(patient_id=pid, **fields) for pid, fields in enumerate(records, start=1)]
    return evaluate(Frame.from_records(rows), RULES, d(today))


def totals_in(text: str) -> set[int]:
    return {int(t) for t in text.split(",")}


def test_sins_alerts_in_a_batch_name_each_patients_level_and_possible_totals():
    ev = batch_of(
        "2026-03-01",
        {},  # no spinal lesion
        lesion(sins=(12, 13), sins_worst_level="L2", tokuhashi_mask=m(9)),  # 13 possible: unstable
        lesion(sins=(8,)),  # T8, SINS 8: potentially unstable
        {**lesion(sins=(13,)), "active": False},
    )
    assert [bool(x) for x in ev.outputs["sins-unstable"].fired] == [False, True, False, False]
    # SINS 7-12 is superseded by the unstable alert for the same lesion.
    assert [bool(x) for x in ev.outputs["sins-potentially-unstable"].fired] == [False, False, True, False]
    unstable = ev.decision("sins-unstable", 1)
    assert unstable.patient_id == 2 and unstable.severity == "high"
    assert unstable.evidence["level"] == "L2"
    assert totals_in(unstable.evidence["worst_sins_possible_totals"]) == {12, 13}
    assert "L2" in unstable.evidence_key
    potentially = ev.decision("sins-potentially-unstable", 2)
    assert potentially.patient_id == 3 and potentially.severity == "routine"
    assert potentially.evidence["level"] == "T8"
    assert totals_in(potentially.evidence["worst_sins_possible_totals"]) == {8}
    assert "T8" in potentially.evidence_key
    # SINS >= 10 possible and Tokuhashi 9 (expected survival >= 6 months): the Kakutani alert, same lesion.
    kakutani = ev.decision("sins-kakutani-10", 1)
    assert totals_in(kakutani.evidence["tokuhashi_possible_totals"]) == {9}
    assert not ev.outputs["sins-kakutani-10"].fired[[0, 2, 3]].any()


def test_overdue_imaging_escalates_per_patient_in_one_batch():
    # Low tier (182 days).  Today 2026-07-12:
    #   A: imaging 2026-01-01 -> due 2026-07-02, 10 days overdue -> routine
    #   B: imaging 2025-12-01 -> due 2026-06-01, 41 days overdue (>= 30) -> high
    #   C: imaging 2026-06-01 -> due 2026-11-30, not even due soon
    ev = batch_of(
        "2026-07-12",
        {**lesion(), "last_imaging_on": "2026-01-01"},
        {**lesion(), "last_imaging_on": "2025-12-01"},
        {**lesion(), "last_imaging_on": "2026-06-01"},
    )
    overdue = ev.outputs["imaging-overdue"]
    assert [bool(x) for x in overdue.fired] == [True, True, False]
    a, b = ev.decision("imaging-overdue", 0), ev.decision("imaging-overdue", 1)
    assert (a.severity, a.evidence_key, a.evidence["days_overdue"]) == ("routine", "2026-07-02", 10)
    assert (b.severity, b.evidence_key, b.evidence["days_overdue"]) == ("high", "2026-06-01", 41)
    assert a.evidence["due_on"] == "2026-07-02" and b.evidence["due_on"] == "2026-06-01"
    assert not ev.outputs["imaging-due-soon"].fired.any()
    assert list(ev.priority) == [WEIGHT["routine"], WEIGHT["high"], 0]
    assert list(ev.critical_count) == [0, 0, 0]


def test_board_candidate_names_every_reason_that_applies_and_dates_the_latest():
    ev = batch_of(
        "2026-03-10",
        # SINS 8 (>= 7), Bilsky 2, TES positive, all assessed 2026-03-01; then a new SRE on 2026-03-05.
        {
            **lesion(sins=(8,), bilsky="2", lesions_assessed_on="2026-03-01"),
            "tes_screen": "positive",
            "last_sre_on": "2026-03-05",
        },
        {},  # nothing for the board
        {"ecog": 2, "previous_ecog": 1, "ecog_on": "2026-03-02"},  # ECOG decline only
    )
    assert [bool(x) for x in ev.outputs["board-candidate"].fired] == [True, False, True]
    several = ev.decision("board-candidate", 0)
    reasons = [r.strip() for r in several.evidence["reasons"].split(";")]
    assert len(reasons) == 4
    assert any("SINS" in r for r in reasons) and any("Bilsky" in r for r in reasons)
    assert any("TES" in r for r in reasons) and any("skeletal" in r.lower() or "SRE" in r for r in reasons)
    assert not any("ECOG" in r or "unknown primary" in r for r in reasons)
    assert several.evidence["since"] == "2026-03-05"  # the latest trigger, the SRE
    assert "2026-03-05" in several.evidence_key
    ecog_only = ev.decision("board-candidate", 2)
    only = ecog_only.evidence["reasons"].split(";")
    assert len(only) == 1 and "ECOG" in only[0]
    assert ecog_only.evidence["since"] == "2026-03-02"


def test_mscc_evidence_says_which_event_fired_it_for_each_patient():
    ev = batch_of(
        "2026-03-10",
        {"new_deficit_on": "2026-03-05"},
        {},
        {"frankel_grade": "D", "previous_frankel_grade": "E", "neuro_on": "2026-03-06"},
        {"cord_compression_pain_on": "2026-03-07"},
    )
    assert [bool(x) for x in ev.outputs["mscc-suspected"].fired] == [True, False, True, True]
    deficit, frankel, pain = (ev.decision("mscc-suspected", row) for row in (0, 2, 3))
    assert "deficit" in deficit.evidence["trigger"] and deficit.evidence["recorded_on"] == "2026-03-05"
    assert "Frankel" in frankel.evidence["trigger"] and frankel.evidence["recorded_on"] == "2026-03-06"
    assert (frankel.evidence["frankel_grade"], frankel.evidence["previous_frankel_grade"]) == ("D", "E")
    assert "cord compression" in pain.evidence["trigger"] and pain.evidence["recorded_on"] == "2026-03-07"
    assert [x.evidence_key for x in (deficit, frankel, pain)] == ["2026-03-05", "2026-03-06", "2026-03-07"]
    assert all(x.severity == "critical" for x in (deficit, frankel, pain))
    # No imaging recorded: the evidence does not invent one.
    assert "last_imaging_on" not in deficit.evidence


def test_caseload_reasons_list_the_title_of_every_alert_and_nothing_else():
    ev = batch_of("2026-03-20", {}, _everything_fires(), LOW)
    fired = fired_set(ev, 1)
    assert len(fired) >= 10
    titles = {RULES.rule(rule_id).title for rule_id in fired}
    assert set(ev.reasons[1].split("; ")) == titles
    assert ev.open_count[1] == len(fired)
    assert ev.critical_count[1] == sum(ev.severity[r][1] == "critical" for r in fired)
    assert ev.reasons[2] == "" and ev.open_count[2] == 0 and ev.priority[2] == 0
