"""Bauer score (Bauer HC & Wedin R, Acta Orthop Scand 1995;66:143–146) and the
modified Bauer score (Leithner A et al., Eur Spine J 2008;17:1488–1495).

Clinical-reference §6 [V]: PubMed 7740944, dss.dign.eu (details id 46) and
sophiewell ``lib/bauer-score-v603.js``.  One point per favourable factor;
modified Bauer drops the pathological-fracture item.

Definitions (§6.2): a pathological fracture is any spinal lesion with collapse
``lt50``/``gt50`` or a recorded extraspinal pathological fracture; "solitary"
is exactly one skeletal metastasis; for an unknown primary "not lung cancer"
cannot be decided [§18.12].  Modified-Bauer band labels are Leithner's strategy
labels, not the survival paraphrases of secondary sources [§18.11].
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
from surveillance.scoring.vocab import Collapse, PrimarySite, VisceralStatus

TABLE_VERSION = "bauer-1995/1"
MODIFIED_TABLE_VERSION = "leithner-2008/1"


def _yes_no(key: str, label: str, note: str = "") -> Item:
    return Item(key, label, (Option("yes", 1, "Yes"), Option("no", 0, "No")), note=note)


_COMMON_ITEMS = (
    _yes_no("no_visceral_metastases", "No visceral metastases", "Brain counts as visceral."),
    _yes_no("primary_not_lung", "Primary tumour is not lung cancer", "Undetermined for an unknown primary."),
    _yes_no("favourable_histology", "Primary is breast, kidney, lymphoma or multiple myeloma"),
    _yes_no("solitary_skeletal_metastasis", "Solitary skeletal metastasis"),
)

TABLE = InstrumentTable(
    id="bauer",
    name="Bauer",
    citations=(Citation("Bauer 1995", "Bauer HC, Wedin R. Acta Orthop Scand 1995;66(2):143–146", "PubMed 7740944"),),
    table_version=TABLE_VERSION,
    items=_COMMON_ITEMS
    + (
        _yes_no(
            "no_pathological_fracture",
            "No pathological fracture",
            "Spinal collapse lt50/gt50 or an extraspinal fracture.",
        ),
    ),
    bands=(
        Band("0-1", 0, 1, "1-year survival ≈ 0%"),
        Band("2-3", 2, 3, "Intermediate (1-year survival ≈ 25%)", "[R]"),
        Band("4-5", 4, 5, "1-year survival ≈ 50%"),
    ),
    minimum=0,
    maximum=5,
    higher_is="better",
    reference_section="§6",
    notes=("Whole-series survival in Bauer 1995: 0.30 at 1 year, 0.15 at 2 years, 0.08 at 3 years [V].",),
)

MODIFIED_TABLE = InstrumentTable(
    id="modified_bauer",
    name="Modified Bauer",
    citations=(
        Citation(
            "Leithner 2008", "Leithner A et al. Eur Spine J 2008;17(11):1488–1495", "doi:10.1007/s00586-008-0763-1"
        ),
    ),
    table_version=MODIFIED_TABLE_VERSION,
    items=_COMMON_ITEMS,
    bands=(
        Band("0-1", 0, 1, "Supportive care, no surgery"),
        Band("2", 2, 2, "Short-term palliation: posterior (dorsal) surgery"),
        Band("3-4", 3, 4, "Middle-term local control: anterior-posterior (ventral-dorsal) surgery"),
    ),
    minimum=0,
    maximum=4,
    higher_is="better",
    reference_section="§6",
    notes=("Leithner's strategy labels are the original; 'survival < 6 / > 6 / > 12 months' is a paraphrase [DISC].",),
)

LUNG_SITES = frozenset({PrimarySite.LUNG_NSCLC, PrimarySite.LUNG_SCLC})
FAVOURABLE_SITES = frozenset({PrimarySite.BREAST, PrimarySite.KIDNEY, PrimarySite.LYMPHOMA, PrimarySite.MYELOMA})


def fracture_possibilities(
    collapses: tuple[Collapse | None, ...], extraspinal_fracture: bool | None
) -> frozenset[bool]:
    """Whether a pathological fracture is present: {True}, {False} or both."""
    if extraspinal_fracture or any(c in (Collapse.LT50, Collapse.GT50) for c in collapses):
        return frozenset({True})
    if extraspinal_fracture is None or any(c is None for c in collapses):
        return frozenset({True, False})
    return frozenset({False})


def _flag(item: Item, possibilities: frozenset[bool], favourable_when: bool, value_names=("yes", "no"), **extra):
    points = {item.points("yes" if p == favourable_when else "no") for p in possibilities}
    if len(possibilities) > 1:
        value = "unknown"
    else:
        value = value_names[0] if next(iter(possibilities)) == favourable_when else value_names[1]
    return item_result(item, value, points, **extra)


NO_HISTOLOGY = CannotCompute("primary histology unknown")
NO_COUNTS = CannotCompute("skeletal metastasis counts (extraspinal and vertebral body) not recorded")


@lru_cache(maxsize=64)
def no_visceral_item(visceral_status: VisceralStatus | None, brain_metastases: bool | None):
    present = organ_metastasis_present(visceral_status, brain_metastases)
    return _flag(TABLE.item("no_visceral_metastases"), present, favourable_when=False,
                 missing_reason="visceral / brain metastases" if len(present) > 1 else "")


@lru_cache(maxsize=64)
def not_lung_item(site: PrimarySite | None):
    if site is None:
        return NO_HISTOLOGY
    if site == PrimarySite.UNKNOWN_PRIMARY:
        # Undecidable by definition, not an unrecorded input.
        note = "unknown primary: 'not lung cancer' cannot be decided [§18.12]"
        return _flag(TABLE.item("primary_not_lung"), frozenset({True, False}), favourable_when=False, ambiguity=note)
    return _flag(TABLE.item("primary_not_lung"), frozenset({site in LUNG_SITES}), favourable_when=False)


@lru_cache(maxsize=64)
def favourable_item(site: PrimarySite | None):
    if site is None:
        return NO_HISTOLOGY
    item = TABLE.item("favourable_histology")
    return item_result(item, str(site), [item.points("yes" if site in FAVOURABLE_SITES else "no")])


@lru_cache(maxsize=1024)
def solitary_item(extraspinal: int | None, vertebral: int | None, single_contiguous_lesion: bool | None):
    solitary = solitary_possibilities(extraspinal, vertebral, single_contiguous_lesion)
    if not solitary:
        return NO_COUNTS
    note = "one contiguous lesion over several vertebrae: 'solitary' is undefined [§18.22]" if len(solitary) > 1 else ""
    return _flag(TABLE.item("solitary_skeletal_metastasis"), solitary, favourable_when=True,
                 value_names=("solitary", "multiple"), note=note, ambiguity=note)


@lru_cache(maxsize=64)
def fracture_item(collapses: tuple[Collapse | None, ...], extraspinal_fracture: bool | None):
    fractures = fracture_possibilities(collapses, extraspinal_fracture)
    return _flag(TABLE.item("no_pathological_fracture"), fractures, favourable_when=False,
                 value_names=("no fracture", "fracture"),
                 missing_reason="vertebral collapse or extraspinal pathological fracture" if len(fractures) > 1 else "")


_COUNTS = ("extraspinal_bone_metastases", "vertebral_body_metastases", "single_contiguous_lesion")
MODIFIED_SPECS = (
    ItemSpec("no_visceral_metastases", no_visceral_item, ("visceral_status", "brain_metastases")),
    ItemSpec("primary_not_lung", not_lung_item, ("site",)),
    ItemSpec("favourable_histology", favourable_item, ("site",)),
    ItemSpec("solitary_skeletal_metastasis", solitary_item, _COUNTS),
)
SPECS = MODIFIED_SPECS + (ItemSpec("no_pathological_fracture", fracture_item, ("collapses", "extraspinal_fracture")),)


def _inputs(site, visceral_status, brain_metastases, extraspinal_bone_metastases, vertebral_body_metastases,
            single_contiguous_lesion, collapses, extraspinal_fracture) -> dict:
    return dict(site=site, visceral_status=visceral_status, brain_metastases=brain_metastases,
                extraspinal_bone_metastases=extraspinal_bone_metastases,
                vertebral_body_metastases=vertebral_body_metastases, single_contiguous_lesion=single_contiguous_lesion,
                collapses=collapses, extraspinal_fracture=extraspinal_fracture)


@lru_cache(maxsize=8192)
def _compute(modified: bool, *args) -> ScoreResult:
    if modified:
        return score_items(MODIFIED_TABLE, MODIFIED_SPECS, _inputs(*args))
    return score_items(TABLE, SPECS, _inputs(*args))


def _args(kwargs: dict) -> tuple:
    return (kwargs["site"], kwargs["visceral_status"], kwargs["brain_metastases"],
            kwargs["extraspinal_bone_metastases"], kwargs["vertebral_body_metastases"],
            kwargs["single_contiguous_lesion"], kwargs["collapses"], kwargs["extraspinal_fracture"])


def compute_bauer(**kwargs) -> ScoreResult:
    """Original Bauer score (0–5); keyword arguments as :func:`_inputs`."""
    return _compute(False, *_args(kwargs))


def compute_modified_bauer(**kwargs) -> ScoreResult:
    """Modified Bauer score (0–4): the fracture item removed."""
    kwargs = dict(kwargs, collapses=(), extraspinal_fracture=False)
    return _compute(True, *_args(kwargs))
