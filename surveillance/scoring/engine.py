"""Scoring one case: every instrument, every lesion, with ranges and explanations.

The single entry point the CLI (``python -m surveillance score``), the
recompute pipeline and the calculator page share.  It composes the instrument
modules; it holds no points of its own.  Output follows ``shared/case-format.md``
v1 and adds, per instrument, the points of every component, what was missing,
an explanation, the citation and the table version.

When the histology is a family ("lung cancer": NSCLC or SCLC), every instrument
is computed for each candidate site and the reachable totals are united, so a
family term gives an honest range instead of a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from surveillance.scoring import bilsky, katagiri, nesms, noms, sins
from surveillance.scoring.bauer import compute_bauer, compute_modified_bauer
from surveillance.scoring.case import CaseInput, LesionInput, parse_case
from surveillance.scoring.katagiri import compute_katagiri, lab_flags
from surveillance.scoring.lmnop import compute_lmnop
from surveillance.scoring.performance_status import ecog_to_kps_values, kps_to_ecog
from surveillance.scoring.ranges import ScoreResult, union_results
from surveillance.scoring.surgery_screen import compute_surgery_screen
from surveillance.scoring.tes import compute_tes_screen, extent_of
from surveillance.scoring.tokuhashi import compute_tokuhashi
from surveillance.scoring.tomita import compute_tomita
from surveillance.scoring.vocab import CASE_FORMAT_VERSION, PrimarySite
from surveillance.scoring.wbb import compute_wbb_options

ENGINE_VERSION = "1.0.0"

_SINS_ORDER = ("stable", "potentially_unstable", "unstable")


def sins_categories(totals: tuple[int, ...]) -> tuple[str, ...]:
    """The SINS categories reachable by a set of possible totals, in severity order."""
    reached = {sins.TABLE.band_for(t) for t in totals}
    return tuple(c for c in _SINS_ORDER if c in reached)


def score_lesion_sins(lesion: LesionInput) -> ScoreResult:
    return sins.compute_sins(
        lesion.levels, lesion.pain, lesion.lesion_type, lesion.alignment, lesion.collapse, lesion.posterolateral
    )


def for_sites(sites: tuple[PrimarySite, ...], compute: Callable[[PrimarySite | None], ScoreResult]) -> ScoreResult:
    """``compute`` for each candidate site, united; ``compute(None)`` when the histology is unknown."""
    if not sites:
        return compute(None)
    results = [compute(site) for site in sites]
    return union_results(results, "histology is a family: " + " or ".join(sites) + "; every candidate scored")


def score_systems(case: CaseInput) -> dict[str, ScoreResult]:
    """The patient-level instruments as :class:`ScoreResult` objects."""
    v = case.visceral
    counts = dict(
        extraspinal_bone_metastases=case.extraspinal_bone_metastases,
        vertebral_body_metastases=case.vertebral_body_metastases,
    )
    contiguous = case.spinal_involvement_single_contiguous_lesion
    collapses = tuple(lesion.collapse for lesion in case.spinal_lesions)
    sites = case.sites

    def bauer_args(site):
        return dict(
            site=site,
            visceral_status=v.status,
            brain_metastases=case.brain_metastases,
            single_contiguous_lesion=contiguous,
            collapses=collapses,
            extraspinal_fracture=case.extraspinal_pathological_fracture,
            **counts,
        )

    results = {
        "tomita": for_sites(
            sites,
            lambda site: compute_tomita(
                site, v.status, v.treatable, case.brain_metastases, **counts, single_contiguous_lesion=contiguous
            ),
        ),
        "revised_tokuhashi": for_sites(
            sites,
            lambda site: compute_tokuhashi(
                site,
                case.kps,
                case.ecog,
                **counts,
                visceral_status=v.status,
                visceral_removable=v.removable,
                brain_metastases=case.brain_metastases,
                frankel_grade=case.frankel_grade,
            ),
        ),
        "bauer": for_sites(sites, lambda site: compute_bauer(**bauer_args(site))),
        "modified_bauer": for_sites(sites, lambda site: compute_modified_bauer(**bauer_args(site))),
    }

    def nesms_for(site):
        mb = compute_modified_bauer(**bauer_args(site))
        return nesms.compute_nesms(
            mb.possible_totals, tuple(mb.missing), case.ambulatory_status, nesms.albumin_normal(case.albumin_g_dl)
        )

    results["nesms"] = for_sites(sites, nesms_for)
    labs = lab_flags({field: getattr(case, field) for field, *_ in katagiri.LAB_CUTOFFS})
    results["new_katagiri"] = for_sites(
        sites,
        lambda site: compute_katagiri(
            site,
            case.hormone_dependent,
            case.molecular_targeted_therapy,
            v.status,
            case.brain_metastases,
            labs,
            case.ecog,
            case.kps,
            case.previous_chemotherapy,
            **counts,
            single_contiguous_lesion=contiguous,
        ),
    )
    return results


def _sins_dict(lesion: LesionInput, result: ScoreResult) -> dict[str, Any]:
    body = result.to_dict()
    category = body.pop("band")
    body.pop("band_meaning", None)
    out = {"level": lesion.level.value}
    if len(lesion.levels) > 1:
        out["level_span"] = [lv.value for lv in lesion.levels]
    out.update(total=body.pop("total"), possible_totals=body.pop("possible_totals"), category=category)
    if category:
        out["category_meaning"] = sins.TABLE.band(category).meaning
    totals = result.possible_totals
    out["sins_ge_10"] = (
        "yes"
        if min(totals) >= sins.KAKUTANI_FLAG_THRESHOLD
        else "possible"
        if max(totals) >= sins.KAKUTANI_FLAG_THRESHOLD
        else "no"
    )
    out.update(body)
    return out


def _noms_dict(lesion: LesionInput, result: noms.NomsResult) -> dict[str, Any]:
    return {
        "level": lesion.level.value,
        "recommendation": result.recommendation,
        "candidates": list(result.candidates),
        "flags": list(result.flags),
        "flag_meanings": {f: noms.FLAG_MEANINGS[f] for f in result.flags},
        "branches": [dict(b) for b in result.branches],
        "missing": list(result.missing),
        "notes": list(result.notes),
        "explanation": result.explanation(),
        "citation": "; ".join(noms.CITATIONS),
        "table_version": noms.TABLE_VERSION,
    }


def score_parsed(case: CaseInput) -> dict[str, Any]:
    """Score a validated case; the result object of case-format v1 (and more)."""
    sites = case.sites
    lesion_sins = [score_lesion_sins(lesion) for lesion in case.spinal_lesions]
    systems = score_systems(case)
    out: dict[str, Any] = {"id": case.id, "schema": CASE_FORMAT_VERSION, "engine_version": ENGINE_VERSION}
    out["primary_site"] = sites[0].value if len(sites) == 1 else None
    out["primary_site_candidates"] = [s.value for s in sites]
    if case.histology is not None:
        out["histology_resolution"] = {
            "source": case.histology.source,
            "matched": case.histology.matched_term,
            "note": case.histology.note,
        }
    out["sins"] = [_sins_dict(lesion, result) for lesion, result in zip(case.spinal_lesions, lesion_sins, strict=False)]
    for key, result in systems.items():
        out[key] = result.to_dict()

    noms_results = [
        noms.compute_noms(sites, lesion.bilsky_escc, sins_categories(result.possible_totals), case.fit_for_surgery)
        for lesion, result in zip(case.spinal_lesions, lesion_sins, strict=False)
    ]
    out["noms"] = [
        _noms_dict(lesion, result) for lesion, result in zip(case.spinal_lesions, noms_results, strict=False)
    ]
    out["bilsky"] = [
        {
            "level": lesion.level.value,
            "grade": None if lesion.bilsky_escc is None else lesion.bilsky_escc.value,
            "groups": [] if lesion.bilsky_escc is None else list(bilsky.escc_groups(lesion.bilsky_escc)),
            "citation": bilsky.CITATION,
            "table_version": bilsky.TABLE_VERSION,
        }
        for lesion in case.spinal_lesions
    ]
    out["performance_status"] = {
        "ecog": case.ecog,
        "kps": case.kps,
        "ecog_converted_from_kps": None if case.ecog is not None or case.kps is None else kps_to_ecog(case.kps),
        "kps_range_converted_from_ecog": (
            None if case.kps is not None or case.ecog is None else list(ecog_to_kps_values(case.ecog))
        ),
    }
    levels = [lesion.levels for lesion in case.spinal_lesions]
    out["lmnop"] = compute_lmnop(
        sites=sites,
        lesion_levels=levels,
        sins_categories=[sins_categories(r.possible_totals) for r in lesion_sins],
        bilsky_grades=[lesion.bilsky_escc for lesion in case.spinal_lesions],
        frankel_grade=case.frankel_grade,
        fit_for_surgery=case.fit_for_surgery,
    )
    out["tes_screen"] = compute_tes_screen(
        sites=sites,
        spinal_extent=extent_of(levels),
        ecog=case.ecog,
        kps=case.kps,
        tomita_totals=systems["tomita"].possible_totals,
        tokuhashi_totals=systems["revised_tokuhashi"].possible_totals,
        katagiri_totals=systems["new_katagiri"].possible_totals,
    )
    out["surgery_contraindication_screen"] = compute_surgery_screen(
        extraspinal_bone_metastases=case.extraspinal_bone_metastases,
        vertebral_body_metastases=case.vertebral_body_metastases,
        ecog=case.ecog,
        kps=case.kps,
        platelets_per_ul=case.platelets_per_ul,
        tokuhashi_totals=systems["revised_tokuhashi"].possible_totals,
        katagiri_totals=systems["new_katagiri"].possible_totals,
    )
    wbb = [
        dict(level=lesion.level.value, **compute_wbb_options(lesion.wbb_zones, lesion.wbb_numbering, lesion.wbb_layers))
        for lesion in case.spinal_lesions
        if lesion.wbb_zones is not None
    ]
    if wbb:
        out["wbb"] = wbb
    return out


def score_case(case: Mapping[str, Any], *, case_id: str | None = None) -> dict[str, Any]:
    """Validate and score one case object of the JSON case format.

    Raises :class:`~surveillance.scoring.case.CaseError` for input that cannot be read.
    """
    return score_parsed(parse_case(case, case_id=case_id))
