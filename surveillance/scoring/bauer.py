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
    Citation,
    InstrumentTable,
    Item,
    Option,
    ScoreResult,
    item_result,
    possible_sums,
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


def _flag(item: Item, possibilities: frozenset[bool], favourable_when: bool, value_names=("yes", "no")) -> object:
    points = {item.points("yes" if p == favourable_when else "no") for p in possibilities}
    value = (
        "unknown"
        if len(possibilities) > 1
        else value_names[0]
        if next(iter(possibilities)) == favourable_when
        else value_names[1]
    )
    return item_result(item, value, points, missing=len(possibilities) > 1)


@lru_cache(maxsize=8192)
def _compute(
    modified: bool,
    site: PrimarySite | None,
    visceral_status: VisceralStatus | None,
    brain_metastases: bool | None,
    extraspinal_bone_metastases: int | None,
    vertebral_body_metastases: int | None,
    single_contiguous_lesion: bool | None,
    collapses: tuple[Collapse | None, ...],
    extraspinal_fracture: bool | None,
) -> ScoreResult:
    table = MODIFIED_TABLE if modified else TABLE
    reasons = []
    if site is None:
        reasons.append("primary histology unknown")
    solitary = solitary_possibilities(extraspinal_bone_metastases, vertebral_body_metastases, single_contiguous_lesion)
    if not solitary:
        reasons.append("skeletal metastasis counts (extraspinal and vertebral body) not recorded")
    if reasons:
        return ScoreResult(table, (), [], reasons)

    missing: list[str] = []
    ambiguities: list[str] = []
    present = organ_metastasis_present(visceral_status, brain_metastases)
    no_visceral = _flag(table.item("no_visceral_metastases"), present, favourable_when=False)
    if no_visceral.missing:
        missing.append("visceral / brain metastases")

    if site == PrimarySite.UNKNOWN_PRIMARY:
        is_lung = frozenset({True, False})
        ambiguities.append("unknown primary: 'not lung cancer' cannot be decided [§18.12]")
    else:
        is_lung = frozenset({site in LUNG_SITES})
    not_lung = _flag(table.item("primary_not_lung"), is_lung, favourable_when=False)
    not_lung.missing = False  # undecidable by definition, not an unrecorded input

    fav_item = table.item("favourable_histology")
    favourable = item_result(fav_item, str(site), [fav_item.points("yes" if site in FAVOURABLE_SITES else "no")])

    sol_item = table.item("solitary_skeletal_metastasis")
    solitary_result = _flag(sol_item, solitary, favourable_when=True, value_names=("solitary", "multiple"))
    solitary_result.missing = False
    if len(solitary) > 1:
        solitary_result.note = "one contiguous lesion over several vertebrae: 'solitary' is undefined [§18.22]"
        ambiguities.append(solitary_result.note)

    items = [no_visceral, not_lung, favourable, solitary_result]
    if not modified:
        fractures = fracture_possibilities(collapses, extraspinal_fracture)
        fracture = _flag(
            table.item("no_pathological_fracture"),
            fractures,
            favourable_when=False,
            value_names=("no fracture", "fracture"),
        )
        if fracture.missing:
            missing.append("vertebral collapse or extraspinal pathological fracture")
        items.append(fracture)
    return ScoreResult(table, possible_sums([i.possible_points for i in items]), items, missing, ambiguities)


def compute_bauer(**kwargs) -> ScoreResult:
    """Original Bauer score (0–5); keyword arguments as :func:`_compute`."""
    return _compute(False, **kwargs)


def compute_modified_bauer(**kwargs) -> ScoreResult:
    """Modified Bauer score (0–4): the fracture item removed."""
    kwargs = dict(kwargs, collapses=(), extraspinal_fracture=False)
    return _compute(True, **kwargs)
