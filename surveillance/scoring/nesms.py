"""New England Spinal Metastasis Score (NESMS; clinical-reference §7).

Ghori AK et al., Spine J 2015;15:2345 (derivation); Schoenfeld AJ et al., Spine J
2016;16:482, 2021;21:28 and 2022;22:39 (validations).  Items [V2] as summarised
from Ghori 2015 (beckersspine.com): modified Bauer ≥ 3 scores 2, independent
ambulation 1, serum albumin ≥ 3.5 g/dL 1, **with a published ceiling of 3**
[§18.13]; a calculator without the cap returns 4.  The "≥ 3" modified-Bauer
threshold is standard in descriptions but was not visible in the stored text
[R].

Walking with a cane or walker (``with_aid``) is not defined as independent or
not [§18.14]: it scores 0 or 1.  An undetermined modified Bauer carries through.
"""

from __future__ import annotations

from functools import lru_cache

from surveillance.scoring.ranges import (
    Band,
    CannotCompute,
    Citation,
    InstrumentTable,
    Item,
    ItemSpec,
    Option,
    ScoreResult,
    item_result,
    score_items,
)
from surveillance.scoring.vocab import Ambulation

TABLE_VERSION = "ghori-2015/1"
CEILING = 3
MODIFIED_BAUER_THRESHOLD = 3
ALBUMIN_NORMAL_G_DL = 3.5

TABLE = InstrumentTable(
    id="nesms",
    name="NESMS",
    citations=(
        Citation("Ghori 2015", "Ghori AK et al. Spine J 2015;15(11):2345–2350", "doi:10.1016/j.spinee.2015.06.061"),
        Citation(
            "Schoenfeld 2021", "Schoenfeld AJ et al. Spine J 2021;21(1):28–36", "doi:10.1016/j.spinee.2020.02.009"
        ),
    ),
    table_version=TABLE_VERSION,
    items=(
        Item(
            "modified_bauer",
            "Modified Bauer score ≥ 3",
            (Option("ge3", 2, "≥ 3"), Option("lt3", 0, "< 3")),
            evidence="[V2]/[R]",
        ),
        Item(
            "ambulation",
            "Independent (intact) ambulation",
            (Option("yes", 1, "Independent"), Option("no", 0, "Not independent")),
            evidence="[V2]",
            note="Walking with an aid is undefined: 0 or 1 [§18.14].",
        ),
        Item(
            "albumin",
            "Serum albumin ≥ 3.5 g/dL",
            (Option("normal", 1, "≥ 3.5 g/dL"), Option("low", 0, "< 3.5 g/dL")),
            evidence="[V2]",
        ),
    ),
    bands=(
        Band("0", 0, 0, "Highest 1-year mortality (OR above 31.3 vs score 3; value truncated in the stored abstract)"),
        Band("1", 1, 1, "1-year mortality OR 31.30 (95% CI 8.82–111.04) vs score 3 (Schoenfeld 2021)"),
        Band("2", 2, 2, "1-year mortality OR 7.04 (95% CI 2.47–20.08) vs score 3 (Schoenfeld 2021)"),
        Band("3", 3, 3, "Reference group; 89% lower odds of 30-day mortality after surgery (PubMed 26409416)"),
    ),
    minimum=0,
    maximum=CEILING,
    higher_is="better",
    reference_section="§7",
    notes=(
        "The raw sum can reach 4; the published ceiling is 3.",
        "c-statistic 0.79 for 1-year survival (prospective comparison, 202 patients; PubMed 33741509).",
    ),
)

_AMBULATION_POINTS = {
    Ambulation.INDEPENDENT: frozenset({1}),
    Ambulation.WITH_AID: frozenset({0, 1}),
    Ambulation.WITH_ASSISTANCE: frozenset({0}),
    Ambulation.NON_AMBULATORY: frozenset({0}),
}


def albumin_normal(albumin_g_dl: float | None) -> bool | None:
    """Whether albumin meets the NESMS "normal" cut-off (≥ 3.5 g/dL); ``None`` when unknown."""
    return None if albumin_g_dl is None else albumin_g_dl >= ALBUMIN_NORMAL_G_DL


@lru_cache(maxsize=256)
def modified_bauer_item(modified_bauer_totals: tuple[int, ...], modified_bauer_missing: tuple[str, ...] = ()):
    if not modified_bauer_totals:
        return CannotCompute("modified Bauer cannot be computed: " + "; ".join(modified_bauer_missing))
    mb = TABLE.item("modified_bauer")
    points = {mb.points("ge3" if t >= MODIFIED_BAUER_THRESHOLD else "lt3") for t in modified_bauer_totals}
    return item_result(mb, f"modified Bauer {'/'.join(map(str, modified_bauer_totals))}", points)


@lru_cache(maxsize=16)
def ambulation_item(ambulatory_status: Ambulation | None):
    amb = TABLE.item("ambulation")
    if ambulatory_status is None:
        return item_result(amb, None, amb.all_points(), note="ambulatory status not recorded",
                           missing_reason="ambulatory status")
    note = "walking with an aid: undefined for NESMS [§18.14]" if ambulatory_status == Ambulation.WITH_AID else ""
    return item_result(amb, str(ambulatory_status), _AMBULATION_POINTS[ambulatory_status], note=note, ambiguity=note)


@lru_cache(maxsize=4)
def albumin_item(albumin_is_normal: bool | None):
    alb = TABLE.item("albumin")
    if albumin_is_normal is None:
        return item_result(alb, None, alb.all_points(), note="albumin not measured", missing_reason="albumin")
    level = "normal" if albumin_is_normal else "low"
    return item_result(alb, alb.label_of(level), [alb.points(level)])


SPECS = (
    ItemSpec("modified_bauer", modified_bauer_item, ("modified_bauer_totals", "modified_bauer_missing")),
    ItemSpec("ambulation", ambulation_item, ("ambulatory_status",)),
    ItemSpec("albumin", albumin_item, ("albumin_is_normal",)),
)


@lru_cache(maxsize=8192)
def compute_nesms(
    modified_bauer_totals: tuple[int, ...],
    modified_bauer_missing: tuple[str, ...],
    ambulatory_status: Ambulation | None,
    albumin_is_normal: bool | None,
) -> ScoreResult:
    """NESMS from the modified Bauer possible totals, ambulation and :func:`albumin_normal` (capped at 3)."""
    return score_items(TABLE, SPECS, dict(
        modified_bauer_totals=modified_bauer_totals, modified_bauer_missing=modified_bauer_missing,
        ambulatory_status=ambulatory_status, albumin_is_normal=albumin_is_normal,
    ), cap=CEILING)
