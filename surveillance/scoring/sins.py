"""SINS, the Spinal Instability Neoplastic Score, per lesion.

Fisher CG et al., Spine 2010;35:E1221–E1229 (clinical-reference §2) [V].
Points as reproduced by Radiopaedia (pacs.de mirror), Fourney J Clin Oncol
2011;29:3072, mdapp and sophiewell ``lib/spine-v146.js``.  Pain is 3/1/0: a
lecture page printing 3/2/1 is a transcription error [DISC §18.1].

Scope: one lesion, six components, total 0–18.  A lesion whose span crosses two
location classes has no published rule, so every class it covers is possible
(never the silent maximum; §2.2).  An unknown component contributes every
allowed value (pain unknown adds {0, 1, 3}; §2.3).
"""

from __future__ import annotations

from functools import lru_cache

from surveillance.scoring.ranges import (
    Band,
    Citation,
    InstrumentTable,
    Item,
    ItemSpec,
    Option,
    ScoreResult,
    item_result,
    score_items,
)
from surveillance.scoring.vocab import Alignment, Collapse, LesionType, Level, Pain, Posterolateral

TABLE_VERSION = "fisher-2010/1"

#: Location class of every level from the occiput to S5 (clinical-reference §2.2).
#: The coccyx is not defined by SINS and is not a level of the case format.
LEVEL_CLASS: dict[Level, str] = {
    Level.OCCIPUT: "junctional",
    Level.C1: "junctional",
    Level.C2: "junctional",
    Level.C3: "mobile",
    Level.C4: "mobile",
    Level.C5: "mobile",
    Level.C6: "mobile",
    Level.C7: "junctional",
    Level.T1: "junctional",
    Level.T2: "junctional",
    Level.T3: "semirigid",
    Level.T4: "semirigid",
    Level.T5: "semirigid",
    Level.T6: "semirigid",
    Level.T7: "semirigid",
    Level.T8: "semirigid",
    Level.T9: "semirigid",
    Level.T10: "semirigid",
    Level.T11: "junctional",
    Level.T12: "junctional",
    Level.L1: "junctional",
    Level.L2: "mobile",
    Level.L3: "mobile",
    Level.L4: "mobile",
    Level.L5: "junctional",
    Level.S1: "junctional",
    Level.S2: "rigid",
    Level.S3: "rigid",
    Level.S4: "rigid",
    Level.S5: "rigid",
}

TABLE = InstrumentTable(
    id="sins",
    name="SINS",
    citations=(
        Citation("Fisher 2010", "Fisher CG et al. Spine 2010;35(22):E1221–E1229", "doi:10.1097/BRS.0b013e3181e16ae2"),
        Citation("Fourney 2011", "Fourney DR et al. J Clin Oncol 2011;29:3072–3077", "doi:10.1200/JCO.2010.34.3897"),
    ),
    table_version=TABLE_VERSION,
    items=(
        Item(
            "location",
            "Location",
            (
                Option("junctional", 3, "Junctional (occiput–C2, C7–T2, T11–L1, L5–S1)"),
                Option("mobile", 2, "Mobile (C3–C6, L2–L4)"),
                Option("semirigid", 1, "Semirigid (T3–T10)"),
                Option("rigid", 0, "Rigid (S2–S5)"),
            ),
        ),
        Item(
            "pain",
            "Pain",
            (
                Option(Pain.MECHANICAL, 3, "Mechanical pain (relieved by lying down / brought on by loading)"),
                Option(Pain.NON_MECHANICAL, 1, "Occasional pain, not mechanical"),
                Option(Pain.NONE, 0, "Pain-free lesion"),
            ),
            note="3 / 1 / 0 is the original; a 3 / 2 / 1 transcription is wrong (§18.1).",
        ),
        Item(
            "bone_lesion",
            "Bone lesion",
            (
                Option(LesionType.LYTIC, 2, "Lytic"),
                Option(LesionType.MIXED, 1, "Mixed (lytic and blastic)"),
                Option(LesionType.BLASTIC, 0, "Blastic"),
            ),
        ),
        Item(
            "alignment",
            "Radiographic alignment",
            (
                Option(Alignment.SUBLUXATION, 4, "Subluxation / translation"),
                Option(Alignment.DEFORMITY, 2, "De novo deformity (kyphosis, scoliosis)"),
                Option(Alignment.NORMAL, 0, "Normal alignment"),
            ),
        ),
        Item(
            "collapse",
            "Vertebral body collapse",
            (
                Option(Collapse.GT50, 3, "More than 50% collapse"),
                Option(Collapse.LT50, 2, "Less than 50% collapse"),
                Option(Collapse.NONE_GT50_INVOLVED, 1, "No collapse, more than 50% of the body involved"),
                Option(Collapse.NONE, 0, "None of the above"),
            ),
        ),
        Item(
            "posterolateral",
            "Posterolateral involvement",
            (
                Option(Posterolateral.BILATERAL, 3, "Bilateral"),
                Option(Posterolateral.UNILATERAL, 1, "Unilateral"),
                Option(Posterolateral.NONE, 0, "None"),
            ),
        ),
    ),
    bands=(
        Band("stable", 0, 6, "Stable"),
        Band(
            "potentially_unstable",
            7,
            12,
            "Indeterminate (potentially unstable): surgical consultation recommended (SINS ≥ 7)",
        ),
        Band("unstable", 13, 18, "Unstable: surgical consultation recommended"),
    ),
    minimum=0,
    maximum=18,
    higher_is="worse",
    reference_section="§2",
    notes=(
        "Scored per lesion. A lesion spanning two location classes has no published rule: every total is shown.",
        "SINS is not a survival score (c-statistic 0.54 for 1-year survival; Schoenfeld 2022).",
        "Sensitivity 95.7% / specificity 79.5% for potentially unstable or unstable (Fourney 2011) [V2].",
    ),
)

#: "SINS ≥ 10 (per review; Kakutani)": a configurable flag, never a category (§2.4).
KAKUTANI_FLAG_THRESHOLD = 10


@lru_cache(maxsize=512)
def location_item(levels: tuple[Level, ...]):
    location = TABLE.item("location")
    classes = sorted({LEVEL_CLASS[lv] for lv in levels}, key=lambda c: -location.points(c))
    if len(classes) == 1:
        return item_result(location, classes[0], [location.points(classes[0])])
    note = "lesion spans several location classes; SINS gives no rule, so each is possible"
    return item_result(location, " or ".join(classes), [location.points(c) for c in classes], note=note,
                       ambiguity=note)


def _component(key: str, label: str):
    @lru_cache(maxsize=8)
    def component_item(value):
        item = TABLE.item(key)
        if value is None:
            return item_result(item, None, item.all_points(), note=f"{label} not recorded: every value possible",
                               missing_reason=label)
        return item_result(item, str(value), [item.points(value)])

    component_item.__name__ = f"{key}_item"
    return component_item


pain_item = _component("pain", "Pain")
bone_lesion_item = _component("bone_lesion", "Lesion type")
alignment_item = _component("alignment", "Alignment")
collapse_item = _component("collapse", "Collapse")
posterolateral_item = _component("posterolateral", "Posterolateral involvement")

SPECS = (
    ItemSpec("location", location_item, ("levels",)),
    ItemSpec("pain", pain_item, ("pain",)),
    ItemSpec("bone_lesion", bone_lesion_item, ("lesion_type",)),
    ItemSpec("alignment", alignment_item, ("alignment",)),
    ItemSpec("collapse", collapse_item, ("collapse",)),
    ItemSpec("posterolateral", posterolateral_item, ("posterolateral",)),
)


@lru_cache(maxsize=65536)
def compute_sins(
    levels: tuple[Level, ...],
    pain: Pain | None,
    lesion_type: LesionType | None,
    alignment: Alignment | None,
    collapse: Collapse | None,
    posterolateral: Posterolateral | None,
) -> ScoreResult:
    """SINS of one lesion covering ``levels`` (one level, or a contiguous span)."""
    return score_items(TABLE, SPECS, dict(levels=levels, pain=pain, lesion_type=lesion_type, alignment=alignment,
                                          collapse=collapse, posterolateral=posterolateral))
