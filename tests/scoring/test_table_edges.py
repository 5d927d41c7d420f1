"""Table edges of every scoring system, written by hand from the published tables.

Every expected number in this file is transcribed from ``shared/clinical-reference.md``
(the section is named next to each table) or from the contract in
``shared/case-format.md``; none is computed from the engine's own tables.  The
engine is exercised only through its public entry point ``score_case``.

Conventions (case-format.md): ``possible_totals`` is the sorted set of totals
reachable over the unknown inputs and the published ambiguities; ``total`` is the
single value when there is exactly one, else ``None``; a band (SINS ``category``)
only when every possible total lies in one band; a system that cannot be computed
has ``possible_totals == []``.
"""

from __future__ import annotations

from typing import Any

import pytest

from surveillance.scoring import CaseError, score_case
from tests.scoring.case_builders import (
    LAB_FIELDS,
    NORMAL_LABS,
    SYSTEMS,
    UNKNOWN,
    lesion,
    make_case,
    visceral,
)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _check_totals(entry: dict[str, Any], expected: set[int] | list[int] | int, where: str = "") -> None:
    if isinstance(expected, int):
        expected = {expected}
    want = sorted(set(expected))
    got = entry["possible_totals"]
    assert got == want, f"{where}: possible_totals {got} != expected {want}"
    want_total = want[0] if len(want) == 1 else None
    assert entry["total"] == want_total, f"{where}: total {entry['total']} != expected {want_total}"


def _system(case: dict[str, Any], system: str) -> dict[str, Any]:
    return score_case(case)[system]


def _only_sins(les: dict[str, Any]) -> dict[str, Any]:
    result = score_case(make_case(spinal_lesions=[les]))
    assert len(result["sins"]) == 1
    return result["sins"][0]


# ===========================================================================
# 1. SINS (clinical-reference §2)
# ===========================================================================

# clinical-reference §2.2: location class of every level, occiput to S5.
SINS_LOCATION_POINTS: list[tuple[str, int]] = [
    ("Occiput", 3),
    ("C1", 3),
    ("C2", 3),
    ("C3", 2),
    ("C4", 2),
    ("C5", 2),
    ("C6", 2),
    ("C7", 3),
    ("T1", 3),
    ("T2", 3),
    ("T3", 1),
    ("T4", 1),
    ("T5", 1),
    ("T6", 1),
    ("T7", 1),
    ("T8", 1),
    ("T9", 1),
    ("T10", 1),
    ("T11", 3),
    ("T12", 3),
    ("L1", 3),
    ("L2", 2),
    ("L3", 2),
    ("L4", 2),
    ("L5", 3),
    ("S1", 3),
    ("S2", 0),
    ("S3", 0),
    ("S4", 0),
    ("S5", 0),
]


def test_location_table_covers_every_level() -> None:
    assert len(SINS_LOCATION_POINTS) == 30
    assert len({lvl for lvl, _ in SINS_LOCATION_POINTS}) == 30


@pytest.mark.parametrize(("level", "points"), SINS_LOCATION_POINTS)
def test_sins_location_every_level(level: str, points: int) -> None:
    # every other component known and 0 (pain none, blastic, normal, none, none)
    sins = _only_sins(lesion(level))
    assert sins["level"] == level
    _check_totals(sins, points, f"SINS {level}")
    assert sins["category"] == "stable"  # 0-3 all lie in 0-6 (§2.1)


# clinical-reference §2.1: each component value in isolation, at S3 (rigid, 0 points)
SINS_COMPONENT_POINTS: list[tuple[str, str, int]] = [
    ("pain", "mechanical", 3),
    ("pain", "non_mechanical", 1),
    ("pain", "none", 0),
    ("lesion_type", "lytic", 2),
    ("lesion_type", "mixed", 1),
    ("lesion_type", "blastic", 0),
    ("alignment", "subluxation", 4),
    ("alignment", "deformity", 2),
    ("alignment", "normal", 0),
    ("collapse", "gt50", 3),
    ("collapse", "lt50", 2),
    ("collapse", "none_gt50_involved", 1),
    ("collapse", "none", 0),
    ("posterolateral", "bilateral", 3),
    ("posterolateral", "unilateral", 1),
    ("posterolateral", "none", 0),
]


@pytest.mark.parametrize(("component", "value", "points"), SINS_COMPONENT_POINTS)
def test_sins_component_in_isolation(component: str, value: str, points: int) -> None:
    sins = _only_sins(lesion("S3", **{component: value}))
    _check_totals(sins, points, f"SINS S3 {component}={value}")


@pytest.mark.parametrize(("component", "value", "points"), SINS_COMPONENT_POINTS)
def test_sins_component_on_top_of_location(component: str, value: str, points: int) -> None:
    # C1 is junctional (3, §2.2): the component adds on top of the location
    sins = _only_sins(lesion("C1", **{component: value}))
    _check_totals(sins, 3 + points, f"SINS C1 {component}={value}")


# clinical-reference §2.1 values / §2.3: an unknown component is expanded over all its values
SINS_UNKNOWN_COMPONENT: list[tuple[str, set[int]]] = [
    ("pain", {0, 1, 3}),
    ("lesion_type", {0, 1, 2}),
    ("alignment", {0, 2, 4}),
    ("collapse", {0, 1, 2, 3}),
    ("posterolateral", {0, 1, 3}),
]


@pytest.mark.parametrize("how", ["null", "missing"])
@pytest.mark.parametrize(("component", "expected"), SINS_UNKNOWN_COMPONENT)
def test_sins_unknown_component_expands(component: str, expected: set[int], how: str) -> None:
    value = None if how == "null" else UNKNOWN
    sins = _only_sins(lesion("S3", **{component: value}))
    _check_totals(sins, expected, f"SINS S3 {component} {how}")
    # at T8 (semirigid, 1 point) the same offsets shift by one
    sins = _only_sins(lesion("T8", **{component: value}))
    _check_totals(sins, {1 + x for x in expected}, f"SINS T8 {component} {how}")


def test_sins_pain_unknown_adds_0_1_3() -> None:
    # §2.3: T12 junctional 3 + lytic 2 + lt50 2 + unilateral 1 = 8; pain unknown -> 8, 9, 11
    sins = _only_sins(lesion("T12", pain=None, lesion_type="lytic", collapse="lt50", posterolateral="unilateral"))
    _check_totals(sins, {8, 9, 11}, "SINS T12 pain unknown")
    assert sins["category"] == "potentially_unstable"


def test_sins_every_component_unknown() -> None:
    # §2.1: the five non-location components reach every sum 0..15
    unknown = dict.fromkeys(("pain", "lesion_type", "alignment", "collapse", "posterolateral"))
    _check_totals(_only_sins(lesion("S3", **unknown)), set(range(16)), "S3 all unknown")
    sins = _only_sins(lesion("C1", **unknown))
    _check_totals(sins, set(range(3, 19)), "C1 all unknown")
    assert sins["category"] is None


# clinical-reference §2.2 note: a lesion spanning two location classes reports every
# possible total.  Quiet lesion (all other components 0) -> the set of location points.
SINS_SPANS: list[tuple[list[str], set[int]]] = [
    (["T2", "T3"], {3, 1}),  # junctional / semirigid
    (["C6", "C7"], {2, 3}),  # mobile / junctional
    (["T10", "T11"], {1, 3}),  # semirigid / junctional
    (["L4", "L5"], {2, 3}),  # mobile / junctional
    (["S1", "S2"], {3, 0}),  # junctional / rigid
    (["C2", "C3"], {3, 2}),  # junctional / mobile
    (["L1", "L2"], {3, 2}),  # junctional / mobile
    (["C7", "T1", "T2", "T3"], {3, 1}),
    (["L5", "S1", "S2"], {3, 0}),
    (["C6", "C7", "T1", "T2", "T3"], {2, 3, 1}),
    # spans inside one class are not ambiguous
    (["T1", "T2"], {3}),
    (["T11", "T12", "L1"], {3}),
    (["T4", "T5", "T6"], {1}),
    (["C3", "C4"], {2}),
    (["S2", "S3"], {0}),
]


@pytest.mark.parametrize(("span", "expected"), SINS_SPANS, ids=lambda v: "-".join(v) if isinstance(v, list) else None)
def test_sins_span_gives_every_location(span: list[str], expected: set[int]) -> None:
    sins = _only_sins(lesion(span[0], level_span=span))
    _check_totals(sins, expected, f"span {span}")


@pytest.mark.parametrize(("level", "span"), [("T2", ["T2", "T3"]), ("T3", ["T2", "T3"]), ("S2", ["S1", "S2"])])
def test_sins_span_independent_of_index_level(level: str, span: list[str]) -> None:
    # the span, not the recorded `level`, carries the ambiguity (§2.2 note): do not
    # silently take the index level's class either
    expected = {"T2": {3, 1}, "T3": {3, 1}, "S2": {3, 0}}[level]
    sins = _only_sins(lesion(level, level_span=span))
    _check_totals(sins, expected, f"level {level} span {span}")


def test_sins_span_with_other_components() -> None:
    # §2.2: T2-T3 + non_mechanical 1 + lytic 2 + lt50 2 = 5 + {3, 1} -> {6, 8}: crosses 6/7
    sins = _only_sins(
        lesion("T2", level_span=["T2", "T3"], pain="non_mechanical", lesion_type="lytic", collapse="lt50")
    )
    _check_totals(sins, {6, 8}, "T2-T3 span")
    assert sins["category"] is None


def test_sins_span_with_unknown_pain() -> None:
    # L4-L5: location {2, 3}, pain {0, 1, 3} -> {2, 3, 4, 5, 6}, all stable
    sins = _only_sins(lesion("L4", level_span=["L4", "L5"], pain=None))
    _check_totals(sins, {2, 3, 4, 5, 6}, "L4-L5 span, pain unknown")
    assert sins["category"] == "stable"


# clinical-reference §2.1 category table: 0-6 stable, 7-12 potentially unstable, 13-18 unstable
SINS_CATEGORY_EDGES: list[tuple[dict[str, Any], set[int], str | None]] = [
    ({"level": "S3"}, {0}, "stable"),
    # L3 2 + lytic 2 + lt50 2 = 6
    ({"level": "L3", "lesion_type": "lytic", "collapse": "lt50"}, {6}, "stable"),
    # T8 1 + non_mechanical 1 + mixed 1 + deformity 2 + none_gt50_involved 1 = 6
    (
        {
            "level": "T8",
            "pain": "non_mechanical",
            "lesion_type": "mixed",
            "alignment": "deformity",
            "collapse": "none_gt50_involved",
        },
        {6},
        "stable",
    ),
    # L3 2 + lytic 2 + gt50 3 = 7
    ({"level": "L3", "lesion_type": "lytic", "collapse": "gt50"}, {7}, "potentially_unstable"),
    # T1 3 + mixed 1 + deformity 2 + unilateral 1 = 7
    (
        {"level": "T1", "lesion_type": "mixed", "alignment": "deformity", "posterolateral": "unilateral"},
        {7},
        "potentially_unstable",
    ),
    # C5 2 + mechanical 3 + lytic 2 + subluxation 4 + unilateral 1 = 12
    (
        {
            "level": "C5",
            "pain": "mechanical",
            "lesion_type": "lytic",
            "alignment": "subluxation",
            "posterolateral": "unilateral",
        },
        {12},
        "potentially_unstable",
    ),
    # C5 2 + mechanical 3 + lytic 2 + subluxation 4 + lt50 2 = 13
    (
        {"level": "C5", "pain": "mechanical", "lesion_type": "lytic", "alignment": "subluxation", "collapse": "lt50"},
        {13},
        "unstable",
    ),
    # C1 3 + 3 + 2 + 4 + 3 + 3 = 18, the maximum
    (
        {
            "level": "C1",
            "pain": "mechanical",
            "lesion_type": "lytic",
            "alignment": "subluxation",
            "collapse": "gt50",
            "posterolateral": "bilateral",
        },
        {18},
        "unstable",
    ),
    # pain unknown (+0/1/3) around the boundaries
    ({"level": "T8", "pain": None, "lesion_type": "lytic", "collapse": "lt50"}, {5, 6, 8}, None),
    ({"level": "L3", "pain": None, "lesion_type": "lytic", "collapse": "lt50"}, {6, 7, 9}, None),
    ({"level": "L3", "pain": None, "lesion_type": "lytic", "collapse": "gt50"}, {7, 8, 10}, "potentially_unstable"),
    (
        {
            "level": "C5",
            "pain": None,
            "lesion_type": "lytic",
            "alignment": "subluxation",
            "posterolateral": "unilateral",
        },
        {9, 10, 12},
        "potentially_unstable",
    ),
    (
        {"level": "C5", "pain": None, "lesion_type": "lytic", "alignment": "subluxation", "collapse": "lt50"},
        {10, 11, 13},
        None,
    ),
    (
        {
            "level": "C1",
            "pain": None,
            "lesion_type": "lytic",
            "alignment": "subluxation",
            "collapse": "gt50",
            "posterolateral": "bilateral",
        },
        {15, 16, 18},
        "unstable",
    ),
]


@pytest.mark.parametrize(("spec", "expected", "category"), SINS_CATEGORY_EDGES)
def test_sins_category_boundaries(spec: dict[str, Any], expected: set[int], category: str | None) -> None:
    spec = dict(spec)
    level = spec.pop("level")
    sins = _only_sins(lesion(level, **spec))
    _check_totals(sins, expected, f"SINS {level} {spec}")
    assert sins["category"] == category


def test_sins_one_result_per_lesion_in_order() -> None:
    # §2.2: C4 mobile 2, T6 semirigid 1, L2 mobile 2, S4 rigid 0
    result = score_case(make_case(spinal_lesions=[lesion("C4"), lesion("T6"), lesion("L2"), lesion("S4")]))
    assert [s["level"] for s in result["sins"]] == ["C4", "T6", "L2", "S4"]
    assert [s["possible_totals"] for s in result["sins"]] == [[2], [1], [2], [0]]
    assert [n["level"] for n in result["noms"]] == ["C4", "T6", "L2", "S4"]


def test_no_lesions_gives_empty_sins_and_noms() -> None:
    result = score_case(make_case(spinal_lesions=[]))
    assert result["sins"] == []
    assert result["noms"] == []


# ===========================================================================
# 2. New Katagiri laboratory item (clinical-reference §8.1, §8.4)
# ===========================================================================
#
# Base: thyroid (slow, 0), no visceral/brain metastases (0), ECOG 0 (0), no previous
# chemotherapy (0), one skeletal metastasis (0) -> Katagiri total == lab points.


def _katagiri_lab_case(**labs: Any) -> dict[str, Any]:
    return make_case(primary_site="thyroid", hormone_dependent=None, **labs)


def test_katagiri_lab_base_is_zero() -> None:
    _check_totals(_system(_katagiri_lab_case(), "new_katagiri"), 0, "Katagiri base")


# clinical-reference §8.1 (and §0: >= for CRP, LDH, calcium, bilirubin; < for albumin, platelets)
KATAGIRI_LAB_EDGES: list[tuple[str, float, int]] = [
    ("crp_mg_dl", 0.39, 0),
    ("crp_mg_dl", 0.4, 1),
    ("crp_mg_dl", 0.41, 1),
    ("ldh_u_l", 249, 0),
    ("ldh_u_l", 249.9, 0),
    ("ldh_u_l", 250, 1),
    ("ldh_u_l", 250.0, 1),
    ("ldh_u_l", 251, 1),
    ("albumin_g_dl", 3.71, 0),
    ("albumin_g_dl", 3.7, 0),
    ("albumin_g_dl", 3.69, 1),
    ("platelets_per_ul", 100001, 0),
    ("platelets_per_ul", 100000, 0),
    ("platelets_per_ul", 99999, 2),
    ("calcium_mg_dl", 10.29, 0),
    ("calcium_mg_dl", 10.3, 2),
    ("calcium_mg_dl", 10.31, 2),
    ("total_bilirubin_mg_dl", 1.39, 0),
    ("total_bilirubin_mg_dl", 1.4, 2),
    ("total_bilirubin_mg_dl", 1.41, 2),
]


@pytest.mark.parametrize(("field", "value", "points"), KATAGIRI_LAB_EDGES)
def test_katagiri_lab_threshold(field: str, value: float, points: int) -> None:
    _check_totals(_system(_katagiri_lab_case(**{field: value}), "new_katagiri"), points, f"{field}={value}")


# clinical-reference §8.1: the item takes the highest tier present; tiers do not add up
KATAGIRI_LAB_TIERS: list[tuple[dict[str, float], int]] = [
    ({"crp_mg_dl": 1.0, "ldh_u_l": 300, "albumin_g_dl": 3.0}, 1),
    ({"crp_mg_dl": 1.0, "platelets_per_ul": 50000}, 2),
    ({"albumin_g_dl": 3.0, "calcium_mg_dl": 11.0}, 2),
    ({"platelets_per_ul": 50000, "calcium_mg_dl": 11.0, "total_bilirubin_mg_dl": 2.0}, 2),
    (
        {
            "crp_mg_dl": 1.0,
            "ldh_u_l": 300,
            "albumin_g_dl": 3.0,
            "platelets_per_ul": 50000,
            "calcium_mg_dl": 11.0,
            "total_bilirubin_mg_dl": 2.0,
        },
        2,
    ),
]


@pytest.mark.parametrize(("labs", "points"), KATAGIRI_LAB_TIERS)
def test_katagiri_lab_highest_tier_wins(labs: dict[str, float], points: int) -> None:
    _check_totals(_system(_katagiri_lab_case(**labs), "new_katagiri"), points, f"labs {labs}")


# clinical-reference §8.4 missing laboratory values.  Each row: the measured values
# (every lab not listed is missing) and the reachable lab points.
KATAGIRI_MISSING_LABS: list[tuple[str, dict[str, float], set[int]]] = [
    # V32 in §8.4: only albumin measured (normal) -> 0-2
    ("only albumin normal", {"albumin_g_dl": 4.2}, {0, 1, 2}),
    ("only albumin low", {"albumin_g_dl": 3.0}, {1, 2}),
    ("nothing measured", {}, {0, 1, 2}),
    ("only platelets normal", {"platelets_per_ul": 250000}, {0, 1, 2}),
    # every critical-tier test measured and normal: max 1 (abnormal tier missing), min 0
    (
        "critical normal, abnormal missing",
        {"platelets_per_ul": 250000, "calcium_mg_dl": 9.5, "total_bilirubin_mg_dl": 0.5},
        {0, 1},
    ),
    (
        "critical normal, CRP high, rest missing",
        {"crp_mg_dl": 1.0, "platelets_per_ul": 250000, "calcium_mg_dl": 9.5, "total_bilirubin_mg_dl": 0.5},
        {1},
    ),
    ("only platelets critical", {"platelets_per_ul": 50000}, {2}),
    ("only bilirubin critical", {"total_bilirubin_mg_dl": 2.0}, {2}),
    (
        "all normal but CRP missing",
        {k: v for k, v in NORMAL_LABS.items() if k != "crp_mg_dl"},
        {0, 1},
    ),
    # Every abnormal-tier test measured and normal, so the item is 0 (critical normal)
    # or 2 (critical positive); 1 is not reachable.  §8.4 gives min 0 / max 2, and the
    # contract (case-format.md) makes possible_totals the set of reachable totals.
    (
        "abnormal normal, critical missing",
        {"crp_mg_dl": 0.1, "ldh_u_l": 180, "albumin_g_dl": 4.2},
        {0, 2},
    ),
    (
        "all normal but calcium missing",
        {k: v for k, v in NORMAL_LABS.items() if k != "calcium_mg_dl"},
        {0, 2},
    ),
    (
        "CRP high, calcium missing, rest normal",
        {**{k: v for k, v in NORMAL_LABS.items() if k != "calcium_mg_dl"}, "crp_mg_dl": 1.0},
        {1, 2},
    ),
]


@pytest.mark.parametrize(
    ("label", "measured", "expected"), KATAGIRI_MISSING_LABS, ids=[r[0] for r in KATAGIRI_MISSING_LABS]
)
@pytest.mark.parametrize("how", ["null", "missing"])
def test_katagiri_missing_labs(label: str, measured: dict[str, float], expected: set[int], how: str) -> None:
    filler = None if how == "null" else UNKNOWN
    labs = {field: measured.get(field, filler) for field in LAB_FIELDS}
    _check_totals(_system(_katagiri_lab_case(**labs), "new_katagiri"), expected, label)


# ===========================================================================
# 3. Revised Tokuhashi (clinical-reference §5, §15, §1.1, §1.2)
# ===========================================================================
#
# Base (case_builders): KPS 90 -> 2, extraspinal 0 -> 2, one vertebral body -> 2,
# no organ metastases -> 2, Frankel E -> 2; the primary site adds 0-5.

TOKUHASHI_BASE_WITHOUT_PRIMARY = 10

# clinical-reference §5.2 and §15 "Tokuhashi primary" column, for every case-format code
TOKUHASHI_PRIMARY_POINTS: dict[str, set[int]] = {
    "lung_nsclc": {0},
    "lung_sclc": {0},
    "breast": {5},
    "prostate": {5},
    "thyroid": {5},
    "kidney": {3},
    "liver": {1},
    "colon": {2},  # others
    "rectum": {4},
    "stomach": {0},
    "esophagus": {0},
    "pancreas": {0},
    "gallbladder": {1},
    "bladder": {0},
    "uterus": {3},
    "cervix": {2, 3},  # ambiguous: "uterus" 3 or "others" 2 (§5.2, §18.9)
    "ovary": {2},
    "head_neck": {2},
    "myeloma": {2},
    "lymphoma": {2},
    "melanoma": {2},
    "soft_tissue_sarcoma": {2},
    "osteosarcoma": {0},
    "neuroendocrine": {5},  # carcinoid tumour
    "testis_germ_cell": {2},
    "unknown_primary": {1},  # unidentified
    "other": {2},
}

ALL_PRIMARY_SITES = list(TOKUHASHI_PRIMARY_POINTS)


def test_primary_site_tables_cover_the_case_format_codes() -> None:
    # case-format.md lists 27 primary_site codes
    from surveillance.scoring.vocab import PrimarySite, allowed

    assert sorted(ALL_PRIMARY_SITES) == sorted(allowed(PrimarySite))
    assert len(ALL_PRIMARY_SITES) == 27


def _site_case(site: str, **overrides: Any) -> dict[str, Any]:
    """A case with ``primary_site`` and the site-specific flags set sensibly."""
    fields: dict[str, Any] = {"primary_site": site, "hormone_dependent": None, "molecular_targeted_therapy": None}
    if site in ("breast", "prostate"):
        fields["hormone_dependent"] = True
    if site == "lung_nsclc":
        fields["molecular_targeted_therapy"] = False
    fields.update(overrides)
    return make_case(**fields)


@pytest.mark.parametrize(("site", "points"), list(TOKUHASHI_PRIMARY_POINTS.items()))
def test_tokuhashi_primary_site(site: str, points: set[int]) -> None:
    expected = {TOKUHASHI_BASE_WITHOUT_PRIMARY + p for p in points}
    _check_totals(_system(_site_case(site), "revised_tokuhashi"), expected, f"Tokuhashi {site}")


# clinical-reference §5.1: KPS 10-40 -> 0, 50-70 -> 1, 80-100 -> 2 (KPS only, no ECOG)
TOKUHASHI_KPS_POINTS: list[tuple[int, int]] = [
    (10, 0), (20, 0), (30, 0), (40, 0),
    (50, 1), (60, 1), (70, 1),
    (80, 2), (90, 2), (100, 2),
]  # fmt: skip


@pytest.mark.parametrize(("kps", "points"), TOKUHASHI_KPS_POINTS)
def test_tokuhashi_kps_only(kps: int, points: int) -> None:
    case = make_case(kps=kps, ecog=None)
    _check_totals(_system(case, "revised_tokuhashi"), 13 + points, f"KPS {kps}")


# clinical-reference §1.1: Tokuhashi from ECOG when no KPS is recorded
TOKUHASHI_ECOG_ONLY_POINTS: list[tuple[int, set[int]]] = [
    (0, {2}),
    (1, {1, 2}),
    (2, {1}),
    (3, {0}),
    (4, {0}),
]


@pytest.mark.parametrize("how", ["null", "missing"])
@pytest.mark.parametrize(("ecog", "points"), TOKUHASHI_ECOG_ONLY_POINTS)
def test_tokuhashi_ecog_only(ecog: int, points: set[int], how: str) -> None:
    case = make_case(ecog=ecog, kps=None if how == "null" else UNKNOWN)
    _check_totals(_system(case, "revised_tokuhashi"), {13 + p for p in points}, f"ECOG {ecog} only")


def test_tokuhashi_no_performance_status() -> None:
    # §5.4 / §16: neither ECOG nor KPS -> {0, 1, 2}
    case = make_case(ecog=None, kps=None)
    _check_totals(_system(case, "revised_tokuhashi"), {13, 14, 15}, "no PS")


@pytest.mark.parametrize(("ecog", "kps", "points"), [(0, 40, 0), (4, 100, 2), (1, 70, 1), (1, 80, 2)])
def test_tokuhashi_uses_native_kps_when_both(ecog: int, kps: int, points: int) -> None:
    # §1.1: if both scales are recorded, each score uses its own native scale
    _check_totals(_system(make_case(ecog=ecog, kps=kps), "revised_tokuhashi"), 13 + points, f"ECOG {ecog} KPS {kps}")


# clinical-reference §1.2: palsy A/B 0, C/D 1, E 2; unknown {0, 1, 2} (§5.4)
TOKUHASHI_FRANKEL_POINTS: list[tuple[str | None, set[int]]] = [
    ("A", {0}),
    ("B", {0}),
    ("C", {1}),
    ("D", {1}),
    ("E", {2}),
    (None, {0, 1, 2}),
]


@pytest.mark.parametrize(("grade", "points"), TOKUHASHI_FRANKEL_POINTS)
def test_tokuhashi_frankel(grade: str | None, points: set[int]) -> None:
    case = make_case(frankel_grade=grade)
    _check_totals(_system(case, "revised_tokuhashi"), {13 + p for p in points}, f"Frankel {grade}")


# clinical-reference §5.1 / §5.3: vertebral bodies >= 3 -> 0, 2 -> 1, 1 -> 2
TOKUHASHI_VERTEBRAL_POINTS: list[tuple[int, int]] = [(1, 2), (2, 1), (3, 0), (4, 0), (12, 0)]


@pytest.mark.parametrize(("count", "points"), TOKUHASHI_VERTEBRAL_POINTS)
def test_tokuhashi_vertebral_body_count(count: int, points: int) -> None:
    case = make_case(vertebral_body_metastases=count)
    _check_totals(_system(case, "revised_tokuhashi"), 13 + points, f"{count} vertebral bodies")


# clinical-reference §5.1: extraspinal foci >= 3 -> 0, 1-2 -> 1, 0 -> 2
TOKUHASHI_EXTRASPINAL_POINTS: list[tuple[int, int]] = [(0, 2), (1, 1), (2, 1), (3, 0), (8, 0)]


@pytest.mark.parametrize(("count", "points"), TOKUHASHI_EXTRASPINAL_POINTS)
def test_tokuhashi_extraspinal_count(count: int, points: int) -> None:
    case = make_case(extraspinal_bone_metastases=count)
    _check_totals(_system(case, "revised_tokuhashi"), 13 + points, f"{count} extraspinal")


# clinical-reference §5.1 (organ metastases: unremovable 0, removable 1, none 2),
# §5.4 (removability unknown {0, 1}; brain is a major internal organ)
TOKUHASHI_ORGAN_POINTS: list[tuple[str, dict[str, Any] | None, bool | None, set[int]]] = [
    ("none", visceral("none"), False, {2}),
    ("nodular removable", visceral("nodular", removable=True), False, {1}),
    ("nodular unremovable", visceral("nodular", removable=False), False, {0}),
    ("nodular removable unknown", visceral("nodular", removable=None), False, {0, 1}),
    ("disseminated unremovable", visceral("disseminated", removable=False), False, {0}),
    ("disseminated removable", visceral("disseminated", removable=True), False, {1}),
    ("brain only, removable unknown", visceral("none"), True, {0, 1}),
    ("visceral entirely unknown", None, False, {0, 1, 2}),
]


@pytest.mark.parametrize(
    ("label", "visc", "brain", "points"), TOKUHASHI_ORGAN_POINTS, ids=[r[0] for r in TOKUHASHI_ORGAN_POINTS]
)
def test_tokuhashi_organ_metastases(label: str, visc: Any, brain: bool | None, points: set[int]) -> None:
    case = make_case(visceral_metastases=visc, brain_metastases=brain)
    _check_totals(_system(case, "revised_tokuhashi"), {13 + p for p in points}, label)


# clinical-reference §5.1 bands: 0-8, 9-11, 12-15
TOKUHASHI_BANDS: list[tuple[dict[str, Any], set[int], str | None]] = [
    # lung 0 + KPS 2 + extra 2 + vertebral 2 + organ 2 + Frankel A 0 = 8
    ({"primary_site": "lung_nsclc", "frankel_grade": "A"}, {8}, "0-8"),
    # ... Frankel C 1 -> 9
    ({"primary_site": "lung_nsclc", "frankel_grade": "C"}, {9}, "9-11"),
    # liver 1 + 10 = 11
    ({"primary_site": "liver"}, {11}, "9-11"),
    # colon 2 + 10 = 12
    ({"primary_site": "colon"}, {12}, "12-15"),
    # lung 0, KPS 20 0, extra 3 0, vertebral 3 0, unremovable 0, Frankel A 0 = 0
    (
        {
            "primary_site": "lung_nsclc",
            "kps": 20,
            "ecog": 4,
            "extraspinal_bone_metastases": 3,
            "vertebral_body_metastases": 3,
            "visceral_metastases": visceral("nodular", False, False),
            "frankel_grade": "A",
        },
        {0},
        "0-8",
    ),
    # lung, Frankel unknown -> 8, 9, 10: crosses 8/9
    ({"primary_site": "lung_nsclc", "frankel_grade": None}, {8, 9, 10}, None),
    # cervix {12, 13}: one band
    ({"primary_site": "cervix"}, {12, 13}, "12-15"),
]


@pytest.mark.parametrize(("overrides", "expected", "band"), TOKUHASHI_BANDS)
def test_tokuhashi_bands(overrides: dict[str, Any], expected: set[int], band: str | None) -> None:
    overrides = {"hormone_dependent": None, "molecular_targeted_therapy": False, **overrides}
    tok = _system(make_case(**overrides), "revised_tokuhashi")
    _check_totals(tok, expected, str(overrides))
    assert tok["band"] == band


# ===========================================================================
# 4. Tomita (clinical-reference §4, §15)
# ===========================================================================

# clinical-reference §4.2 / §15 "Tomita" column; unnamed histologies enumerate {1, 2, 4}
UNNAMED_TOMITA = {1, 2, 4}
TOMITA_GROWTH_POINTS: dict[str, set[int]] = {
    "breast": {1},
    "thyroid": {1},
    "prostate": {1},
    "kidney": {2},
    "uterus": {2},
    "cervix": {2},  # [CONV] uterus includes the cervix
    "lung_nsclc": {4},
    "lung_sclc": {4},
    "stomach": {4},
    "liver": {4},
    "colon": {4},
    "rectum": {4},  # [CONV] colorectal
    "unknown_primary": {4},
    "myeloma": UNNAMED_TOMITA,
    "lymphoma": UNNAMED_TOMITA,
    "melanoma": UNNAMED_TOMITA,
    "soft_tissue_sarcoma": UNNAMED_TOMITA,
    "osteosarcoma": UNNAMED_TOMITA,
    "neuroendocrine": UNNAMED_TOMITA,
    "testis_germ_cell": UNNAMED_TOMITA,
    "esophagus": UNNAMED_TOMITA,
    "pancreas": UNNAMED_TOMITA,
    "bladder": UNNAMED_TOMITA,
    "ovary": UNNAMED_TOMITA,
    "gallbladder": UNNAMED_TOMITA,
    "head_neck": UNNAMED_TOMITA,
    "other": UNNAMED_TOMITA,  # a known histology no system names
}


def test_tomita_table_covers_every_code() -> None:
    assert sorted(TOMITA_GROWTH_POINTS) == sorted(ALL_PRIMARY_SITES)


@pytest.mark.parametrize(("site", "points"), list(TOMITA_GROWTH_POINTS.items()))
def test_tomita_growth_class(site: str, points: set[int]) -> None:
    # no visceral metastases 0, solitary 1
    _check_totals(_system(_site_case(site), "tomita"), {p + 1 for p in points}, f"Tomita {site}")


# clinical-reference §4.1 / §4.3: none 0, treatable 2, untreatable 4, treatable unknown {2, 4};
# brain counted as an organ metastasis.  Kidney (2) + visceral + solitary (1).
TOMITA_VISCERAL: list[tuple[str, dict[str, Any] | None, bool | None, set[int]]] = [
    ("none", visceral("none"), False, {0}),
    ("nodular treatable", visceral("nodular", treatable=True), False, {2}),
    ("nodular untreatable", visceral("nodular", treatable=False), False, {4}),
    ("nodular treatable unknown", visceral("nodular", treatable=None), False, {2, 4}),
    ("disseminated untreatable", visceral("disseminated", treatable=False), False, {4}),
    ("disseminated treatable unknown", visceral("disseminated"), False, {2, 4}),
    ("brain only treatable", visceral("none", treatable=True), True, {2}),
    ("brain only untreatable", visceral("none", treatable=False), True, {4}),
    ("brain only treatable unknown", visceral("none"), True, {2, 4}),
    ("visceral entirely unknown", None, False, {0, 2, 4}),
]


@pytest.mark.parametrize(("label", "visc", "brain", "points"), TOMITA_VISCERAL, ids=[r[0] for r in TOMITA_VISCERAL])
def test_tomita_visceral(label: str, visc: Any, brain: bool | None, points: set[int]) -> None:
    case = _site_case("kidney", visceral_metastases=visc, brain_metastases=brain)
    _check_totals(_system(case, "tomita"), {2 + p + 1 for p in points}, label)


# clinical-reference §4.1 / §4.3: solitary (exactly one skeletal metastasis) 1, multiple 2;
# one contiguous lesion over several vertebrae ("isolated") is undefined -> both.
# (vertebral bodies, extraspinal foci, single contiguous lesion) -> points
BONE_SOLITARY: list[tuple[int, int, bool | None, set[int]]] = [
    (1, 0, False, {1}),
    (1, 0, True, {1}),
    (1, 0, None, {1}),
    (2, 0, False, {2}),
    (1, 1, False, {2}),
    (3, 0, False, {2}),
    (2, 0, True, {1, 2}),  # isolated ambiguity (§4.3, §18.22)
    (2, 0, None, {1, 2}),  # the flag unknown: both
    (2, 1, True, {2}),  # an extraspinal focus makes it multiple anyway
]


@pytest.mark.parametrize(("vertebral", "extraspinal", "single", "points"), BONE_SOLITARY)
def test_tomita_solitary_or_multiple(vertebral: int, extraspinal: int, single: bool | None, points: set[int]) -> None:
    case = _site_case(
        "kidney",
        vertebral_body_metastases=vertebral,
        extraspinal_bone_metastases=extraspinal,
        spinal_involvement_single_contiguous_lesion=single,
    )
    _check_totals(_system(case, "tomita"), {2 + 0 + p for p in points}, f"{vertebral}/{extraspinal}/{single}")


# clinical-reference §4.1 bands: 2-3, 4-5, 6-7, 8-10
TOMITA_BANDS: list[tuple[str, dict[str, Any], set[int], str | None]] = [
    ("breast", {}, {2}, "2-3"),
    ("kidney", {}, {3}, "2-3"),
    ("kidney", {"vertebral_body_metastases": 2}, {4}, "4-5"),
    ("lung_nsclc", {}, {5}, "4-5"),
    ("lung_nsclc", {"vertebral_body_metastases": 2}, {6}, "6-7"),
    # breast 1 + untreatable 4 + multiple 2 = 7
    ("breast", {"visceral_metastases": visceral("nodular", False), "vertebral_body_metastases": 2}, {7}, "6-7"),
    # lung 4 + treatable 2 + multiple 2 = 8
    ("lung_nsclc", {"visceral_metastases": visceral("nodular", True), "extraspinal_bone_metastases": 1}, {8}, "8-10"),
    # lung 4 + untreatable 4 + multiple 2 = 10, the maximum
    (
        "lung_nsclc",
        {"visceral_metastases": visceral("disseminated", False), "vertebral_body_metastases": 5},
        {10},
        "8-10",
    ),
    # unnamed (melanoma) {1, 2, 4} + 0 + 1 = {2, 3, 5}: crosses 3/4
    ("melanoma", {}, {2, 3, 5}, None),
    # kidney 2 + 0 + isolated {1, 2} = {3, 4}: crosses 3/4
    ("kidney", {"vertebral_body_metastases": 2, "spinal_involvement_single_contiguous_lesion": True}, {3, 4}, None),
    # breast 1 + 0 + isolated {1, 2} = {2, 3}: one band
    ("breast", {"vertebral_body_metastases": 2, "spinal_involvement_single_contiguous_lesion": True}, {2, 3}, "2-3"),
]


@pytest.mark.parametrize(("site", "overrides", "expected", "band"), TOMITA_BANDS)
def test_tomita_bands(site: str, overrides: dict[str, Any], expected: set[int], band: str | None) -> None:
    tomita = _system(_site_case(site, **overrides), "tomita")
    _check_totals(tomita, expected, f"{site} {overrides}")
    assert tomita["band"] == band


# ===========================================================================
# 5. Bauer and modified Bauer (clinical-reference §6, §15)
# ===========================================================================
#
# Base: no visceral/brain metastases (1), solitary (1), no pathological fracture (1,
# original only).  The histology adds the "not lung" and the "breast, kidney, lymphoma,
# myeloma" points: Bauer = 3 + histology, modified Bauer = 2 + histology.

# clinical-reference §6.1 note and §15 "Bauer favourable" / "Bauer lung" columns
BAUER_HISTOLOGY_POINTS: dict[str, set[int]] = {
    "breast": {2},
    "kidney": {2},
    "lymphoma": {2},
    "myeloma": {2},
    "lung_nsclc": {0},
    "lung_sclc": {0},
    "unknown_primary": {0, 1},  # "not lung" undetermined (§6.2, §18.12)
    "prostate": {1},
    "thyroid": {1},
    "liver": {1},
    "colon": {1},
    "rectum": {1},
    "stomach": {1},
    "esophagus": {1},
    "pancreas": {1},
    "gallbladder": {1},
    "bladder": {1},
    "uterus": {1},
    "cervix": {1},
    "ovary": {1},
    "head_neck": {1},
    "melanoma": {1},
    "soft_tissue_sarcoma": {1},
    "osteosarcoma": {1},
    "neuroendocrine": {1},
    "testis_germ_cell": {1},
    "other": {1},
}


def test_bauer_table_covers_every_code() -> None:
    assert sorted(BAUER_HISTOLOGY_POINTS) == sorted(ALL_PRIMARY_SITES)


@pytest.mark.parametrize(("site", "points"), list(BAUER_HISTOLOGY_POINTS.items()))
def test_bauer_histology(site: str, points: set[int]) -> None:
    result = score_case(_site_case(site))
    _check_totals(result["bauer"], {3 + p for p in points}, f"Bauer {site}")
    _check_totals(result["modified_bauer"], {2 + p for p in points}, f"modified Bauer {site}")


# clinical-reference §6.1 items and §6.2 definitions; breast base = Bauer 5, modified 4.
# (label, overrides, Bauer totals, modified Bauer totals)
BAUER_ITEMS: list[tuple[str, dict[str, Any], set[int], set[int]]] = [
    ("base", {}, {5}, {4}),
    ("nodular visceral", {"visceral_metastases": visceral("nodular", True, True)}, {4}, {3}),
    ("disseminated visceral", {"visceral_metastases": visceral("disseminated", False, False)}, {4}, {3}),
    ("brain counts as visceral", {"brain_metastases": True}, {4}, {3}),
    ("visceral unknown", {"visceral_metastases": None}, {4, 5}, {3, 4}),
    ("brain unknown", {"brain_metastases": None}, {4, 5}, {3, 4}),
    ("two vertebral bodies", {"vertebral_body_metastases": 2}, {4}, {3}),
    ("one extraspinal focus", {"extraspinal_bone_metastases": 1}, {4}, {3}),
    (
        "isolated contiguous lesion",
        {"vertebral_body_metastases": 2, "spinal_involvement_single_contiguous_lesion": True},
        {4, 5},
        {3, 4},
    ),
    ("collapse lt50 is a fracture", {"spinal_lesions": [lesion("T8", collapse="lt50")]}, {4}, {4}),
    ("collapse gt50 is a fracture", {"spinal_lesions": [lesion("T8", collapse="gt50")]}, {4}, {4}),
    ("no collapse, >50% involved", {"spinal_lesions": [lesion("T8", collapse="none_gt50_involved")]}, {5}, {4}),
    ("collapse unknown", {"spinal_lesions": [lesion("T8", collapse=None)]}, {4, 5}, {4}),
    ("extraspinal fracture", {"extraspinal_pathological_fracture": True}, {4}, {4}),
    ("extraspinal fracture unknown", {"extraspinal_pathological_fracture": None}, {4, 5}, {4}),
    (
        "fracture in a second lesion",
        {"vertebral_body_metastases": 2, "spinal_lesions": [lesion("T8"), lesion("L2", collapse="lt50")]},
        {3},
        {3},
    ),
]


@pytest.mark.parametrize(("label", "overrides", "bauer", "mbauer"), BAUER_ITEMS, ids=[r[0] for r in BAUER_ITEMS])
def test_bauer_items(label: str, overrides: dict[str, Any], bauer: set[int], mbauer: set[int]) -> None:
    result = score_case(make_case(**overrides))
    _check_totals(result["bauer"], bauer, f"Bauer {label}")
    _check_totals(result["modified_bauer"], mbauer, f"modified Bauer {label}")


# clinical-reference §6.1 bands: original 0-1 / 2-3 / 4-5; modified 0-1 / 2 / 3-4
MULTIPLE = {"vertebral_body_metastases": 3}
FRACTURE = {"spinal_lesions": [lesion("T8", collapse="lt50")]}
BAUER_BANDS: list[tuple[str, dict[str, Any], set[int], str | None, set[int], str | None]] = [
    (
        "lung_nsclc",
        {**MULTIPLE, **FRACTURE, "visceral_metastases": visceral("nodular", False, False)},
        {0},
        "0-1",
        {0},
        "0-1",
    ),
    ("lung_nsclc", {**MULTIPLE, **FRACTURE}, {1}, "0-1", {1}, "0-1"),
    ("colon", {**MULTIPLE, **FRACTURE}, {2}, "2-3", {2}, "2"),
    ("colon", {**FRACTURE}, {3}, "2-3", {3}, "3-4"),
    ("colon", {}, {4}, "4-5", {3}, "3-4"),
    ("kidney", {}, {5}, "4-5", {4}, "3-4"),
    ("unknown_primary", {**FRACTURE}, {2, 3}, "2-3", {2, 3}, None),
    ("unknown_primary", {}, {3, 4}, None, {2, 3}, None),
    (
        "unknown_primary",
        {**MULTIPLE, **FRACTURE, "visceral_metastases": visceral("nodular", False, False)},
        {0, 1},
        "0-1",
        {0, 1},
        "0-1",
    ),
]


@pytest.mark.parametrize(("site", "overrides", "bauer", "band", "mbauer", "mband"), BAUER_BANDS)
def test_bauer_bands(
    site: str, overrides: dict[str, Any], bauer: set[int], band: str | None, mbauer: set[int], mband: str | None
) -> None:
    result = score_case(_site_case(site, **overrides))
    _check_totals(result["bauer"], bauer, f"Bauer {site} {overrides}")
    assert result["bauer"]["band"] == band
    _check_totals(result["modified_bauer"], mbauer, f"modified Bauer {site} {overrides}")
    assert result["modified_bauer"]["band"] == mband


# ===========================================================================
# 6. NESMS (clinical-reference §7, §1.3)
# ===========================================================================
#
# modified Bauer >= 3 -> 2, independent ambulation -> 1, albumin >= 3.5 -> 1; cap at 3.
# modified Bauer of the sites used here (no visceral, solitary): breast 4, colon 3,
# lung 2, unknown primary {2, 3} (§6).

NESMS_ROWS: list[tuple[str, str, dict[str, Any], set[int], str | None]] = [
    ("raw 4 capped to 3", "breast", {}, {3}, "3"),
    ("mBauer 3 gets 2 points", "colon", {"albumin_g_dl": 3.0}, {3}, "3"),
    ("mBauer 3, nothing else", "colon", {"albumin_g_dl": 3.0, "ambulatory_status": "non_ambulatory"}, {2}, "2"),
    ("mBauer 2 gets 0 points", "lung_nsclc", {"albumin_g_dl": 3.0, "ambulatory_status": "non_ambulatory"}, {0}, "0"),
    ("mBauer 2 (colon, multiple)", "colon", {"vertebral_body_metastases": 2}, {2}, "2"),
    ("lung independent, normal albumin", "lung_nsclc", {}, {2}, "2"),
    ("albumin exactly 3.5 -> 1", "lung_nsclc", {"albumin_g_dl": 3.5}, {2}, "2"),
    ("albumin 3.49 -> 0", "lung_nsclc", {"albumin_g_dl": 3.49}, {1}, "1"),
    ("albumin 3.51 -> 1", "lung_nsclc", {"albumin_g_dl": 3.51}, {2}, "2"),
    ("with_aid undetermined", "lung_nsclc", {"ambulatory_status": "with_aid"}, {1, 2}, None),
    ("with_assistance -> 0", "lung_nsclc", {"ambulatory_status": "with_assistance"}, {1}, "1"),
    ("non_ambulatory -> 0", "lung_nsclc", {"ambulatory_status": "non_ambulatory"}, {1}, "1"),
    ("ambulation unknown", "lung_nsclc", {"ambulatory_status": None}, {1, 2}, None),
    ("albumin unknown", "lung_nsclc", {"albumin_g_dl": None}, {1, 2}, None),
    ("albumin missing", "lung_nsclc", {"albumin_g_dl": UNKNOWN}, {1, 2}, None),
    ("albumin unknown, cap resolves", "breast", {"albumin_g_dl": None}, {3}, "3"),
    ("with_aid, cap resolves", "breast", {"ambulatory_status": "with_aid"}, {3}, "3"),
    ("with_aid and albumin unknown", "breast", {"ambulatory_status": "with_aid", "albumin_g_dl": None}, {2, 3}, None),
    (
        "breast, low albumin, not walking",
        "breast",
        {"albumin_g_dl": 3.0, "ambulatory_status": "non_ambulatory"},
        {2},
        "2",
    ),
    # mBauer {2, 3} carries through: {0, 2} + 1 + 1 = {2, 4 -> 3}
    ("undetermined mBauer carries", "unknown_primary", {}, {2, 3}, None),
]


@pytest.mark.parametrize(("label", "site", "overrides", "expected", "band"), NESMS_ROWS, ids=[r[0] for r in NESMS_ROWS])
def test_nesms(label: str, site: str, overrides: dict[str, Any], expected: set[int], band: str | None) -> None:
    nesms = _system(_site_case(site, **overrides), "nesms")
    _check_totals(nesms, expected, label)
    assert nesms["band"] == band


# ===========================================================================
# 7. New Katagiri, other items (clinical-reference §8.1, §8.2, §8.4, §15, §1.1)
# ===========================================================================

# clinical-reference §8.2 / §15 "Katagiri group" column.
# (site, hormone_dependent, molecular_targeted_therapy, primary points)
KATAGIRI_PRIMARY: list[tuple[str, bool | None, bool | None, set[int]]] = [
    ("breast", True, None, {0}),
    ("breast", False, None, {2}),
    ("breast", None, None, {0, 2}),
    ("prostate", True, None, {0}),
    ("prostate", False, None, {2}),
    ("prostate", None, None, {0, 2}),
    ("lung_nsclc", None, True, {2}),
    ("lung_nsclc", None, False, {3}),
    ("lung_nsclc", None, None, {2, 3}),
    ("lung_sclc", None, False, {3}),
    ("lung_sclc", None, None, {3}),  # §15: rapid 3 (no targeted drug)
    # §15 gives SCLC "rapid 3 (no targeted drug)" as its class; the targeted-drug flag
    # of §8.2 is asked "for lung cancer" to split NSCLC, and SCLC's row has no {2, 3}.
    ("lung_sclc", None, True, {3}),
    ("thyroid", None, None, {0}),
    ("myeloma", None, None, {0}),
    ("lymphoma", None, None, {0}),
    ("kidney", None, None, {2}),
    ("uterus", None, None, {2}),
    ("ovary", None, None, {2}),
    ("soft_tissue_sarcoma", None, None, {2}),
    ("osteosarcoma", None, None, {2}),
    ("neuroendocrine", None, None, {2}),  # others (§8.4)
    ("testis_germ_cell", None, None, {2}),  # others (§8.4)
    ("other", None, None, {2}),  # others
    ("colon", None, None, {3}),
    ("rectum", None, None, {3}),
    ("stomach", None, None, {3}),
    ("pancreas", None, None, {3}),
    ("head_neck", None, None, {3}),
    ("esophagus", None, None, {3}),
    ("bladder", None, None, {3}),
    ("melanoma", None, None, {3}),
    ("liver", None, None, {3}),
    ("gallbladder", None, None, {3}),
    ("cervix", None, None, {3}),
    ("unknown_primary", None, None, {3}),
]


def test_katagiri_table_covers_every_code() -> None:
    assert {row[0] for row in KATAGIRI_PRIMARY} == set(ALL_PRIMARY_SITES)


@pytest.mark.parametrize(("site", "hormone", "targeted", "points"), KATAGIRI_PRIMARY)
def test_katagiri_primary_group(site: str, hormone: bool | None, targeted: bool | None, points: set[int]) -> None:
    case = make_case(primary_site=site, hormone_dependent=hormone, molecular_targeted_therapy=targeted)
    _check_totals(_system(case, "new_katagiri"), points, f"Katagiri {site} hd={hormone} mt={targeted}")


# clinical-reference §8.1: visceral worst of nodular 1, disseminated 2, brain 1.
# Base: thyroid (0) and every other item 0.
KATAGIRI_VISCERAL: list[tuple[str, dict[str, Any] | None, bool | None, set[int]]] = [
    ("none", visceral("none"), False, {0}),
    ("nodular", visceral("nodular", True, True), False, {1}),
    ("disseminated", visceral("disseminated", False, False), False, {2}),
    ("brain only", visceral("none"), True, {1}),
    ("nodular and brain", visceral("nodular", True, True), True, {1}),
    ("disseminated and brain", visceral("disseminated", False, False), True, {2}),
    ("visceral unknown", None, False, {0, 1, 2}),
    ("brain unknown", visceral("none"), None, {0, 1}),
    ("disseminated, brain unknown", visceral("disseminated", False, False), None, {2}),
]


@pytest.mark.parametrize(("label", "visc", "brain", "points"), KATAGIRI_VISCERAL, ids=[r[0] for r in KATAGIRI_VISCERAL])
def test_katagiri_visceral(label: str, visc: Any, brain: bool | None, points: set[int]) -> None:
    case = _katagiri_lab_case(visceral_metastases=visc, brain_metastases=brain)
    _check_totals(_system(case, "new_katagiri"), points, label)


# clinical-reference §8.1: ECOG 3 or 4 -> 1.  §1.1: KPS only: <= 40 -> 1, >= 50 -> 0.
KATAGIRI_PS: list[tuple[int | None, int | None, set[int]]] = [
    (0, None, {0}),
    (1, None, {0}),
    (2, None, {0}),
    (3, None, {1}),
    (4, None, {1}),
    (None, 10, {1}),
    (None, 20, {1}),
    (None, 30, {1}),
    (None, 40, {1}),
    (None, 50, {0}),
    (None, 60, {0}),
    (None, 70, {0}),
    (None, 80, {0}),
    (None, 90, {0}),
    (None, 100, {0}),
    (None, None, {0, 1}),  # §16: neither -> {0, 1}
    (3, 80, {1}),  # both recorded: ECOG is Katagiri's native scale
    (1, 30, {0}),
]


@pytest.mark.parametrize(("ecog", "kps", "points"), KATAGIRI_PS)
def test_katagiri_performance_status(ecog: int | None, kps: int | None, points: set[int]) -> None:
    case = _katagiri_lab_case(ecog=ecog, kps=kps)
    _check_totals(_system(case, "new_katagiri"), points, f"ECOG {ecog} KPS {kps}")


@pytest.mark.parametrize(("previous", "points"), [(True, {1}), (False, {0}), (None, {0, 1}), (UNKNOWN, {0, 1})])
def test_katagiri_previous_chemotherapy(previous: Any, points: set[int]) -> None:
    # §8.1 yes -> 1; §8.4 unknown -> {0, 1}
    case = _katagiri_lab_case(previous_chemotherapy=previous)
    _check_totals(_system(case, "new_katagiri"), points, f"previous chemo {previous}")


# clinical-reference §8.4: "multiple skeletal metastases" = more than one skeletal
# metastasis in total (1 point); one contiguous multi-level lesion is undefined (§18.22).
# (vertebral bodies, extraspinal foci, single contiguous lesion) -> points
KATAGIRI_MULTIPLE: list[tuple[int, int, bool | None, set[int]]] = [
    (1, 0, False, {0}),
    (1, 0, True, {0}),
    (1, 0, None, {0}),
    (2, 0, False, {1}),
    (1, 1, False, {1}),
    (3, 0, False, {1}),
    (1, 5, False, {1}),
    (2, 0, True, {0, 1}),
    (2, 0, None, {0, 1}),
    (2, 1, True, {1}),
]


@pytest.mark.parametrize(("vertebral", "extraspinal", "single", "points"), KATAGIRI_MULTIPLE)
def test_katagiri_multiple_skeletal(vertebral: int, extraspinal: int, single: bool | None, points: set[int]) -> None:
    case = _katagiri_lab_case(
        vertebral_body_metastases=vertebral,
        extraspinal_bone_metastases=extraspinal,
        spinal_involvement_single_contiguous_lesion=single,
    )
    _check_totals(_system(case, "new_katagiri"), points, f"{vertebral}/{extraspinal}/{single}")


# clinical-reference §8.3 bands: low 0-3, intermediate 4-6, high 7-10
KATAGIRI_BANDS: list[tuple[str, dict[str, Any], set[int], str | None]] = [
    ("thyroid", {}, {0}, "low"),
    ("colon", {}, {3}, "low"),
    ("colon", {"previous_chemotherapy": True}, {4}, "intermediate"),
    (
        "colon",
        {"previous_chemotherapy": True, "ecog": 3, "kps": None, "vertebral_body_metastases": 2},
        {6},
        "intermediate",
    ),
    (
        "colon",
        {
            "previous_chemotherapy": True,
            "ecog": 3,
            "kps": None,
            "vertebral_body_metastases": 2,
            "visceral_metastases": visceral("nodular", True, True),
        },
        {7},
        "high",
    ),
    (
        "lung_nsclc",
        {
            "molecular_targeted_therapy": False,
            "visceral_metastases": visceral("disseminated", False, False),
            "platelets_per_ul": 50000,
            "ecog": 4,
            "kps": None,
            "previous_chemotherapy": True,
            "extraspinal_bone_metastases": 4,
        },
        {10},
        "high",
    ),
    # breast hormone status unknown {0, 2} + chemo 1 + multiple 1 = {2, 4}: crosses 3/4
    (
        "breast",
        {"hormone_dependent": None, "previous_chemotherapy": True, "vertebral_body_metastases": 2},
        {2, 4},
        None,
    ),
    ("breast", {"hormone_dependent": None}, {0, 2}, "low"),
]


@pytest.mark.parametrize(("site", "overrides", "expected", "band"), KATAGIRI_BANDS)
def test_katagiri_bands(site: str, overrides: dict[str, Any], expected: set[int], band: str | None) -> None:
    katagiri = _system(_site_case(site, **overrides), "new_katagiri")
    _check_totals(katagiri, expected, f"{site} {overrides}")
    assert katagiri["band"] == band


# ===========================================================================
# 8. NOMS (clinical-reference §9)
# ===========================================================================

C = "cEBRT"
SRS = "SRS"
STAB_C = "stabilization+cEBRT"
STAB_S = "stabilization+SRS"
SEP = "separation_surgery+SRS"
SEP_STAB = "separation_surgery_stabilization+SRS"
CONSULT = "potentially_unstable_surgical_consultation"
UNFIT = "unstable_unfit_for_stabilization"

# clinical-reference §9.1 (with its conventions and §15 "NOMS" column; §16: histology
# not named -> enumerate both)
NOMS_CLASS: dict[str, str] = {
    "breast": "sensitive",
    "prostate": "sensitive",
    "ovary": "sensitive",
    "myeloma": "sensitive",
    "lymphoma": "sensitive",
    "neuroendocrine": "sensitive",
    "testis_germ_cell": "sensitive",
    "thyroid": "resistant",
    "kidney": "resistant",
    "liver": "resistant",
    "colon": "resistant",
    "rectum": "resistant",  # treated as colon
    "lung_nsclc": "resistant",
    "melanoma": "resistant",
    "soft_tissue_sarcoma": "resistant",
    "osteosarcoma": "resistant",  # treated as sarcoma
    "lung_sclc": "unclassified",
    "stomach": "unclassified",
    "esophagus": "unclassified",
    "pancreas": "unclassified",
    "bladder": "unclassified",
    "uterus": "unclassified",
    "cervix": "unclassified",
    "head_neck": "unclassified",
    "gallbladder": "unclassified",
    "unknown_primary": "unclassified",
    "other": "unclassified",
}

# With ESCC 0 and a stable lesion (§9.2): sensitive -> cEBRT, resistant -> SRS, both if unclassified
NOMS_CLASS_SIGNATURE: dict[str, list[str]] = {
    "sensitive": [C],
    "resistant": [SRS],
    "unclassified": [SRS, C],
}


def test_noms_class_table_covers_every_code() -> None:
    assert sorted(NOMS_CLASS) == sorted(ALL_PRIMARY_SITES)


def _noms(case: dict[str, Any]) -> dict[str, Any]:
    result = score_case(case)
    assert len(result["noms"]) == 1
    return result["noms"][0]


def _check_noms(entry: dict[str, Any], candidates: list[str], flags: list[str] | None, where: str) -> None:
    got = entry["candidates"]
    assert got == sorted(got), f"{where}: candidates not sorted: {got}"
    assert sorted(got) == sorted(candidates), f"{where}: candidates {got} != expected {sorted(candidates)}"
    want_rec = candidates[0] if len(candidates) == 1 else None
    assert entry["recommendation"] == want_rec, f"{where}: recommendation {entry['recommendation']} != {want_rec}"
    if flags is not None:
        assert sorted(entry["flags"]) == sorted(flags), f"{where}: flags {entry['flags']} != expected {sorted(flags)}"


@pytest.mark.parametrize(("site", "klass"), list(NOMS_CLASS.items()))
def test_noms_radiosensitivity_class(site: str, klass: str) -> None:
    case = _site_case(site, spinal_lesions=[lesion("T8", bilsky_escc="0")])
    _check_noms(_noms(case), NOMS_CLASS_SIGNATURE[klass], [], f"NOMS class of {site}")


# Lesions of known SINS category (§2.1, §2.2):
#   stable:  T8 quiet = 1
#   potentially unstable: L3 2 + mechanical 3 + lytic 2 + lt50 2 = 9
#   unstable: C5 2 + mechanical 3 + lytic 2 + subluxation 4 + gt50 3 = 14
SINS_LESIONS: dict[str, dict[str, Any]] = {
    "stable": {"level": "T8"},
    "pu": {"level": "L3", "pain": "mechanical", "lesion_type": "lytic", "collapse": "lt50"},
    "unstable": {
        "level": "C5",
        "pain": "mechanical",
        "lesion_type": "lytic",
        "alignment": "subluxation",
        "collapse": "gt50",
    },
}
SINS_OF_LESION = {"stable": [1], "pu": [9], "unstable": [14]}

ESCC_GROUPS: dict[str, list[str]] = {"low": ["0", "1a", "1b"], "1c": ["1c"], "high": ["2", "3"]}

# clinical-reference §9.2 decision table, written out by hand for every branch.
# key: (radiosensitivity, ESCC group, SINS category, fit_for_surgery) -> (candidates, flags)
# Unclassified = union of sensitive and resistant; 1c = union of low and high;
# fit unknown = union of fit and unfit; flags are the union over the reachable branches.
NOMS_TABLE: dict[tuple[str, str, str, bool | None], tuple[list[str], list[str]]] = {
    # --- radiosensitive: ESCC does not matter -------------------------------------
    ("sensitive", "low", "stable", True): ([C], []),
    ("sensitive", "low", "stable", False): ([C], []),
    ("sensitive", "low", "stable", None): ([C], []),
    ("sensitive", "low", "pu", True): ([C], [CONSULT]),
    ("sensitive", "low", "pu", False): ([C], [CONSULT]),
    ("sensitive", "low", "pu", None): ([C], [CONSULT]),
    ("sensitive", "low", "unstable", True): ([STAB_C], []),
    ("sensitive", "low", "unstable", False): ([C], [UNFIT]),
    ("sensitive", "low", "unstable", None): ([C, STAB_C], [UNFIT]),
    ("sensitive", "1c", "stable", True): ([C], []),
    ("sensitive", "1c", "stable", False): ([C], []),
    ("sensitive", "1c", "stable", None): ([C], []),
    ("sensitive", "1c", "pu", True): ([C], [CONSULT]),
    ("sensitive", "1c", "pu", False): ([C], [CONSULT]),
    ("sensitive", "1c", "pu", None): ([C], [CONSULT]),
    ("sensitive", "1c", "unstable", True): ([STAB_C], []),
    ("sensitive", "1c", "unstable", False): ([C], [UNFIT]),
    ("sensitive", "1c", "unstable", None): ([C, STAB_C], [UNFIT]),
    ("sensitive", "high", "stable", True): ([C], []),
    ("sensitive", "high", "stable", False): ([C], []),
    ("sensitive", "high", "stable", None): ([C], []),
    ("sensitive", "high", "pu", True): ([C], [CONSULT]),
    ("sensitive", "high", "pu", False): ([C], [CONSULT]),
    ("sensitive", "high", "pu", None): ([C], [CONSULT]),
    ("sensitive", "high", "unstable", True): ([STAB_C], []),
    ("sensitive", "high", "unstable", False): ([C], [UNFIT]),
    ("sensitive", "high", "unstable", None): ([C, STAB_C], [UNFIT]),
    # --- radioresistant, low-grade ESCC ----------------------------------------------
    ("resistant", "low", "stable", True): ([SRS], []),
    ("resistant", "low", "stable", False): ([SRS], []),
    ("resistant", "low", "stable", None): ([SRS], []),
    ("resistant", "low", "pu", True): ([SRS], [CONSULT]),
    ("resistant", "low", "pu", False): ([SRS], [CONSULT]),
    ("resistant", "low", "pu", None): ([SRS], [CONSULT]),
    ("resistant", "low", "unstable", True): ([STAB_S], []),
    ("resistant", "low", "unstable", False): ([SRS], [UNFIT]),
    ("resistant", "low", "unstable", None): ([SRS, STAB_S], [UNFIT]),
    # --- radioresistant, high-grade ESCC ---------------------------------------------
    ("resistant", "high", "stable", True): ([SEP], []),
    ("resistant", "high", "stable", False): ([C], []),
    ("resistant", "high", "stable", None): ([C, SEP], []),
    ("resistant", "high", "pu", True): ([SEP], [CONSULT]),
    ("resistant", "high", "pu", False): ([C], [CONSULT]),
    ("resistant", "high", "pu", None): ([C, SEP], [CONSULT]),
    ("resistant", "high", "unstable", True): ([SEP_STAB], []),
    ("resistant", "high", "unstable", False): ([C], [UNFIT]),
    ("resistant", "high", "unstable", None): ([C, SEP_STAB], [UNFIT]),
    # --- radioresistant, ESCC 1c: low and high ----------------------------------------
    ("resistant", "1c", "stable", True): ([SRS, SEP], []),
    ("resistant", "1c", "stable", False): ([SRS, C], []),
    ("resistant", "1c", "stable", None): ([SRS, C, SEP], []),
    ("resistant", "1c", "pu", True): ([SRS, SEP], [CONSULT]),
    ("resistant", "1c", "pu", False): ([SRS, C], [CONSULT]),
    ("resistant", "1c", "pu", None): ([SRS, C, SEP], [CONSULT]),
    ("resistant", "1c", "unstable", True): ([SEP_STAB, STAB_S], []),
    ("resistant", "1c", "unstable", False): ([SRS, C], [UNFIT]),
    ("resistant", "1c", "unstable", None): ([SRS, C, SEP_STAB, STAB_S], [UNFIT]),
    # --- unclassified: sensitive and resistant ----------------------------------------
    ("unclassified", "low", "stable", True): ([SRS, C], []),
    ("unclassified", "low", "stable", False): ([SRS, C], []),
    ("unclassified", "low", "stable", None): ([SRS, C], []),
    ("unclassified", "low", "pu", True): ([SRS, C], [CONSULT]),
    ("unclassified", "low", "pu", False): ([SRS, C], [CONSULT]),
    ("unclassified", "low", "pu", None): ([SRS, C], [CONSULT]),
    ("unclassified", "low", "unstable", True): ([STAB_S, STAB_C], []),
    ("unclassified", "low", "unstable", False): ([SRS, C], [UNFIT]),
    ("unclassified", "low", "unstable", None): ([SRS, C, STAB_S, STAB_C], [UNFIT]),
    ("unclassified", "high", "stable", True): ([C, SEP], []),
    ("unclassified", "high", "stable", False): ([C], []),
    ("unclassified", "high", "stable", None): ([C, SEP], []),
    ("unclassified", "high", "pu", True): ([C, SEP], [CONSULT]),
    ("unclassified", "high", "pu", False): ([C], [CONSULT]),
    ("unclassified", "high", "pu", None): ([C, SEP], [CONSULT]),
    ("unclassified", "high", "unstable", True): ([SEP_STAB, STAB_C], []),
    ("unclassified", "high", "unstable", False): ([C], [UNFIT]),
    ("unclassified", "high", "unstable", None): ([C, SEP_STAB, STAB_C], [UNFIT]),
    ("unclassified", "1c", "stable", True): ([SRS, C, SEP], []),
    ("unclassified", "1c", "stable", False): ([SRS, C], []),
    ("unclassified", "1c", "stable", None): ([SRS, C, SEP], []),
    ("unclassified", "1c", "pu", True): ([SRS, C, SEP], [CONSULT]),
    ("unclassified", "1c", "pu", False): ([SRS, C], [CONSULT]),
    ("unclassified", "1c", "pu", None): ([SRS, C, SEP], [CONSULT]),
    ("unclassified", "1c", "unstable", True): ([SEP_STAB, STAB_S, STAB_C], []),
    ("unclassified", "1c", "unstable", False): ([SRS, C], [UNFIT]),
    ("unclassified", "1c", "unstable", None): ([SRS, C, SEP_STAB, STAB_S, STAB_C], [UNFIT]),
}

# One representative histology per class (§9.1)
NOMS_SITE_OF_CLASS = {"sensitive": "breast", "resistant": "kidney", "unclassified": "stomach"}


def test_noms_table_is_complete() -> None:
    assert len(NOMS_TABLE) == 3 * 3 * 3 * 3


NOMS_ROWS = [
    (klass, group, grade, sins, fit, *NOMS_TABLE[(klass, group, sins, fit)])
    for (klass, group, sins, fit) in NOMS_TABLE
    for grade in ESCC_GROUPS[group]
]


@pytest.mark.parametrize(("klass", "group", "grade", "sins", "fit", "candidates", "flags"), NOMS_ROWS)
def test_noms_decision_table(
    klass: str, group: str, grade: str, sins: str, fit: bool | None, candidates: list[str], flags: list[str]
) -> None:
    spec = dict(SINS_LESIONS[sins])
    level = spec.pop("level")
    case = _site_case(
        NOMS_SITE_OF_CLASS[klass],
        fit_for_surgery=fit,
        spinal_lesions=[lesion(level, bilsky_escc=grade, **spec)],
    )
    result = score_case(case)
    assert result["sins"][0]["possible_totals"] == SINS_OF_LESION[sins]
    entry = result["noms"][0]
    assert entry["level"] == level
    _check_noms(entry, candidates, flags, f"{klass}/{grade}/{sins}/fit={fit}")


def test_noms_fit_missing_same_as_null() -> None:
    # resistant, high, unstable, fit unknown (missing key)
    spec = dict(SINS_LESIONS["unstable"])
    level = spec.pop("level")
    case = _site_case("kidney", fit_for_surgery=UNKNOWN, spinal_lesions=[lesion(level, bilsky_escc="3", **spec)])
    _check_noms(_noms(case), [C, SEP_STAB], [UNFIT], "fit missing")


# §9.2 with a SINS category that is itself undetermined: the branches of every
# reachable category are enumerated and their flags united.
NOMS_SINS_RANGE: list[tuple[str, dict[str, Any], str, bool | None, list[str], list[str]]] = [
    # L3 2 + lytic 2 + lt50 2 = 6, pain unknown -> {6, 7, 9}: stable or potentially unstable
    ("breast", {"level": "L3", "pain": None, "lesion_type": "lytic", "collapse": "lt50"}, "0", True, [C], [CONSULT]),
    ("kidney", {"level": "L3", "pain": None, "lesion_type": "lytic", "collapse": "lt50"}, "0", True, [SRS], [CONSULT]),
    # C5 2 + lytic 2 + subluxation 4 + lt50 2 = 10, pain unknown -> {10, 11, 13}: PU or unstable
    (
        "kidney",
        {"level": "C5", "pain": None, "lesion_type": "lytic", "alignment": "subluxation", "collapse": "lt50"},
        "1b",
        True,
        [SRS, STAB_S],
        [CONSULT],
    ),
    (
        "kidney",
        {"level": "C5", "pain": None, "lesion_type": "lytic", "alignment": "subluxation", "collapse": "lt50"},
        "1b",
        False,
        [SRS],
        [CONSULT, UNFIT],
    ),
    (
        "breast",
        {"level": "C5", "pain": None, "lesion_type": "lytic", "alignment": "subluxation", "collapse": "lt50"},
        "3",
        True,
        [C, STAB_C],
        [CONSULT],
    ),
    (
        "kidney",
        {"level": "C5", "pain": None, "lesion_type": "lytic", "alignment": "subluxation", "collapse": "lt50"},
        "2",
        True,
        [SEP, SEP_STAB],
        [CONSULT],
    ),
    # T2-T3 span: T2 3 + lytic 2 + lt50 2 + non_mechanical 1 = 8, T3 -> 6: stable or PU
    (
        "kidney",
        {
            "level": "T2",
            "level_span": ["T2", "T3"],
            "pain": "non_mechanical",
            "lesion_type": "lytic",
            "collapse": "lt50",
        },
        "2",
        False,
        [C],
        [CONSULT],
    ),
]


@pytest.mark.parametrize(("site", "spec", "grade", "fit", "candidates", "flags"), NOMS_SINS_RANGE)
def test_noms_with_undetermined_sins_category(
    site: str, spec: dict[str, Any], grade: str, fit: bool | None, candidates: list[str], flags: list[str]
) -> None:
    spec = dict(spec)
    level = spec.pop("level")
    case = _site_case(site, fit_for_surgery=fit, spinal_lesions=[lesion(level, bilsky_escc=grade, **spec)])
    _check_noms(_noms(case), candidates, flags, f"{site} {spec} ESCC {grade} fit {fit}")


@pytest.mark.parametrize("site", ["breast", "kidney", "stomach"])
@pytest.mark.parametrize("how", ["null", "missing"])
def test_noms_escc_unknown_gives_no_candidates(site: str, how: str) -> None:
    # §16: ESCC grade missing -> NOMS cannot compute (no default)
    escc = None if how == "null" else UNKNOWN
    entry = _noms(_site_case(site, spinal_lesions=[lesion("T8", bilsky_escc=escc)]))
    assert entry["candidates"] == []
    assert entry["recommendation"] is None


def test_noms_per_lesion_levels() -> None:
    # kidney: resistant; T8 stable ESCC 0 -> SRS; C5 unstable ESCC 2 fit -> separation + stabilization
    spec = dict(SINS_LESIONS["unstable"])
    spec.pop("level")
    case = _site_case("kidney", spinal_lesions=[lesion("T8"), lesion("C5", bilsky_escc="2", **spec)])
    result = score_case(case)
    assert [n["level"] for n in result["noms"]] == ["T8", "C5"]
    _check_noms(result["noms"][0], [SRS], [], "T8")
    _check_noms(result["noms"][1], [SEP_STAB], [], "C5")


# ===========================================================================
# 9. Systems that cannot be computed (clinical-reference §16)
# ===========================================================================


def _missing_text(entry: dict[str, Any]) -> str:
    missing = entry.get("missing")
    assert isinstance(missing, list) and missing, f"no 'missing' reason in {entry}"
    return " ".join(str(m) for m in missing).lower()


def _assert_not_computable(entry: dict[str, Any], system: str) -> None:
    assert entry["possible_totals"] == [], f"{system}: {entry['possible_totals']}"
    assert entry["total"] is None
    assert entry["band"] is None


@pytest.mark.parametrize("how", ["null", "missing"])
def test_skeletal_counts_missing_cannot_compute(how: str) -> None:
    value = None if how == "null" else UNKNOWN
    result = score_case(make_case(vertebral_body_metastases=value, extraspinal_bone_metastases=value))
    for system in SYSTEMS:
        entry = result[system]
        _assert_not_computable(entry, system)
        text = _missing_text(entry)
        assert any(word in text for word in ("vertebral_body_metastases", "extraspinal_bone_metastases", "skeletal")), (
            f"{system}: missing {entry['missing']} does not name the skeletal-metastasis counts"
        )
    # SINS and NOMS do not use the counts (§16)
    assert result["sins"][0]["possible_totals"] == [1]
    assert result["noms"][0]["candidates"] == [C]


@pytest.mark.parametrize("how", ["null", "missing"])
def test_histology_entirely_unknown_cannot_compute(how: str) -> None:
    value = None if how == "null" else UNKNOWN
    result = score_case(make_case(primary_site=value, primary_histology=value, hormone_dependent=None))
    for system in SYSTEMS:
        entry = result[system]
        _assert_not_computable(entry, system)
        text = _missing_text(entry)
        assert any(word in text for word in ("primary_site", "histology", "primary")), (
            f"{system}: missing {entry['missing']} does not name the histology"
        )
    assert result["sins"][0]["possible_totals"] == [1]
    for entry in result["noms"]:
        assert entry["candidates"] == []
        assert entry["recommendation"] is None


def test_unknown_primary_is_not_unknown_histology() -> None:
    # §16: "unknown_primary" is a histology class; every system computes
    result = score_case(_site_case("unknown_primary"))
    for system in SYSTEMS:
        assert result[system]["possible_totals"] != [], system
    # Tomita 4 + 0 + 1 = 5 (§4.2); Tokuhashi 10 + 1 = 11 (§5.2); Katagiri rapid 3 (§8.2)
    _check_totals(result["tomita"], 5, "Tomita unknown primary")
    _check_totals(result["revised_tokuhashi"], 11, "Tokuhashi unknown primary")
    _check_totals(result["new_katagiri"], 3, "Katagiri unknown primary")


# ===========================================================================
# 10. Validation (case-format.md: unknown value or wrong type -> error naming the
#     field and the allowed values)
# ===========================================================================


def test_case_error_is_a_value_error() -> None:
    assert issubclass(CaseError, ValueError)


# (label, case modifier, words the message must contain)
def _lesion_with(**fields: Any) -> dict[str, Any]:
    return make_case(spinal_lesions=[lesion("T8", **fields)])


INVALID_ENUMS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("primary_site", make_case(primary_site="lungs"), ["primary_site", "lung_nsclc", "unknown_primary", "other"]),
    (
        "ambulatory_status",
        make_case(ambulatory_status="walks"),
        ["ambulatory_status", "independent", "with_aid", "non_ambulatory"],
    ),
    ("frankel_grade", make_case(frankel_grade="F"), ["frankel_grade", "A", "E"]),
    ("visceral status", make_case(visceral_metastases=visceral("many")), ["status", "none", "nodular", "disseminated"]),
    ("pain", _lesion_with(pain="severe"), ["pain", "mechanical", "non_mechanical"]),
    ("lesion_type", _lesion_with(lesion_type="sclerotic"), ["lesion_type", "lytic", "mixed", "blastic"]),
    ("alignment", _lesion_with(alignment="kyphosis"), ["alignment", "subluxation", "deformity", "normal"]),
    ("collapse", _lesion_with(collapse="50"), ["collapse", "gt50", "lt50", "none_gt50_involved"]),
    ("posterolateral", _lesion_with(posterolateral="both"), ["posterolateral", "bilateral", "unilateral"]),
    ("bilsky_escc '1'", _lesion_with(bilsky_escc="1"), ["bilsky_escc", "1a", "1b", "1c"]),
    ("bilsky_escc int", _lesion_with(bilsky_escc=2), ["bilsky_escc", "1a", "1c"]),
    ("level T13", make_case(spinal_lesions=[lesion("T13")]), ["level", "Occiput", "S5"]),
    ("level Coccyx", make_case(spinal_lesions=[lesion("Coccyx")]), ["level", "Occiput", "S5"]),
    ("level lower case", make_case(spinal_lesions=[lesion("t8")]), ["level", "Occiput", "T8"]),
    ("level_span", make_case(spinal_lesions=[lesion("T12", level_span=["T12", "T13"])]), ["level", "Occiput", "S5"]),
]


@pytest.mark.parametrize(("label", "case", "words"), INVALID_ENUMS, ids=[r[0] for r in INVALID_ENUMS])
def test_invalid_enum_value_raises(label: str, case: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(CaseError) as info:
        score_case(case)
    message = str(info.value)
    for word in words:
        assert word in message, f"{label}: {word!r} not in error message {message!r}"


INVALID_TYPES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("ecog string", make_case(ecog="2"), ["ecog", "0", "4"]),
    ("ecog float", make_case(ecog=1.5), ["ecog", "0", "4"]),
    ("ecog integral float", make_case(ecog=2.0), ["ecog", "0", "4"]),
    ("ecog bool", make_case(ecog=True), ["ecog", "0", "4"]),
    ("ecog 5", make_case(ecog=5), ["ecog", "0", "4"]),
    ("ecog -1", make_case(ecog=-1), ["ecog", "0", "4"]),
    ("kps not multiple of 10", make_case(kps=75), ["kps", "10", "100"]),
    ("kps 0", make_case(kps=0), ["kps", "10", "100"]),
    ("kps 110", make_case(kps=110), ["kps", "10", "100"]),
    ("kps string", make_case(kps="80"), ["kps", "10", "100"]),
    ("kps bool", make_case(kps=True), ["kps", "10", "100"]),
    ("albumin string", make_case(albumin_g_dl="4.0"), ["albumin_g_dl"]),
    ("albumin bool", make_case(albumin_g_dl=True), ["albumin_g_dl"]),
    ("platelets bool", make_case(platelets_per_ul=False), ["platelets_per_ul"]),
    ("extraspinal bool", make_case(extraspinal_bone_metastases=True), ["extraspinal_bone_metastases"]),
    ("extraspinal negative", make_case(extraspinal_bone_metastases=-1), ["extraspinal_bone_metastases"]),
    ("extraspinal float", make_case(extraspinal_bone_metastases=1.5), ["extraspinal_bone_metastases"]),
    ("vertebral zero", make_case(vertebral_body_metastases=0), ["vertebral_body_metastases"]),
    ("vertebral string", make_case(vertebral_body_metastases="2"), ["vertebral_body_metastases"]),
    ("hormone_dependent string", make_case(hormone_dependent="yes"), ["hormone_dependent"]),
    ("fit_for_surgery string", make_case(fit_for_surgery="yes"), ["fit_for_surgery"]),
    ("previous_chemotherapy int", make_case(previous_chemotherapy=1), ["previous_chemotherapy"]),
    ("brain_metastases string", make_case(brain_metastases="no"), ["brain_metastases"]),
    ("visceral treatable string", make_case(visceral_metastases=visceral("nodular", "yes")), ["treatable"]),
    ("lesion level missing", make_case(spinal_lesions=[{"pain": "none"}]), ["level"]),
    ("spinal_lesions missing", make_case(spinal_lesions=UNKNOWN), ["spinal_lesions"]),
    ("spinal_lesions not a list", make_case(spinal_lesions="T8"), ["spinal_lesions"]),
]


@pytest.mark.parametrize(("label", "case", "words"), INVALID_TYPES, ids=[r[0] for r in INVALID_TYPES])
def test_invalid_type_raises(label: str, case: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(CaseError) as info:
        score_case(case)
    message = str(info.value)
    for word in words:
        assert word in message, f"{label}: {word!r} not in error message {message!r}"


@pytest.mark.parametrize("field", ["hormone_dependent", "fit_for_surgery", "previous_chemotherapy", "brain_metastases"])
def test_bool_type_error_lists_allowed_values(field: str) -> None:
    with pytest.raises(CaseError) as info:
        score_case(make_case(**{field: "maybe"}))
    message = str(info.value).lower()
    assert field in message
    assert "true" in message or "bool" in message, message
