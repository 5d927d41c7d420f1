"""LMNOP summary (Paton GR, Frangou E, Fourney DR. Can J Neurol Sci 2011;38:396–403;
extended with SINS by Ivanishvili Z, Fourney DR. Global Spine J 2014;4:129–136).

LMNOP is a principles-based framework, **not a points score** [V]; the review's
"Paton 2019" date is wrong: the original is 2011 [DISC §18.19].  The axis
contents are the published ones; the dashboard rule on each axis is an
implementation convention [CONV] (clinical-reference §10).  Thresholds such as
"life expectancy > 3 months for surgery" are common practice, not LMNOP text.
"""

from __future__ import annotations

from surveillance.scoring.noms import RADIOSENSITIVITY, radiosensitivities
from surveillance.scoring.performance_status import has_neurological_deficit
from surveillance.scoring.tes import spinal_blocks
from surveillance.scoring.vocab import BilskyGrade, Frankel, PrimarySite

TABLE_VERSION = "lmnop-2011+2014/1"
CITATION = "Paton 2011 (Can J Neurol Sci 38:396); Ivanishvili & Fourney 2014 (Global Spine J 4:129)"

_MECHANICAL_RULE = {
    "stable": "no stabilization",
    "potentially_unstable": "surgical consultation",
    "unstable": "stabilization (open or percutaneous), or vertebral augmentation for a painful body fracture without neural compression",
}
_ONCOLOGY_RULE = {
    "sensitive": "radiosensitive: cEBRT",
    "resistant": "radioresistant: SRS (or surgery followed by SRS)",
}


def compute_lmnop(
    *,
    sites: tuple[PrimarySite, ...],
    lesion_levels: list[tuple],
    sins_categories: list[tuple[str, ...]],
    bilsky_grades: list[BilskyGrade | None],
    frankel_grade: Frankel | None,
    fit_for_surgery: bool | None,
) -> dict:
    blocks = spinal_blocks(lesion_levels)
    location = {
        "levels": [lv.value for block in blocks for lv in block],
        "contiguous_blocks": [[lv.value for lv in block] for block in blocks],
        "skip_lesions": len(blocks) > 1,
        "multilevel_contiguous": any(len(block) > 1 for block in blocks),
        "rule": "Multilevel contiguous disease may limit SRS or en-bloc surgery."
        if any(len(b) > 1 for b in blocks)
        else "",
    }
    worst = set()
    order = ["stable", "potentially_unstable", "unstable"]
    for categories in sins_categories:
        worst.add(max(categories, key=order.index) if categories else None)
    worst_known = [c for c in worst if c]
    mechanical = {
        "worst_sins_category": sorted(worst_known, key=order.index),
        "rule": "; ".join(_MECHANICAL_RULE[c] for c in sorted(worst_known, key=order.index)),
    }
    grades = [g for g in bilsky_grades if g is not None]
    high = any(g in (BilskyGrade.G2, BilskyGrade.G3) for g in grades)
    deficit = None if frankel_grade is None else has_neurological_deficit(frankel_grade)
    neuro_rule = ""
    if deficit and high and fit_for_surgery:
        neuro_rule = "Deficit with high-grade ESCC in a fit patient: urgent decompression (± stabilization) then radiotherapy; radiotherapy alone may be chosen for a very radiosensitive histology."
    neurology = {
        "frankel_grade": None if frankel_grade is None else frankel_grade.value,
        "neurological_deficit": deficit,
        "high_grade_escc": high if grades else None,
        "rule": neuro_rule,
    }
    sens = sorted({s for site in sites for s in radiosensitivities(site)})
    oncology = {
        "radiosensitivity": sens,
        "classified": bool(sites) and all(site in RADIOSENSITIVITY for site in sites),
        "rule": "; ".join(_ONCOLOGY_RULE[s] for s in sens),
    }
    patient = {
        "fit_for_surgery": fit_for_surgery,
        "rule": (
            "Unfit or refusing surgery: non-operative pathway."
            if fit_for_surgery is False
            else "Fitness for surgery not recorded."
            if fit_for_surgery is None
            else "Fit: every option open; weigh prognosis and wishes."
        ),
    }
    return {
        "location": location,
        "mechanical": mechanical,
        "neurology": neurology,
        "oncology": oncology,
        "patient": patient,
        "not_a_score": True,
        "citation": CITATION,
        "table_version": TABLE_VERSION,
    }
