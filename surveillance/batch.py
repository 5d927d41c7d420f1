"""Scoring many patients at once with the scoring core's own functions.

The recompute pipeline scores up to a million patients a night.  Calling
``score_case`` per patient would take minutes, so this module turns columns of
patient and lesion data into the small, discrete inputs each instrument reads,
finds the distinct input combinations (a cohort has far fewer distinct
combinations than patients), calls the instrument's ``compute_*`` function once
per combination — the same function ``score_case`` calls, so there is one
source of truth — and spreads the results back over the rows.  Laboratory
cut-offs are applied with the instrument's own table (``katagiri.LAB_CUTOFFS``,
``nesms.ALBUMIN_NORMAL_G_DL``).

The cache of combination → result lives as long as the :class:`BatchScorer`, so
later chunks of a run mostly look results up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surveillance.rules.engine import mask_max, mask_min, totals_of
from surveillance.scoring import nesms
from surveillance.scoring.bauer import compute_bauer, compute_modified_bauer
from surveillance.scoring.engine import for_sites, sins_categories
from surveillance.scoring.histology import UnknownHistology, normalise_histology
from surveillance.scoring.katagiri import LAB_CUTOFFS, compute_katagiri
from surveillance.scoring.ranges import ScoreResult
from surveillance.scoring.sins import compute_sins
from surveillance.scoring.tes import compute_tes_screen, spinal_extent_criterion
from surveillance.scoring.tokuhashi import compute_tokuhashi
from surveillance.scoring.tomita import compute_tomita
from surveillance.scoring.vocab import (
    LEVEL_ORDER,
    Alignment,
    Ambulation,
    BilskyGrade,
    Collapse,
    Frankel,
    LesionType,
    Level,
    Pain,
    Posterolateral,
    PrimarySite,
    VisceralStatus,
)

LEVELS = list(Level)
BILSKY_ORDER = [g.value for g in BilskyGrade]

#: Patient-level columns :meth:`BatchScorer.score` reads (float NaN / None / -1 for unknown).
PATIENT_COLUMNS = (
    "primary_site",
    "primary_histology",
    "hormone_dependent",
    "molecular_targeted_therapy",
    "previous_chemotherapy",
    "fit_for_surgery",
    "ecog",
    "kps",
    "ambulatory_status",
    "frankel_grade",
    "visceral_status",
    "visceral_treatable",
    "visceral_removable",
    "brain_metastases",
    "extraspinal_bone_metastases",
    "vertebral_body_metastases",
    "extraspinal_pathological_fracture",
    *(cut[0] for cut in LAB_CUTOFFS),
)
LESION_COLUMNS = (
    "patient_index",  # row of the patient in the patient columns, lesions sorted by it
    "level",
    "level_span_end",
    "pain",
    "lesion_type",
    "alignment",
    "collapse",
    "posterolateral",
    "bilsky_escc",
    "assessed_on",
)


def _codes(values: np.ndarray, vocabulary: list) -> np.ndarray:
    """Index of each value in ``vocabulary``; -1 for None/unknown."""
    table = {v: i for i, v in enumerate(vocabulary)}
    return np.fromiter((table.get(v, -1) for v in values), dtype=np.int64, count=len(values))


def _decode(code: int, vocabulary: list) -> Any:
    return None if code < 0 else vocabulary[code]


def _tri_decode(code: int) -> bool | None:
    return None if code < 0 else bool(code)


def _int_decode(code: int) -> int | None:
    return None if code < 0 else int(code)


def _float_codes(values: np.ndarray) -> np.ndarray:
    """Whole numbers stored as float with NaN for unknown -> int codes with -1."""
    return np.where(np.isnan(values), -1, values).astype(np.int64)


def to_mask(totals: tuple[int, ...]) -> int:
    mask = 0
    for t in totals:
        mask |= 1 << t
    return mask


@dataclass
class _Cache:
    results: dict[tuple, Any] = field(default_factory=dict)

    def apply(self, keys: np.ndarray, fn: Callable[[tuple], Any]) -> tuple[list[Any], np.ndarray]:
        """``fn`` once per distinct row of ``keys``; returns (results, inverse index)."""
        if len(keys) == 0:
            return [], np.zeros(0, dtype=np.int64)
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        out = []
        for row in unique.tolist():
            key = tuple(row)
            result = self.results.get(key)
            if result is None:
                result = fn(key)
                self.results[key] = result
            out.append(result)
        return out, inverse.reshape(-1)


@dataclass
class BatchResult:
    """Per-patient score columns (and per-lesion SINS masks)."""

    masks: dict[str, np.ndarray]  # system -> possible-totals bit mask (0: cannot compute)
    bands: dict[str, np.ndarray]  # system -> band code or None
    sins_worst_mask: np.ndarray
    sins_worst_level: np.ndarray
    bilsky_worst_rank: np.ndarray
    bilsky_worst_level: np.ndarray
    bilsky_unknown: np.ndarray
    lesions_assessed_on: np.ndarray
    mechanical_pain_on: np.ndarray
    lesion_count: np.ndarray
    tes_screen: np.ndarray
    lesion_sins_mask: np.ndarray


class BatchScorer:
    """Scores columns of patients; keep one instance per run to reuse its caches."""

    SYSTEMS = ("tomita", "revised_tokuhashi", "bauer", "modified_bauer", "nesms", "new_katagiri")

    def __init__(self) -> None:
        self._site_tuples: list[tuple[PrimarySite, ...]] = [()]
        self._site_index: dict[tuple[PrimarySite, ...], int] = {(): 0}
        self._histology: dict[str, tuple[PrimarySite, ...]] = {}
        self._span_tuples: list[tuple[Level, ...]] = []
        self._span_index: dict[tuple[str, str | None], int] = {}
        self._caches: dict[str, _Cache] = {}

    # -- encoders -------------------------------------------------------------

    def _sites(self, site: Any, histology: Any) -> int:
        if site is not None:
            try:
                sites: tuple[PrimarySite, ...] = (PrimarySite(site),)
            except ValueError:
                # A code the vocabulary does not know (a legacy row): scored as unknown
                # histology ("cannot compute"), never a guess, and never a failed run.
                sites = ()
        elif histology:
            sites = self._histology.get(histology)
            if sites is None:
                try:
                    sites = normalise_histology(histology).sites
                except UnknownHistology:
                    sites = ()  # the writers refuse such text; an unmappable legacy row stays unknown
                self._histology[histology] = sites
        else:
            sites = ()
        code = self._site_index.get(sites)
        if code is None:
            code = len(self._site_tuples)
            self._site_tuples.append(sites)
            self._site_index[sites] = code
        return code

    def _span(self, level: str, span_end: str | None) -> int:
        key = (level, span_end)
        code = self._span_index.get(key)
        if code is None:
            first, last = (
                LEVEL_ORDER[Level(level)],
                LEVEL_ORDER[Level(span_end)] if span_end else LEVEL_ORDER[Level(level)],
            )
            lo, hi = min(first, last), max(first, last)
            code = len(self._span_tuples)
            self._span_tuples.append(tuple(LEVELS[lo : hi + 1]))
            self._span_index[key] = code
        return code

    def _cache(self, name: str) -> _Cache:
        return self._caches.setdefault(name, _Cache())

    # -- scoring ----------------------------------------------------------------

    def score(self, patients: dict[str, np.ndarray], lesions: dict[str, np.ndarray]) -> BatchResult:
        n = len(patients["primary_site"])
        site = np.fromiter(
            (self._sites(s, h) for s, h in zip(patients["primary_site"], patients["primary_histology"], strict=True)),
            dtype=np.int64,
            count=n,
        )
        tri = {
            k: patients[k].astype(np.int64)
            for k in (
                "hormone_dependent",
                "molecular_targeted_therapy",
                "previous_chemotherapy",
                "fit_for_surgery",
                "visceral_treatable",
                "visceral_removable",
                "brain_metastases",
                "extraspinal_pathological_fracture",
            )
        }
        ecog = _float_codes(patients["ecog"])
        kps = _float_codes(patients["kps"])
        extraspinal = _float_codes(patients["extraspinal_bone_metastases"])
        vertebral = _float_codes(patients["vertebral_body_metastases"])
        vstatus = _codes(patients["visceral_status"], [v.value for v in VisceralStatus])
        ambulation = _codes(patients["ambulatory_status"], [v.value for v in Ambulation])
        frankel = _codes(patients["frankel_grade"], [v.value for v in Frankel])
        labs = (
            np.stack(
                [
                    np.where(
                        np.isnan(patients[field_name]),
                        -1,
                        (patients[field_name] >= threshold) if op == "ge" else (patients[field_name] < threshold),
                    ).astype(np.int64)
                    for field_name, _label, _tier, op, threshold in LAB_CUTOFFS
                ],
                axis=1,
            )
            if n
            else np.zeros((0, len(LAB_CUTOFFS)), dtype=np.int64)
        )
        albumin = patients["albumin_g_dl"]
        albumin_ok = np.where(np.isnan(albumin), -1, albumin >= nesms.ALBUMIN_NORMAL_G_DL).astype(np.int64)

        lesion = self._score_lesions(n, lesions)
        # One contiguous multi-level lesion is "single contiguous"; several lesions are not; none is unknown.
        contiguous = np.where(
            lesion["count"] == 0, -1, np.where((lesion["count"] == 1) & (lesion["first_span"] > 1), 1, 0)
        )
        fracture = lesion["fracture"]  # 1: a collapse lt50/gt50, -1: a collapse unknown, 0: neither
        results_masks: dict[str, np.ndarray] = {}
        results_bands: dict[str, np.ndarray] = {}

        def run(name: str, keys: list[np.ndarray], fn: Callable[[tuple], ScoreResult]) -> None:
            matrix = np.stack(keys, axis=1) if n else np.zeros((0, len(keys)), dtype=np.int64)

            def summarise(key: tuple) -> tuple[int, str | None]:
                result = fn(key)
                return to_mask(result.possible_totals), result.band

            results, inverse = self._cache(name).apply(matrix, summarise)
            masks = np.array([r[0] for r in results], dtype=np.int64)
            bands = np.array([r[1] for r in results], dtype=object)
            results_masks[name] = masks[inverse] if n else np.zeros(0, dtype=np.int64)
            results_bands[name] = bands[inverse] if n else np.zeros(0, dtype=object)

        sites_of = self._site_tuples.__getitem__
        vs_vocab = list(VisceralStatus)

        run(
            "tomita",
            [site, vstatus, tri["visceral_treatable"], tri["brain_metastases"], extraspinal, vertebral, contiguous],
            lambda k: for_sites(
                sites_of(k[0]),
                lambda s: compute_tomita(
                    s,
                    _decode(k[1], vs_vocab),
                    _tri_decode(k[2]),
                    _tri_decode(k[3]),
                    _int_decode(k[4]),
                    _int_decode(k[5]),
                    _tri_decode(k[6]),
                ),
            ),
        )
        run(
            "revised_tokuhashi",
            [
                site,
                kps,
                ecog,
                extraspinal,
                vertebral,
                vstatus,
                tri["visceral_removable"],
                tri["brain_metastases"],
                frankel,
            ],
            lambda k: for_sites(
                sites_of(k[0]),
                lambda s: compute_tokuhashi(
                    s,
                    _int_decode(k[1]),
                    _int_decode(k[2]),
                    _int_decode(k[3]),
                    _int_decode(k[4]),
                    _decode(k[5], vs_vocab),
                    _tri_decode(k[6]),
                    _tri_decode(k[7]),
                    _decode(k[8], list(Frankel)),
                ),
            ),
        )

        def bauer_kwargs(k: tuple, s: PrimarySite | None) -> dict:
            collapses = {1: (Collapse.LT50,), -1: (None,), 0: ()}[k[6]]
            return dict(
                site=s,
                visceral_status=_decode(k[1], vs_vocab),
                brain_metastases=_tri_decode(k[2]),
                extraspinal_bone_metastases=_int_decode(k[3]),
                vertebral_body_metastases=_int_decode(k[4]),
                single_contiguous_lesion=_tri_decode(k[5]),
                collapses=collapses,
                extraspinal_fracture=_tri_decode(k[7]),
            )

        bauer_keys = [
            site,
            vstatus,
            tri["brain_metastases"],
            extraspinal,
            vertebral,
            contiguous,
            fracture,
            tri["extraspinal_pathological_fracture"],
        ]
        run("bauer", bauer_keys, lambda k: for_sites(sites_of(k[0]), lambda s: compute_bauer(**bauer_kwargs(k, s))))
        run(
            "modified_bauer",
            bauer_keys,
            lambda k: for_sites(sites_of(k[0]), lambda s: compute_modified_bauer(**bauer_kwargs(k, s))),
        )

        def nesms_for(k: tuple) -> ScoreResult:
            def one(s):
                mb = compute_modified_bauer(**bauer_kwargs(k, s))
                return nesms.compute_nesms(
                    mb.possible_totals, tuple(mb.missing), _decode(k[8], list(Ambulation)), _tri_decode(k[9])
                )

            return for_sites(sites_of(k[0]), one)

        run("nesms", [*bauer_keys, ambulation, albumin_ok], nesms_for)
        run(
            "new_katagiri",
            [
                site,
                tri["hormone_dependent"],
                tri["molecular_targeted_therapy"],
                vstatus,
                tri["brain_metastases"],
                *labs.T,
                ecog,
                kps,
                tri["previous_chemotherapy"],
                extraspinal,
                vertebral,
                contiguous,
            ],
            lambda k: for_sites(
                sites_of(k[0]),
                lambda s: compute_katagiri(
                    s,
                    _tri_decode(k[1]),
                    _tri_decode(k[2]),
                    _decode(k[3], vs_vocab),
                    _tri_decode(k[4]),
                    tuple(_tri_decode(x) for x in k[5 : 5 + len(LAB_CUTOFFS)]),
                    _int_decode(k[11]),
                    _int_decode(k[12]),
                    _tri_decode(k[13]),
                    _int_decode(k[14]),
                    _int_decode(k[15]),
                    _tri_decode(k[16]),
                ),
            ),
        )

        extent = lesion["extent"]
        tes_matrix = (
            np.stack(
                [
                    site,
                    extent,
                    ecog,
                    kps,
                    results_masks["tomita"],
                    results_masks["revised_tokuhashi"],
                    results_masks["new_katagiri"],
                ],
                axis=1,
            )
            if n
            else np.zeros((0, 7), dtype=np.int64)
        )
        extent_vocab = ["met", "not_met", "unknown"]

        def tes_for(k: tuple) -> str:
            return compute_tes_screen(
                sites=sites_of(k[0]),
                spinal_extent=extent_vocab[k[1]],
                ecog=_int_decode(k[2]),
                kps=_int_decode(k[3]),
                tomita_totals=tuple(totals_of(k[4])),
                tokuhashi_totals=tuple(totals_of(k[5])),
                katagiri_totals=tuple(totals_of(k[6])),
            )["result"]

        tes_results, tes_inverse = self._cache("tes").apply(tes_matrix, tes_for)
        tes = np.array(tes_results, dtype=object)[tes_inverse] if n else np.zeros(0, dtype=object)

        return BatchResult(
            masks=results_masks,
            bands=results_bands,
            sins_worst_mask=lesion["worst_mask"],
            sins_worst_level=lesion["worst_level"],
            bilsky_worst_rank=lesion["bilsky_rank"],
            bilsky_worst_level=lesion["bilsky_level"],
            bilsky_unknown=lesion["bilsky_unknown"],
            lesions_assessed_on=lesion["assessed_on"],
            mechanical_pain_on=lesion["mechanical_on"],
            lesion_count=lesion["count"],
            tes_screen=tes,
            lesion_sins_mask=lesion["lesion_mask"],
        )

    def _score_lesions(self, n: int, lesions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = np.zeros(n, dtype=np.int64)
        out = {
            "count": count,
            "worst_mask": np.zeros(n, dtype=np.int64),
            "worst_level": np.full(n, None, dtype=object),
            "bilsky_rank": np.full(n, -1, dtype=np.int64),
            "bilsky_level": np.full(n, None, dtype=object),
            "bilsky_unknown": np.zeros(n, dtype=bool),
            "assessed_on": np.full(n, np.datetime64("NaT", "D")),
            "mechanical_on": np.full(n, np.datetime64("NaT", "D")),
            "fracture": np.zeros(n, dtype=np.int64),
            "first_span": np.zeros(n, dtype=np.int64),
            "extent": np.full(n, 2, dtype=np.int64),  # "unknown"
            "lesion_mask": np.zeros(0, dtype=np.int64),
        }
        m = len(lesions["patient_index"])
        if m == 0:
            return out
        pidx = lesions["patient_index"].astype(np.int64)
        span = np.fromiter(
            (self._span(lv, end) for lv, end in zip(lesions["level"], lesions["level_span_end"], strict=True)),
            dtype=np.int64,
            count=m,
        )
        keys = np.stack(
            [
                span,
                _codes(lesions["pain"], [v.value for v in Pain]),
                _codes(lesions["lesion_type"], [v.value for v in LesionType]),
                _codes(lesions["alignment"], [v.value for v in Alignment]),
                _codes(lesions["collapse"], [v.value for v in Collapse]),
                _codes(lesions["posterolateral"], [v.value for v in Posterolateral]),
            ],
            axis=1,
        )
        spans = self._span_tuples
        vocabs = (list(Pain), list(LesionType), list(Alignment), list(Collapse), list(Posterolateral))
        results, inverse = self._cache("sins").apply(
            keys,
            lambda k: to_mask(
                compute_sins(spans[k[0]], *(_decode(c, v) for c, v in zip(k[1:], vocabs, strict=True))).possible_totals
            ),
        )
        lesion_mask = np.array(results, dtype=np.int64)[inverse]
        lesion_max, lesion_min = mask_max(lesion_mask), mask_min(lesion_mask)
        starts = np.flatnonzero(np.r_[True, pidx[1:] != pidx[:-1]])
        owners = pidx[starts]
        count[owners] = np.diff(np.r_[starts, m])
        union = np.bitwise_or.reduceat(lesion_mask, starts)
        floor = np.maximum.reduceat(lesion_min, starts)
        # The worst lesion's possible totals: a value v is reachable as the maximum
        # when some lesion can be v and every lesion can be at most v.
        worst = union & ~((np.int64(1) << floor) - 1)
        out["worst_mask"][owners] = worst
        # Worst lesion: highest possible total (first such lesion on ties).
        order = np.lexsort((np.arange(m), -lesion_max, pidx))
        first_of = order[np.searchsorted(pidx[order], owners)]
        out["worst_level"][owners] = lesions["level"][first_of]
        rank = _codes(lesions["bilsky_escc"], BILSKY_ORDER)
        out["bilsky_rank"][owners] = np.maximum.reduceat(rank, starts)
        border = np.lexsort((np.arange(m), -rank, pidx))
        out["bilsky_level"][owners] = lesions["level"][border[np.searchsorted(pidx[border], owners)]]
        out["bilsky_unknown"][owners] = np.maximum.reduceat((rank < 0).astype(np.int64), starts).astype(bool)
        assessed = lesions["assessed_on"].astype("datetime64[D]")
        filled = np.where(np.isnat(assessed), np.datetime64("0001-01-01", "D"), assessed)
        latest = np.maximum.reduceat(filled, starts)
        out["assessed_on"][owners] = np.where(
            latest == np.datetime64("0001-01-01", "D"), np.datetime64("NaT", "D"), latest
        )
        mech = np.where(lesions["pain"] == "mechanical", filled, np.datetime64("0001-01-01", "D"))
        mech_latest = np.maximum.reduceat(mech, starts)
        out["mechanical_on"][owners] = np.where(
            mech_latest == np.datetime64("0001-01-01", "D"), np.datetime64("NaT", "D"), mech_latest
        )
        collapse = lesions["collapse"]
        is_fracture = np.isin(collapse, ["lt50", "gt50"]).astype(np.int64)
        is_unknown = np.array([c is None for c in collapse], dtype=np.int64)
        any_fracture = np.maximum.reduceat(is_fracture, starts)
        any_unknown = np.maximum.reduceat(is_unknown, starts)
        out["fracture"][owners] = np.where(any_fracture == 1, 1, np.where(any_unknown == 1, -1, 0))
        span_len = np.fromiter((len(spans[c]) for c in span), dtype=np.int64, count=m)
        out["first_span"][owners] = span_len[starts]
        # Spinal extent for the TES screen: the distinct levels covered, as a bit set per patient.
        first_pos = np.fromiter((LEVEL_ORDER[spans[c][0]] for c in span), dtype=np.int64, count=m)
        last_pos = np.fromiter((LEVEL_ORDER[spans[c][-1]] for c in span), dtype=np.int64, count=m)
        one = np.int64(1)
        level_bits = np.bitwise_or.reduceat(((one << (last_pos + 1)) - 1) ^ ((one << first_pos) - 1), starts)
        covered = np.bitwise_count(level_bits).astype(np.int64)
        lo = mask_min(level_bits)
        hi = mask_max(level_bits)
        extent_vocab = {"met": 0, "not_met": 1, "unknown": 2}
        out["extent"][owners] = [
            extent_vocab[spinal_extent_criterion(int(c), int(a), int(b))]
            for c, a, b in zip(covered, lo, hi, strict=True)
        ]
        out["lesion_mask"] = lesion_mask
        return out


__all__ = ["BatchResult", "BatchScorer", "LESION_COLUMNS", "PATIENT_COLUMNS", "sins_categories", "to_mask"]
