"""Tomita score (Tomita K et al., Spine 2001;26:298–306; clinical-reference §4).

Items and bands [V2] as cross-checked against the primary paper by sophiewell
``lib/spine-v146.js``.  Rapid growth scores 4: a review table printing 3 is
wrong and only 4 fits the published 2–10 range [DISC §18.5].

Growth classes: Tomita named only examples ("… etc."), so there is no "others"
group [§18.6].  A histology the paper does not name has every class possible
({1, 2, 4}) until a clinician assigns one.  Uterine cervix and rectum are
implementation conventions [CONV] marked as such.
"""

from __future__ import annotations

from functools import lru_cache

from surveillance.scoring.metastatic import organ_metastasis_present, solitary_possibilities
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
from surveillance.scoring.vocab import PrimarySite, VisceralStatus

TABLE_VERSION = "tomita-2001/1"

TABLE = InstrumentTable(
    id="tomita",
    name="Tomita",
    citations=(
        Citation("Tomita 2001", "Tomita K et al. Spine 2001;26(3):298–306", "doi:10.1097/00007632-200102010-00016"),
    ),
    table_version=TABLE_VERSION,
    items=(
        Item(
            "primary_growth",
            "Primary tumour growth",
            (Option("slow", 1, "Slow"), Option("moderate", 2, "Moderate"), Option("rapid", 4, "Rapid")),
            evidence="[V2]",
            note="Rapid = 4 (original); one review prints 3 [DISC].",
        ),
        Item(
            "visceral_metastases",
            "Visceral metastases",
            (Option("none", 0, "None"), Option("treatable", 2, "Treatable"), Option("untreatable", 4, "Untreatable")),
            evidence="[V2]",
            note="Brain metastases count as organ metastases.",
        ),
        Item(
            "bone_metastases",
            "Bone metastases (spine included)",
            (Option("solitary", 1, "Solitary or isolated"), Option("multiple", 2, "Multiple")),
            evidence="[V2]",
            note="'Isolated' is undefined: one contiguous lesion over several vertebrae gives both values.",
        ),
    ),
    bands=(
        Band("2-3", 2, 3, "Long-term local control: wide or marginal excision (TES)", "[V2]"),
        Band("4-5", 4, 5, "Middle-term local control: marginal or intralesional excision", "[V2]"),
        Band("6-7", 6, 7, "Short-term palliation: palliative surgery", "[V2]"),
        Band("8-10", 8, 10, "Terminal care: supportive care, no surgery", "[V2]"),
    ),
    minimum=2,
    maximum=10,
    higher_is="worse",
    reference_section="§4",
    notes=(
        "Survival figures per band were not retrieved [R]; only the strategy labels are shown.",
        "An evaluation of 217 patients found the bands unreliable for survival (Onkologie 2007, PubMed 17848812).",
    ),
)

#: Growth class per primary site (clinical-reference §4.2 and §15).
#: A site absent from this table is not named by Tomita: every class is possible.
GROWTH_CLASS: dict[PrimarySite, tuple[str, str]] = {
    PrimarySite.BREAST: ("slow", "[V2]"),
    PrimarySite.THYROID: ("slow", "[V2]"),
    PrimarySite.PROSTATE: ("slow", "[V2]"),
    PrimarySite.KIDNEY: ("moderate", "[V2]"),
    PrimarySite.UTERUS: ("moderate", "[V2]"),
    PrimarySite.CERVIX: ("moderate", "[CONV] 'uterus' assumed to include the cervix"),
    PrimarySite.LUNG_NSCLC: ("rapid", "[V2]"),
    PrimarySite.LUNG_SCLC: ("rapid", "[V2]"),
    PrimarySite.STOMACH: ("rapid", "[V2]"),
    PrimarySite.LIVER: ("rapid", "[V2]"),
    PrimarySite.COLON: ("rapid", "[V2]"),
    PrimarySite.RECTUM: ("rapid", "[CONV] colorectal"),
    PrimarySite.UNKNOWN_PRIMARY: ("rapid", "[V2]"),
}


NO_HISTOLOGY = CannotCompute("primary histology unknown")
NO_COUNTS = CannotCompute("skeletal metastasis counts (extraspinal and vertebral body) not recorded")


@lru_cache(maxsize=256)
def growth_item(site: PrimarySite | None):
    growth = TABLE.item("primary_growth")
    if site is None:
        return NO_HISTOLOGY
    if site in GROWTH_CLASS:
        cls, evidence = GROWTH_CLASS[site]
        return item_result(growth, f"{cls} ({site})", [growth.points(cls)], note=evidence if "CONV" in evidence else "")
    note = "histology not named by Tomita: a clinician must assign the class; every class shown"
    return item_result(growth, f"not named by Tomita ({site})", growth.all_points(), note=note, ambiguity=note)


@lru_cache(maxsize=256)
def visceral_item(visceral_status: VisceralStatus | None, visceral_treatable: bool | None, brain_metastases: bool | None):
    visceral = TABLE.item("visceral_metastases")
    present = organ_metastasis_present(visceral_status, brain_metastases)
    points: set[int] = set()
    if False in present:
        points.add(visceral.points("none"))
    if True in present:
        if visceral_treatable is None:
            points |= {visceral.points("treatable"), visceral.points("untreatable")}
        else:
            points.add(visceral.points("treatable" if visceral_treatable else "untreatable"))
    missing = len(present) > 1 or (True in present and visceral_treatable is None)
    if present == {False}:
        value = "none"
    elif present == {True}:
        value = {True: "treatable", False: "untreatable", None: "present, treatability unknown"}[visceral_treatable]
    else:
        value = "unknown"
    return item_result(visceral, value, points, missing_reason="visceral metastases / treatability" if missing else "")


@lru_cache(maxsize=1024)
def bone_item(extraspinal: int | None, vertebral: int | None, single_contiguous_lesion: bool | None):
    solitary = solitary_possibilities(extraspinal, vertebral, single_contiguous_lesion)
    if not solitary:
        return NO_COUNTS
    bone = TABLE.item("bone_metastases")
    value = "solitary" if solitary == {True} else "multiple" if solitary == {False} else "solitary or multiple"
    note = "one contiguous lesion over several vertebrae: 'isolated' is undefined" if len(solitary) > 1 else ""
    return item_result(bone, value, {bone.points("solitary" if s else "multiple") for s in solitary}, note=note,
                       ambiguity=note)


SPECS = (
    ItemSpec("primary_growth", growth_item, ("site",)),
    ItemSpec("visceral_metastases", visceral_item, ("visceral_status", "visceral_treatable", "brain_metastases")),
    ItemSpec("bone_metastases", bone_item,
             ("extraspinal_bone_metastases", "vertebral_body_metastases", "single_contiguous_lesion")),
)


@lru_cache(maxsize=8192)
def compute_tomita(
    site: PrimarySite | None,
    visceral_status: VisceralStatus | None,
    visceral_treatable: bool | None,
    brain_metastases: bool | None,
    extraspinal_bone_metastases: int | None,
    vertebral_body_metastases: int | None,
    single_contiguous_lesion: bool | None,
) -> ScoreResult:
    return score_items(TABLE, SPECS, dict(
        site=site, visceral_status=visceral_status, visceral_treatable=visceral_treatable,
        brain_metastases=brain_metastases, extraspinal_bone_metastases=extraspinal_bone_metastases,
        vertebral_body_metastases=vertebral_body_metastases, single_contiguous_lesion=single_contiguous_lesion,
    ))
