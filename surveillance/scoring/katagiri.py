"""New Katagiri score (Katagiri H et al., Cancer Med 2014;3:1359–1367; clinical-reference §8).

Items and cut-offs [V] from PMC4302686; primary-lesion groups [V2] from
sophiewell ``lib/katagiri-v606.js``, which re-fetched the table from the paper.

* Laboratory item: the highest tier present.  Abnormal (1): CRP ≥ 0.4 mg/dL,
  LDH ≥ 250 IU/L or albumin < 3.7 g/dL.  Critical (2): platelets < 100,000/µL,
  calcium ≥ 10.3 mg/dL or total bilirubin ≥ 1.4 mg/dL.  A missing test is
  enumerated, so the item is the exact set of reachable tiers (§8.4).
* Calcium: measured value; whether the cut-off is albumin-corrected is not
  stated [DISC §18.16].
* Previous chemotherapy: whether immunotherapy or targeted therapy alone counts
  is undefined [§18.15]; record null for "unknown", which gives {0, 1}.
* Carcinoid/NET and germ-cell tumours are "others" (moderate) [§18.17].
* Small-cell lung cancer is rapid (3) whatever the targeted-therapy flag says:
  §15 gives "rapid 3 (no targeted drug)", and an unknown flag must give the
  union of its values, so the flag cannot move it either.
* ECOG-native; with only KPS, KPS ≤ 40 gives the point (§1.1).
"""

from __future__ import annotations

from functools import lru_cache

from surveillance.scoring.metastatic import organ_metastasis_states, solitary_possibilities
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

TABLE_VERSION = "katagiri-2014/1"

TABLE = InstrumentTable(
    id="new_katagiri",
    name="New Katagiri",
    citations=(Citation("Katagiri 2014", "Katagiri H et al. Cancer Med 2014;3(5):1359–1367", "PMC4302686"),),
    table_version=TABLE_VERSION,
    items=(
        Item(
            "primary_lesion",
            "Primary lesion",
            (
                Option("slow", 0, "Slow growth"),
                Option("moderate", 2, "Moderate growth"),
                Option("rapid", 3, "Rapid growth"),
            ),
            evidence="[V2]",
        ),
        Item(
            "visceral_metastases",
            "Visceral metastases",
            (
                Option("none", 0, "None"),
                Option("nodular_or_cerebral", 1, "Nodular visceral or cerebral metastasis"),
                Option("disseminated", 2, "Disseminated (pleural, peritoneal or leptomeningeal)"),
            ),
        ),
        Item(
            "laboratory",
            "Laboratory data",
            (
                Option("normal", 0, "Normal"),
                Option("abnormal", 1, "Abnormal: CRP ≥ 0.4 mg/dL, LDH ≥ 250 IU/L or albumin < 3.7 g/dL"),
                Option(
                    "critical", 2, "Critical: platelets < 100,000/µL, calcium ≥ 10.3 mg/dL or bilirubin ≥ 1.4 mg/dL"
                ),
            ),
            note="Highest tier present.",
        ),
        Item("ecog", "ECOG performance status 3 or 4", (Option("yes", 1, "ECOG 3–4"), Option("no", 0, "ECOG 0–2"))),
        Item("previous_chemotherapy", "Previous chemotherapy", (Option("yes", 1, "Yes"), Option("no", 0, "No"))),
        Item(
            "multiple_skeletal_metastases",
            "Multiple skeletal metastases",
            (Option("yes", 1, "Yes"), Option("no", 0, "No")),
            note="More than one skeletal metastasis in total, spine and extraspinal.",
        ),
    ),
    bands=(
        Band("low", 0, 3, "Low risk: 1-year survival 91%, 2-year 78% (derivation cohort)"),
        Band("intermediate", 4, 6, "Intermediate risk: 1-year survival 49% (derivation cohort) [V2]"),
        Band("high", 7, 10, "High risk: 6-month survival 27%, 1-year 6% (derivation cohort)"),
    ),
    minimum=0,
    maximum=10,
    higher_is="worse",
    reference_section="§8",
    notes=(
        "808 patients with skeletal metastases, mostly treated without surgery.",
        "External validation (Kubota 2019, 616 patients) confirmed separation of the groups with different figures.",
    ),
)


#: Laboratory cut-offs: (field, label, tier, comparison, threshold).  ``ge`` means
#: value ≥ threshold is positive; ``lt`` means value < threshold is positive.
LAB_CUTOFFS: tuple[tuple[str, str, str, str, float], ...] = (
    ("crp_mg_dl", "CRP", "abnormal", "ge", 0.4),
    ("ldh_u_l", "LDH", "abnormal", "ge", 250.0),
    ("albumin_g_dl", "albumin", "abnormal", "lt", 3.7),
    ("platelets_per_ul", "platelets", "critical", "lt", 100000.0),
    ("calcium_mg_dl", "calcium", "critical", "ge", 10.3),
    ("total_bilirubin_mg_dl", "total bilirubin", "critical", "ge", 1.4),
)

#: Primary-lesion group per site (§8.2, §15).  Breast/prostate depend on hormone
#: dependence and lung on targeted therapy; those are resolved in code below.
PRIMARY_GROUP: dict[PrimarySite, str] = {
    PrimarySite.THYROID: "slow",
    PrimarySite.MYELOMA: "slow",
    PrimarySite.LYMPHOMA: "slow",
    PrimarySite.KIDNEY: "moderate",
    PrimarySite.UTERUS: "moderate",
    PrimarySite.OVARY: "moderate",
    PrimarySite.SOFT_TISSUE_SARCOMA: "moderate",
    PrimarySite.OSTEOSARCOMA: "moderate",
    PrimarySite.NEUROENDOCRINE: "moderate",
    PrimarySite.TESTIS_GERM_CELL: "moderate",
    PrimarySite.OTHER: "moderate",
    PrimarySite.LUNG_SCLC: "rapid",  # §15: "rapid 3 (no targeted drug)", whatever the flag says
    PrimarySite.COLON: "rapid",
    PrimarySite.RECTUM: "rapid",
    PrimarySite.STOMACH: "rapid",
    PrimarySite.PANCREAS: "rapid",
    PrimarySite.HEAD_NECK: "rapid",
    PrimarySite.ESOPHAGUS: "rapid",
    PrimarySite.BLADDER: "rapid",
    PrimarySite.MELANOMA: "rapid",
    PrimarySite.LIVER: "rapid",
    PrimarySite.GALLBLADDER: "rapid",
    PrimarySite.CERVIX: "rapid",
    PrimarySite.UNKNOWN_PRIMARY: "rapid",
}
HORMONE_SITES = frozenset({PrimarySite.BREAST, PrimarySite.PROSTATE})


def lab_flags(values: dict[str, float | None]) -> tuple[bool | None, ...]:
    """Each laboratory test of :data:`LAB_CUTOFFS` as positive / negative / missing."""
    flags: list[bool | None] = []
    for field, _label, _tier, op, threshold in LAB_CUTOFFS:
        value = values.get(field)
        if value is None:
            flags.append(None)
        elif op == "ge":
            flags.append(value >= threshold)
        else:
            flags.append(value < threshold)
    return tuple(flags)


def primary_groups(site: PrimarySite, hormone_dependent: bool | None, targeted: bool | None) -> tuple[str, ...]:
    if site in HORMONE_SITES:
        return {True: ("slow",), False: ("moderate",), None: ("slow", "moderate")}[hormone_dependent]
    if site == PrimarySite.LUNG_NSCLC:
        return {True: ("moderate",), False: ("rapid",), None: ("moderate", "rapid")}[targeted]
    return (PRIMARY_GROUP[site],)


def _tier_possibilities(flags: tuple[bool | None, ...], tier: str) -> set[bool]:
    tier_flags = [f for f, cut in zip(flags, LAB_CUTOFFS, strict=False) if cut[2] == tier]
    if any(tier_flags):
        return {True}
    if any(f is None for f in tier_flags):
        return {True, False}
    return {False}


NO_HISTOLOGY = CannotCompute("primary histology unknown")
NO_COUNTS = CannotCompute("skeletal metastasis counts (extraspinal and vertebral body) not recorded")
_WORLD_OPTION = {"none": "none", "nodular": "nodular_or_cerebral", "brain": "nodular_or_cerebral",
                 "disseminated": "disseminated"}


@lru_cache(maxsize=256)
def primary_item(site: PrimarySite | None, hormone_dependent: bool | None, molecular_targeted_therapy: bool | None):
    if site is None:
        return NO_HISTOLOGY
    pl = TABLE.item("primary_lesion")
    groups = primary_groups(site, hormone_dependent, molecular_targeted_therapy)
    note = ""
    if len(groups) > 1:
        note = "hormone dependence not recorded" if site in HORMONE_SITES else "molecularly targeted therapy not recorded"
    return item_result(pl, f"{site} ({' or '.join(groups)})", [pl.points(g) for g in groups], note=note,
                       missing_reason=note.replace(" not recorded", ""))


@lru_cache(maxsize=64)
def visceral_item(visceral_status: VisceralStatus | None, brain_metastases: bool | None):
    vm = TABLE.item("visceral_metastases")
    worlds = organ_metastasis_states(visceral_status, brain_metastases)
    missing = len({_WORLD_OPTION[w] for w in worlds}) > 1
    return item_result(vm, " or ".join(sorted(worlds)) if len(worlds) > 1 else next(iter(worlds)),
                       [vm.points(_WORLD_OPTION[w]) for w in worlds],
                       missing_reason="visceral / brain metastases" if missing else "")


@lru_cache(maxsize=1024)
def laboratory_item(labs: tuple[bool | None, ...]):
    lab = TABLE.item("laboratory")
    abnormal = _tier_possibilities(labs, "abnormal")
    critical = _tier_possibilities(labs, "critical")
    tiers = {"critical" if c else "abnormal" if a else "normal" for a in abnormal for c in critical}
    positives = [cut[1] for f, cut in zip(labs, LAB_CUTOFFS, strict=False) if f]
    absent = [cut[1] for f, cut in zip(labs, LAB_CUTOFFS, strict=False) if f is None]
    described = ", ".join(f"{name} out of range" for name in positives) or "all measured in range"
    note = "not measured: " + ", ".join(absent) if absent else ""
    reason = "laboratory: " + ", ".join(absent) if absent and len(tiers) > 1 else ""
    return item_result(lab, described, [lab.points(t) for t in tiers], note=note, missing_reason=reason)


@lru_cache(maxsize=128)
def performance_item(ecog: int | None, kps: int | None):
    ps = TABLE.item("ecog")
    if ecog is not None:
        return item_result(ps, f"ECOG {ecog}", [ps.points("yes" if ecog >= 3 else "no")])
    if kps is not None:
        return item_result(ps, f"KPS {kps} (converted)", [ps.points("yes" if kps <= 40 else "no")],
                           note="no ECOG: KPS ≤ 40 taken as ECOG 3–4")
    return item_result(ps, None, ps.all_points(), note="no ECOG or KPS recorded",
                       missing_reason="performance status (ECOG or KPS)")


@lru_cache(maxsize=4)
def chemotherapy_item(previous_chemotherapy: bool | None):
    ch = TABLE.item("previous_chemotherapy")
    if previous_chemotherapy is None:
        note = "unknown (does immunotherapy or targeted therapy count? [§18.15])"
        return item_result(ch, None, ch.all_points(), note=note, missing_reason="previous chemotherapy", ambiguity=note)
    value = "yes" if previous_chemotherapy else "no"
    return item_result(ch, value, [ch.points(value)])


@lru_cache(maxsize=1024)
def multiple_item(extraspinal: int | None, vertebral: int | None, single_contiguous_lesion: bool | None):
    solitary = solitary_possibilities(extraspinal, vertebral, single_contiguous_lesion)
    if not solitary:
        return NO_COUNTS
    ms = TABLE.item("multiple_skeletal_metastases")
    note = "one contiguous lesion over several vertebrae: 'solitary' is undefined [§18.22]" if len(solitary) > 1 else ""
    return item_result(ms, "yes" if solitary == {False} else "no" if solitary == {True} else "undetermined",
                       [ms.points("no" if s else "yes") for s in solitary], note=note, ambiguity=note)


SPECS = (
    ItemSpec("primary_lesion", primary_item, ("site", "hormone_dependent", "molecular_targeted_therapy")),
    ItemSpec("visceral_metastases", visceral_item, ("visceral_status", "brain_metastases")),
    ItemSpec("laboratory", laboratory_item, ("labs",)),
    ItemSpec("ecog", performance_item, ("ecog", "kps")),
    ItemSpec("previous_chemotherapy", chemotherapy_item, ("previous_chemotherapy",)),
    ItemSpec("multiple_skeletal_metastases", multiple_item,
             ("extraspinal_bone_metastases", "vertebral_body_metastases", "single_contiguous_lesion")),
)


@lru_cache(maxsize=16384)
def compute_katagiri(
    site: PrimarySite | None,
    hormone_dependent: bool | None,
    molecular_targeted_therapy: bool | None,
    visceral_status: VisceralStatus | None,
    brain_metastases: bool | None,
    labs: tuple[bool | None, ...],
    ecog: int | None,
    kps: int | None,
    previous_chemotherapy: bool | None,
    extraspinal_bone_metastases: int | None,
    vertebral_body_metastases: int | None,
    single_contiguous_lesion: bool | None,
) -> ScoreResult:
    """New Katagiri score; ``labs`` is :func:`lab_flags` of the patient's values."""
    return score_items(TABLE, SPECS, dict(
        site=site, hormone_dependent=hormone_dependent, molecular_targeted_therapy=molecular_targeted_therapy,
        visceral_status=visceral_status, brain_metastases=brain_metastases, labs=labs, ecog=ecog, kps=kps,
        previous_chemotherapy=previous_chemotherapy, extraspinal_bone_metastases=extraspinal_bone_metastases,
        vertebral_body_metastases=vertebral_body_metastases, single_contiguous_lesion=single_contiguous_lesion,
    ))
