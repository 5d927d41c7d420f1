"""Frameworks and definitions, from clinical-reference §10–§13 (written from the text)."""

from datetime import date

import pytest

from surveillance.locomo import ConditionRecord, LocomoCondition, compute_locomo_types
from surveillance.scoring import score_case
from surveillance.scoring.sre import SreType, is_sre
from surveillance.scoring.wbb import compute_wbb_options


# §12: core = fracture (vertebral/non-vertebral), cord compression, RT to bone, surgery to bone;
# extended = core + hypercalcaemia of malignancy.
@pytest.mark.parametrize(
    ("event", "core", "extended"),
    [
        ("pathological_fracture_vertebral", True, True),
        ("pathological_fracture_non_vertebral", True, True),
        ("spinal_cord_compression", True, True),
        ("radiation_to_bone", True, True),
        ("surgery_to_bone", True, True),
        ("hypercalcaemia_of_malignancy", False, True),
        ("antineoplastic_change_for_bone_pain", False, False),
    ],
)
def test_sre_definitions(event, core, extended):
    assert is_sre(event, "core") is core
    assert is_sre(SreType(event), "extended") is extended


# §13: type 1 cancer itself, type 2 treatment, type 3 concurrent; several at once.
def test_locomo_types_several_at_once():
    assert compute_locomo_types(["bone_metastasis", "lymphoedema", "osteoarthritis"]) == (1, 2, 3)
    assert compute_locomo_types(["cachexia", "bone_or_soft_tissue_sarcoma"]) == (1,)
    assert compute_locomo_types(["secondary_osteoporosis"]) == (2,)
    assert compute_locomo_types(["osteoporosis"]) == (3,)  # primary osteoporosis is concurrent disease
    assert compute_locomo_types([]) == ()


def test_locomo_respects_condition_dates():
    records = [
        ConditionRecord(LocomoCondition.CHEMOTHERAPY_INDUCED_PERIPHERAL_NEUROPATHY, date(2026, 1, 1), date(2026, 6, 1)),
        ConditionRecord(LocomoCondition.LUMBAR_SPINAL_CANAL_STENOSIS, date(2026, 3, 1)),
    ]
    assert compute_locomo_types(records, on=date(2026, 2, 1)) == (2,)
    assert compute_locomo_types(records, on=date(2026, 4, 1)) == (2, 3)
    assert compute_locomo_types(records, on=date(2026, 7, 1)) == (3,)


def test_unknown_locomo_condition_is_refused():
    with pytest.raises(ValueError):
        compute_locomo_types(["back_pain"])


# §11.2, Boriani original: vertebrectomy 4–8 or 5–9; sagittal 3–5 or 8–10; posterior arch 10–3.
def _procedures(zones, numbering="boriani_clockwise", source="Boriani 1997"):
    options = compute_wbb_options(tuple(zones), numbering)["options"]
    return {o["procedure"] for o in options if o["source"] == source}


def test_wbb_boriani_patterns():
    assert "vertebrectomy (en-bloc body resection, TES-type)" in _procedures([5, 6, 7])
    assert _procedures([4, 5, 6, 7, 8, 9]) == set()  # wider than 4–8 and 5–9
    assert _procedures([3, 4]) == {"sagittal en-bloc resection"}
    assert _procedures([11, 12, 1]) == {"posterior arch resection"}


def test_wbb_review_zones_kept_beside_boriani():
    # The review's sagittal zones 2–5 accept zone 2, Boriani's 3–5 do not.
    assert _procedures([2, 4], source="review") >= {"sagittal en-bloc resection"}
    assert _procedures([2, 4]) == set()
    # COPPER 7–12 is the figure legend's range only.
    review = compute_wbb_options((7, 9), "boriani_clockwise")["options"]
    assert [o["zones"] for o in review if o["procedure"] == "COPPER"] == ["7–12"]


def test_wbb_sosg_numbering_is_mirrored_before_the_rules():
    # SOSG counts counter-clockwise: its zones 9–10 are the original 3–4.
    assert compute_wbb_options((9, 10), "sosg_counterclockwise")["zones_original_numbering"] == [3, 4]
    assert _procedures([9, 10], "sosg_counterclockwise") == {"sagittal en-bloc resection"}


BASE = {
    "primary_site": "kidney",
    "ecog": 0,
    "kps": 90,
    "visceral_metastases": {"status": "none", "treatable": None, "removable": None},
    "brain_metastases": False,
    "extraspinal_bone_metastases": 0,
    "vertebral_body_metastases": 1,
    "frankel_grade": "E",
    "previous_chemotherapy": False,
    "albumin_g_dl": 4.0,
    "crp_mg_dl": 0.1,
    "ldh_u_l": 180,
    "platelets_per_ul": 250000,
    "calcium_mg_dl": 9.5,
    "total_bilirubin_mg_dl": 0.5,
    "spinal_lesions": [{"level": "L2", "bilsky_escc": "0"}],
}


def test_tes_screen_positive_for_a_solitary_renal_metastasis():
    # Kidney (moderate 2) + no visceral 0 + solitary 1 = Tomita 3; Tokuhashi 15 -> survival >= 1 year.
    result = score_case(BASE)
    assert result["tomita"]["total"] == 3
    assert result["tes_screen"]["result"] == "positive"


def test_tes_screen_negative_for_poor_performance_or_histology():
    assert score_case(dict(BASE, ecog=3, kps=40))["tes_screen"]["criteria"]["ecog_0_1"] == "not_met"
    assert score_case(dict(BASE, ecog=3, kps=40))["tes_screen"]["result"] == "negative"
    assert score_case(dict(BASE, primary_site="pancreas"))["tes_screen"]["result"] == "negative"


def test_tes_screen_more_than_three_contiguous_levels():
    case = dict(
        BASE, vertebral_body_metastases=4, spinal_lesions=[{"level": "L1", "level_span": ["L1", "L2", "L3", "L4"]}]
    )
    assert score_case(case)["tes_screen"]["criteria"]["solitary_or_le3_contiguous"] == "not_met"


def test_lmnop_is_a_summary_not_a_score():
    case = dict(
        BASE,
        fit_for_surgery=True,
        frankel_grade="C",
        spinal_lesions=[{"level": "T4", "bilsky_escc": "3"}, {"level": "L2"}],
    )
    lmnop = score_case(case)["lmnop"]
    assert lmnop["not_a_score"] is True
    assert lmnop["location"]["skip_lesions"] is True
    assert lmnop["neurology"]["neurological_deficit"] is True and lmnop["neurology"]["high_grade_escc"] is True
    assert "decompression" in lmnop["neurology"]["rule"]
    assert lmnop["oncology"]["radiosensitivity"] == ["resistant"]  # renal (§9.1)
