"""Revised Tokuhashi score (Tokuhashi Y et al., Spine 2005;30:2186–2191; clinical-reference §5).

Items, primary-site points and bands [V] from the NICE CG75 appendix, which
reproduces the 2005 table "with corrections approved by Y. Tokuhashi", the CRAN
``cliot`` package and sophiewell ``lib/spine-v146.js``.

Decisions recorded in the reference:

* General condition is KPS-native.  With only ECOG, the standard mapping is
  used and ECOG 1 (KPS 70–80) gives 1 or 2 [§1.1, §18.21].
* Vertebral-body item ≥ 3 / 2 / 1 → 0 / 1 / 2 (majority version; a "≥3 / 1–2 / 0"
  variant would score an impossible 0 metastases) [DISC §18.7].
* Uterine cervix is "uterus" (3) or "others" (2) [§18.9].
* The 2014 receptor-negative breast modification is not part of the score [§18.10].
* "Major internal organs": lung, liver, kidney and brain (``cliot``) [V2].
"""

from __future__ import annotations

from functools import lru_cache

from surveillance.scoring.metastatic import organ_metastasis_present
from surveillance.scoring.performance_status import ecog_to_kps_values, frankel_palsy
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
from surveillance.scoring.vocab import Frankel, PrimarySite, VisceralStatus

TABLE_VERSION = "tokuhashi-2005/1"

TABLE = InstrumentTable(
    id="revised_tokuhashi",
    name="Revised Tokuhashi",
    citations=(
        Citation(
            "Tokuhashi 2005", "Tokuhashi Y et al. Spine 2005;30(19):2186–2191", "doi:10.1097/01.brs.0000180401.06919.a5"
        ),
        Citation(
            "NICE CG75 app. 3",
            "NICE CG75, appendix 3, table app3.t1",
            "https://www.ncbi.nlm.nih.gov/pubmedhealth/PMH0032986/",
        ),
    ),
    table_version=TABLE_VERSION,
    items=(
        Item(
            "general_condition",
            "General condition (KPS)",
            (
                Option("poor", 0, "Poor (KPS 10–40%)"),
                Option("moderate", 1, "Moderate (KPS 50–70%)"),
                Option("good", 2, "Good (KPS 80–100%)"),
            ),
        ),
        Item(
            "extraspinal_bone_metastases",
            "Extraspinal bone metastasis foci",
            (Option("ge3", 0, "≥ 3"), Option("1-2", 1, "1–2"), Option("0", 2, "0")),
        ),
        Item(
            "vertebral_body_metastases",
            "Vertebral-body metastases",
            (Option("ge3", 0, "≥ 3"), Option("2", 1, "2"), Option("1", 2, "1")),
            note="≥3 / 2 / 1 (majority version) [DISC §18.7].",
        ),
        Item(
            "major_organ_metastases",
            "Metastases to major internal organs",
            (Option("unremovable", 0, "Unremovable"), Option("removable", 1, "Removable"), Option("none", 2, "None")),
        ),
        Item(
            "primary_site",
            "Primary site",
            (
                Option(
                    "lung_osteosarcoma_stomach_bladder_oesophagus_pancreas",
                    0,
                    "Lung, osteosarcoma, stomach, bladder, oesophagus, pancreas",
                ),
                Option("liver_gallbladder_unidentified", 1, "Liver, gallbladder, unidentified"),
                Option("others", 2, "Others"),
                Option("kidney_uterus", 3, "Kidney, uterus"),
                Option("rectum", 4, "Rectum"),
                Option("thyroid_breast_prostate_carcinoid", 5, "Thyroid, breast, prostate, carcinoid tumour"),
            ),
        ),
        Item(
            "palsy",
            "Palsy",
            (
                Option("complete", 0, "Complete (Frankel A, B)"),
                Option("incomplete", 1, "Incomplete (Frankel C, D)"),
                Option("none", 2, "None (Frankel E)"),
            ),
        ),
    ),
    bands=(
        Band("0-8", 0, 8, "Predicted survival < 6 months; conservative treatment (or palliative surgery)"),
        Band(
            "9-11",
            9,
            11,
            "Predicted survival ≥ 6 months; palliative surgery (excisional if single lesion, no major-organ metastases)",
        ),
        Band("12-15", 12, 15, "Predicted survival ≥ 1 year; excisional surgery"),
    ),
    minimum=0,
    maximum=15,
    higher_is="better",
    reference_section="§5",
    notes=(
        "Accuracy in later cohorts about 63% overall (64% / 55% / 77% by group; Zoccali review of 10 studies) [V2].",
        "Treatment recommendations per band are from Tokuhashi 2005 [R].",
    ),
)

#: Primary-site group per code (clinical-reference §5.2 and §15).  A code absent
#: from this table is "others" (2); a tuple of several groups is ambiguous.
PRIMARY_GROUP: dict[PrimarySite, tuple[str, ...]] = {
    PrimarySite.LUNG_NSCLC: ("lung_osteosarcoma_stomach_bladder_oesophagus_pancreas",),
    PrimarySite.LUNG_SCLC: ("lung_osteosarcoma_stomach_bladder_oesophagus_pancreas",),
    PrimarySite.OSTEOSARCOMA: ("lung_osteosarcoma_stomach_bladder_oesophagus_pancreas",),
    PrimarySite.STOMACH: ("lung_osteosarcoma_stomach_bladder_oesophagus_pancreas",),
    PrimarySite.BLADDER: ("lung_osteosarcoma_stomach_bladder_oesophagus_pancreas",),
    PrimarySite.ESOPHAGUS: ("lung_osteosarcoma_stomach_bladder_oesophagus_pancreas",),
    PrimarySite.PANCREAS: ("lung_osteosarcoma_stomach_bladder_oesophagus_pancreas",),
    PrimarySite.LIVER: ("liver_gallbladder_unidentified",),
    PrimarySite.GALLBLADDER: ("liver_gallbladder_unidentified",),
    PrimarySite.UNKNOWN_PRIMARY: ("liver_gallbladder_unidentified",),
    PrimarySite.KIDNEY: ("kidney_uterus",),
    PrimarySite.UTERUS: ("kidney_uterus",),
    PrimarySite.CERVIX: ("kidney_uterus", "others"),
    PrimarySite.RECTUM: ("rectum",),
    PrimarySite.THYROID: ("thyroid_breast_prostate_carcinoid",),
    PrimarySite.BREAST: ("thyroid_breast_prostate_carcinoid",),
    PrimarySite.PROSTATE: ("thyroid_breast_prostate_carcinoid",),
    PrimarySite.NEUROENDOCRINE: ("thyroid_breast_prostate_carcinoid",),
}


def _kps_class(kps: int) -> str:
    if kps <= 40:
        return "poor"
    if kps <= 70:
        return "moderate"
    return "good"


def _count_class(count: int, table: tuple[tuple[int, str], ...]) -> str:
    for threshold, cls in table:
        if count >= threshold:
            return cls
    raise ValueError(count)


NO_HISTOLOGY = CannotCompute("primary histology unknown")
NO_COUNTS = CannotCompute("skeletal metastasis counts (extraspinal and vertebral body) not recorded")


@lru_cache(maxsize=256)
def general_condition_item(kps: int | None, ecog: int | None):
    gc = TABLE.item("general_condition")
    if kps is not None:
        return item_result(gc, f"KPS {kps}", [gc.points(_kps_class(kps))])
    if ecog is not None:
        kps_values = ecog_to_kps_values(ecog)
        classes = {_kps_class(k) for k in kps_values}
        note = f"converted from ECOG {ecog} (KPS {kps_values[0]}–{kps_values[-1]})"
        ambiguity = ""
        if len(classes) > 1:
            note += ": straddles the KPS 70/80 boundary, 1 or 2"
            ambiguity = f"ECOG {ecog} without KPS: Tokuhashi general condition undetermined"
        return item_result(gc, f"ECOG {ecog} (converted)", [gc.points(c) for c in classes], note=note,
                           ambiguity=ambiguity)
    return item_result(gc, None, gc.all_points(), note="no KPS or ECOG recorded",
                       missing_reason="performance status (KPS or ECOG)")


@lru_cache(maxsize=256)
def extraspinal_item(extraspinal: int | None, vertebral: int | None):
    if extraspinal is None or vertebral is None:
        return NO_COUNTS
    item = TABLE.item("extraspinal_bone_metastases")
    return item_result(item, extraspinal, [item.points(_count_class(extraspinal, ((3, "ge3"), (1, "1-2"), (0, "0"))))])


@lru_cache(maxsize=256)
def vertebral_item(extraspinal: int | None, vertebral: int | None):
    if extraspinal is None or vertebral is None:
        return NO_COUNTS
    item = TABLE.item("vertebral_body_metastases")
    return item_result(item, vertebral, [item.points(_count_class(vertebral, ((3, "ge3"), (2, "2"), (1, "1"))))])


@lru_cache(maxsize=256)
def organ_item(visceral_status: VisceralStatus | None, visceral_removable: bool | None, brain_metastases: bool | None):
    om = TABLE.item("major_organ_metastases")
    present = organ_metastasis_present(visceral_status, brain_metastases)
    points: set[int] = set()
    if False in present:
        points.add(om.points("none"))
    if True in present:
        if visceral_removable is None:
            points |= {om.points("removable"), om.points("unremovable")}
        else:
            points.add(om.points("removable" if visceral_removable else "unremovable"))
    missing = len(present) > 1 or (True in present and visceral_removable is None)
    if present == {False}:
        value = "none"
    elif present == {True}:
        value = {True: "removable", False: "unremovable", None: "present, removability unknown"}[visceral_removable]
    else:
        value = "unknown"
    return item_result(om, value, points, missing_reason="organ metastases / removability" if missing else "")


@lru_cache(maxsize=256)
def primary_item(site: PrimarySite | None):
    if site is None:
        return NO_HISTOLOGY
    ps = TABLE.item("primary_site")
    groups = PRIMARY_GROUP.get(site, ("others",))
    note = "cervix: 'uterus' (3) or 'others' (2) [DISC §18.9]" if len(groups) > 1 else ""
    return item_result(ps, f"{site} ({' or '.join(ps.label_of(g) for g in groups)})", [ps.points(g) for g in groups],
                       note=note, ambiguity=note)


@lru_cache(maxsize=16)
def palsy_item(frankel_grade: Frankel | None):
    pa = TABLE.item("palsy")
    if frankel_grade is None:
        return item_result(pa, None, pa.all_points(), note="Frankel grade not recorded", missing_reason="Frankel grade")
    return item_result(pa, f"Frankel {frankel_grade}", [pa.points(frankel_palsy(frankel_grade))])


_COUNTS = ("extraspinal_bone_metastases", "vertebral_body_metastases")
SPECS = (
    ItemSpec("general_condition", general_condition_item, ("kps", "ecog")),
    ItemSpec("extraspinal_bone_metastases", extraspinal_item, _COUNTS),
    ItemSpec("vertebral_body_metastases", vertebral_item, _COUNTS),
    ItemSpec("major_organ_metastases", organ_item, ("visceral_status", "visceral_removable", "brain_metastases")),
    ItemSpec("primary_site", primary_item, ("site",)),
    ItemSpec("palsy", palsy_item, ("frankel_grade",)),
)


@lru_cache(maxsize=8192)
def compute_tokuhashi(
    site: PrimarySite | None,
    kps: int | None,
    ecog: int | None,
    extraspinal_bone_metastases: int | None,
    vertebral_body_metastases: int | None,
    visceral_status: VisceralStatus | None,
    visceral_removable: bool | None,
    brain_metastases: bool | None,
    frankel_grade: Frankel | None,
) -> ScoreResult:
    return score_items(TABLE, SPECS, dict(
        site=site, kps=kps, ecog=ecog, extraspinal_bone_metastases=extraspinal_bone_metastases,
        vertebral_body_metastases=vertebral_body_metastases, visceral_status=visceral_status,
        visceral_removable=visceral_removable, brain_metastases=brain_metastases, frankel_grade=frankel_grade,
    ))
