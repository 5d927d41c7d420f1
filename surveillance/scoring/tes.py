"""Total en-bloc spondylectomy (TES) indication screen (clinical-reference §11.3).

Technique: Tomita K et al., Spine 1997;22:324–333.  The criteria are the review's,
shown as a **screen, not a rule**: solitary spinal metastasis or ≤ 3 contiguous
levels; expected survival > 1–2 years; favourable histology (renal, thyroid,
breast, prostate); ECOG 0–1; Tomita 2–3, or selected cases with Tomita 4–5.
Only the Tomita band is from a primary source [V2]; the other thresholds are as
stated in the review [R].

"Expected survival > 1–2 years" is read from the prognostic scores the product
already has, as an implementation convention [CONV]: met when revised Tokuhashi
is 12–15 (predicted survival ≥ 1 year) or new Katagiri is low (1-year survival
91%, 2-year 78%); not met when both say otherwise.

Each criterion is ``met`` / ``not_met`` / ``unknown``; the screen is
``positive`` (all met, Tomita 2–3), ``selected`` (all met, Tomita 4–5),
``negative`` (any not met) or ``undetermined``.
"""

from __future__ import annotations

from surveillance.scoring.performance_status import kps_to_ecog
from surveillance.scoring.vocab import LEVEL_ORDER, PrimarySite

TABLE_VERSION = "tes-screen-review/1"
CITATION = "Tomita K et al. Spine 1997;22(3):324–333; criteria as stated in the review"
FAVOURABLE_SITES = frozenset({PrimarySite.KIDNEY, PrimarySite.THYROID, PrimarySite.BREAST, PrimarySite.PROSTATE})
MAX_CONTIGUOUS_LEVELS = 3

MET, NOT_MET, UNKNOWN = "met", "not_met", "unknown"


def _tri(values: set[bool]) -> str:
    if values == {True}:
        return MET
    if values == {False}:
        return NOT_MET
    return UNKNOWN


def spinal_blocks(level_sets: list[tuple]) -> list[list]:
    """Group the lesions' levels into contiguous blocks, cranio-caudal."""
    levels = sorted({lv for levels in level_sets for lv in levels}, key=LEVEL_ORDER.__getitem__)
    blocks: list[list] = []
    for lv in levels:
        if blocks and LEVEL_ORDER[lv] == LEVEL_ORDER[blocks[-1][-1]] + 1:
            blocks[-1].append(lv)
        else:
            blocks.append([lv])
    return blocks


def spinal_extent_criterion(levels_covered: int, first_position: int | None, last_position: int | None) -> str:
    """ "Solitary spinal metastasis or ≤ 3 contiguous levels" from the spread of the lesions.

    ``levels_covered`` is the number of distinct levels the lesions cover and
    the positions are the cranio-caudal indexes of the first and last of them;
    the disease is one block when it has no gap.
    """
    if levels_covered == 0 or first_position is None or last_position is None:
        return UNKNOWN
    one_block = last_position - first_position + 1 == levels_covered
    return MET if one_block and levels_covered <= MAX_CONTIGUOUS_LEVELS else NOT_MET


def extent_of(lesion_levels: list[tuple]) -> str:
    positions = sorted({LEVEL_ORDER[lv] for levels in lesion_levels for lv in levels})
    if not positions:
        return UNKNOWN
    return spinal_extent_criterion(len(positions), positions[0], positions[-1])


def survival_criterion(tokuhashi_totals: tuple[int, ...], katagiri_totals: tuple[int, ...]) -> str:
    """Met if either score says long survival; an unavailable score could say so."""
    if not tokuhashi_totals and not katagiri_totals:
        return UNKNOWN
    tokuhashi_says = {t >= 12 for t in tokuhashi_totals} or {True, False}
    katagiri_says = {k <= 3 for k in katagiri_totals} or {True, False}
    return _tri({t or k for t in tokuhashi_says for k in katagiri_says})


def histology_criterion(sites: tuple[PrimarySite, ...]) -> str:
    return _tri({s in FAVOURABLE_SITES for s in sites}) if sites else UNKNOWN


def performance_criterion(ecog: int | None, kps: int | None) -> str:
    if ecog is not None:
        return MET if ecog <= 1 else NOT_MET
    if kps is not None:
        return MET if kps_to_ecog(kps) <= 1 else NOT_MET
    return UNKNOWN


def tomita_criterion(tomita_totals: tuple[int, ...]) -> str:
    if not tomita_totals:
        return UNKNOWN
    if max(tomita_totals) <= 3:
        return MET
    if min(tomita_totals) >= 6:
        return NOT_MET
    if min(tomita_totals) >= 4 and max(tomita_totals) <= 5:
        return "selected"
    return UNKNOWN


def combine(spinal_extent: str, survival: str, histology: str, performance: str, tomita: str) -> str:
    """The screen's result from its five criteria."""
    others = [spinal_extent, survival, histology, performance]
    if NOT_MET in others or tomita == NOT_MET:
        return "negative"
    if all(v == MET for v in others) and tomita == MET:
        return "positive"
    if all(v == MET for v in others) and tomita == "selected":
        return "selected"
    return "undetermined"


def compute_tes_screen(
    *,
    sites: tuple[PrimarySite, ...],
    spinal_extent: str,
    ecog: int | None,
    kps: int | None,
    tomita_totals: tuple[int, ...],
    tokuhashi_totals: tuple[int, ...],
    katagiri_totals: tuple[int, ...],
) -> dict:
    """The screen; ``spinal_extent`` is :func:`spinal_extent_criterion` of the patient's lesions."""
    criteria = {
        "solitary_or_le3_contiguous": spinal_extent,
        "expected_survival_gt_1_2_years": survival_criterion(tokuhashi_totals, katagiri_totals),
        "favourable_histology": histology_criterion(sites),
        "ecog_0_1": performance_criterion(ecog, kps),
        "tomita_2_3_or_selected_4_5": tomita_criterion(tomita_totals),
    }
    return {
        "result": combine(*criteria.values()),
        "criteria": criteria,
        "screen_only": True,
        "note": "A screen, not a rule: the review's criteria; survival read from Tokuhashi/Katagiri bands [CONV].",
        "citation": CITATION,
        "table_version": TABLE_VERSION,
    }
