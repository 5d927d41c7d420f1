"""Scoring many patients at once with the scoring core's own item functions.

The recompute pipeline scores up to a million patients a night.  Calling
``score_case`` per patient would take minutes, so this module works item by
item.  Every instrument of the core is a list of :class:`ItemSpec` (an item's
function and the inputs it reads); here each input becomes a column of small
integer codes (-1 for unknown), each item's inputs are packed into one integer
key, and the item's own function runs once per *distinct key* — an item reads
one to three inputs, so a million patients have a few dozen distinct keys per
item.  The points an item can take become a bit mask per patient, and the
instrument's possible totals are the sum-set of its items' masks, computed for
all patients at once with shifts and ORs.  Bands come from the instrument's own
table (``band_of``), once per distinct mask.

A histology that is a family ("lung cancer": NSCLC or SCLC) is scored for every
candidate site, as ``for_sites`` does for one patient: the patient's row is
repeated per candidate, and the results are united (any candidate that cannot
be computed makes the instrument "cannot compute", as ``union_results`` says).

Laboratory cut-offs are the instrument's own table (``katagiri.LAB_CUTOFFS``,
``nesms.ALBUMIN_NORMAL_G_DL``).  The per-key caches live as long as the
:class:`BatchScorer`, so later batches of a run mostly look results up.
``tests/test_batch.py`` checks the batch against ``score_case`` patient by
patient.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from surveillance.rules.engine import mask_max, mask_min, totals_of
from surveillance.scoring import bauer, katagiri, nesms, sins, tokuhashi, tomita
from surveillance.scoring import tes as tes_screen
from surveillance.scoring.engine import sins_categories
from surveillance.scoring.histology import UnknownHistology, normalise_histology
from surveillance.scoring.katagiri import LAB_CUTOFFS
from surveillance.scoring.ranges import CannotCompute, InstrumentTable, ItemSpec
from surveillance.scoring.tes import spinal_extent_criterion
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
SITES = list(PrimarySite)

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

_TRI = (False, True)


def to_mask(totals: Sequence[int]) -> int:
    mask = 0
    for t in totals:
        mask |= 1 << t
    return mask


def _codes(values: np.ndarray, vocabulary: Sequence[Any]) -> np.ndarray:
    """Index of each value in ``vocabulary``; -1 for None/NaN or a value outside it (hash-based, no Python loop)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    table = {v: i for i, v in enumerate(vocabulary)}
    lookup = np.array([table.get(u, -1) for u in uniques.tolist()] + [-1], dtype=np.int64)
    return lookup[codes]  # the sentinel -1 picks the trailing -1


def _dedupe(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(key, return_inverse=True)`` for non-negative int keys, in linear time when they are small."""
    if len(key) == 0:
        return key, key
    top = int(key.max())
    if top >= 1 << 22 or int(key.min()) < 0:
        distinct, inverse = np.unique(key, return_inverse=True)
        return distinct, inverse.reshape(-1)
    present = np.zeros(top + 1, dtype=bool)
    present[key] = True
    distinct = np.flatnonzero(present)
    position = np.cumsum(present) - 1
    return distinct, position[key]


def _pair_codes(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, list[tuple[Any, Any]]]:
    """Codes of distinct (first, second) value pairs (None/NaN kept as values) and the pairs themselves."""
    a, a_values = pd.factorize(np.asarray(first, dtype=object), use_na_sentinel=False)
    b, b_values = pd.factorize(np.asarray(second, dtype=object), use_na_sentinel=False)
    distinct, inverse = _dedupe(a.astype(np.int64) * max(len(b_values), 1) + b)
    width = max(len(b_values), 1)
    a_list, b_list = list(a_values), list(b_values)
    return inverse, [(a_list[k // width], b_list[k % width]) for k in distinct.tolist()]


def _float_codes(values: np.ndarray) -> np.ndarray:
    """Whole numbers stored as float with NaN for unknown -> int codes with -1."""
    return np.where(np.isnan(values), -1, values).astype(np.int64)


def _tri_codes(values: np.ndarray) -> np.ndarray:
    """Tri-state columns (1 / 0 / -1) as int codes."""
    return np.asarray(values).astype(np.int64)


@dataclass
class _Column:
    """One input of the items: int codes (-1 unknown) and how a code becomes the core's value."""

    codes: np.ndarray
    decode: Callable[[int], Any]

    def take(self, rows: np.ndarray | None) -> _Column:
        return self if rows is None else _Column(self.codes[rows], self.decode)


def _enum(vocabulary: Sequence[Any]) -> Callable[[int], Any]:
    return lambda c: None if c < 0 else vocabulary[c]


def _int(c: int) -> int | None:
    return None if c < 0 else int(c)


def _tri(c: int) -> bool | None:
    return None if c < 0 else bool(c)


def _add(total: int, item: int) -> int:
    """Bit mask of every ``t + p`` for t in ``total`` and p in ``item``; -1 ("cannot compute") wins."""
    if total < 0 or item < 0:
        return -1
    out, bit = 0, 0
    while item:
        if item & 1:
            out |= total << bit
        item >>= 1
        bit += 1
    return out


def _capped(total: int, cap: int | None) -> int:
    """0 for "cannot compute"; with a published ceiling (NESMS) totals above ``cap`` become ``cap``."""
    if total < 0:
        return 0
    if cap is not None and total >> (cap + 1):
        total = (total & ((1 << (cap + 1)) - 1)) | (1 << cap)
    return total


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


#: Instruments scored per patient: name, table, item specs, ceiling.
_INSTRUMENTS: tuple[tuple[str, InstrumentTable, tuple[ItemSpec, ...], int | None], ...] = (
    ("tomita", tomita.TABLE, tomita.SPECS, None),
    ("revised_tokuhashi", tokuhashi.TABLE, tokuhashi.SPECS, None),
    ("bauer", bauer.TABLE, bauer.SPECS, None),
    ("modified_bauer", bauer.MODIFIED_TABLE, bauer.MODIFIED_SPECS, None),
    ("new_katagiri", katagiri.TABLE, katagiri.SPECS, None),
)
_FRACTURE_COLLAPSES = {1: (Collapse.LT50,), -1: (None,), 0: ()}  # any fracture / a collapse unknown / neither


class BatchScorer:
    """Scores columns of patients, memoising every item's answer by its encoded inputs.

    The memos are pure functions of the scoring tables, so one instance may live as
    long as the process (:func:`shared_scorer`): a scheduler's incremental runs then
    find the few hundred distinct item answers already known instead of recomputing
    them each run.  ``score`` holds a lock, because the encoders append to shared
    lists (two threads must never hand out the same code).
    """

    SYSTEMS = ("tomita", "revised_tokuhashi", "bauer", "modified_bauer", "nesms", "new_katagiri")

    def __init__(self) -> None:
        self._site_tuples: list[tuple[PrimarySite, ...]] = [()]
        self._site_index: dict[tuple[PrimarySite, ...], int] = {(): 0}
        self._histology: dict[str, tuple[PrimarySite, ...]] = {}
        self._span_tuples: list[tuple[Level, ...]] = []
        self._span_index: dict[tuple[Any, Any], int] = {}
        self._items: dict[tuple, int] = {}  # (instrument, item, input codes) -> points mask, -1: cannot compute
        self._bands: dict[tuple[str, int], str | None] = {}
        self._tes: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    # -- encoders -------------------------------------------------------------

    def _site_of(self, site: Any, histology: Any) -> tuple[PrimarySite, ...]:
        if site is not None and site == site:
            try:
                return (PrimarySite(site),)
            except ValueError:
                # A code the vocabulary does not know (a legacy row): scored as unknown
                # histology ("cannot compute"), never a guess, and never a failed run.
                return ()
        if histology is not None and histology == histology and histology:
            sites = self._histology.get(histology)
            if sites is None:
                try:
                    sites = normalise_histology(histology).sites
                except UnknownHistology:
                    sites = ()  # the writers refuse such text; an unmappable legacy row stays unknown
                self._histology[histology] = sites
            return sites
        return ()

    def _site_codes(self, site: np.ndarray, histology: np.ndarray) -> np.ndarray:
        """Code of each patient's candidate-site tuple (distinct (site, histology) pairs resolved once)."""
        n = len(site)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        codes, uniques = _pair_codes(site, histology)
        lookup = np.empty(len(uniques), dtype=np.int64)
        for j, (s, h) in enumerate(uniques):
            sites = self._site_of(s, h)
            code = self._site_index.get(sites)
            if code is None:
                code = len(self._site_tuples)
                self._site_tuples.append(sites)
                self._site_index[sites] = code
            lookup[j] = code
        return lookup[codes]

    def _span_codes(self, level: np.ndarray, span_end: np.ndarray) -> np.ndarray:
        if len(level) == 0:
            return np.zeros(0, dtype=np.int64)
        codes, uniques = _pair_codes(level, span_end)
        lookup = np.empty(len(uniques), dtype=np.int64)
        for j, (lv, end) in enumerate(uniques):
            end = end if isinstance(end, str) else None
            key = (lv, end)
            code = self._span_index.get(key)
            if code is None:
                first = LEVEL_ORDER[Level(lv)]
                last = LEVEL_ORDER[Level(end)] if end else first
                lo, hi = min(first, last), max(first, last)
                code = len(self._span_tuples)
                self._span_tuples.append(tuple(LEVELS[lo : hi + 1]))
                self._span_index[key] = code
            lookup[j] = code
        return lookup[codes]

    # -- items ------------------------------------------------------------------

    def _item_mask(self, instrument: str, spec: ItemSpec, columns: dict[str, _Column]) -> tuple[np.ndarray, np.ndarray]:
        """The item's distinct point masks (-1: the instrument cannot be computed) and each row's index into them."""
        inputs = [columns[name] for name in spec.inputs]
        n = len(inputs[0].codes)
        key = np.zeros(n, dtype=np.int64)
        radices = []
        for column in inputs:
            radix = int(column.codes.max()) + 2 if n else 1
            key = key * radix + (column.codes + 1)
            radices.append(radix)
        distinct, inverse = _dedupe(key)
        masks = np.empty(len(distinct), dtype=np.int64)
        for j, packed in enumerate(distinct.tolist()):
            codes = []
            for radix in reversed(radices):
                packed, digit = divmod(packed, radix)
                codes.append(digit - 1)
            codes.reverse()
            cache_key = (instrument, spec.key, *codes)
            mask = self._items.get(cache_key)
            if mask is None:
                outcome = spec.fn(*(column.decode(c) for column, c in zip(inputs, codes, strict=True)))
                if isinstance(outcome, CannotCompute):
                    mask = -1
                else:
                    if min(outcome.possible_points) < 0:  # pragma: no cover - no instrument has negative points
                        raise ValueError(f"{instrument}.{spec.key}: negative points cannot be a bit mask")
                    mask = to_mask(outcome.possible_points)
                self._items[cache_key] = mask
            masks[j] = mask
        return masks, inverse

    def _instrument_mask(
        self, instrument: str, specs: Sequence[ItemSpec], columns: dict[str, _Column], cap: int | None = None
    ) -> np.ndarray:
        """Possible-totals mask per row (0: cannot compute): the sum-set of the items' masks.

        The rows' combinations of item answers are few, so the sum-set is taken
        once per distinct combination.
        """
        n = len(next(iter(columns.values())).codes)
        current = np.ones(1, dtype=np.int64)  # distinct partial sums so far: only the empty sum, 0
        rows = np.zeros(n, dtype=np.int64)  # each row's index into ``current``
        for spec in specs:
            masks, inverse = self._item_mask(instrument, spec, columns)
            distinct, pair = _dedupe(rows * len(masks) + inverse)
            sums = np.array(
                [_add(int(current[k // len(masks)]), int(masks[k % len(masks)])) for k in distinct.tolist()],
                dtype=np.int64,
            )
            current, compact = np.unique(sums, return_inverse=True)
            rows = compact.reshape(-1)[pair]
        final = np.array([_capped(int(m), cap) for m in current.tolist()], dtype=np.int64)
        return final[rows]

    def _band_codes(self, instrument: str, table: InstrumentTable, masks: np.ndarray) -> np.ndarray:
        distinct, inverse = _dedupe(masks)
        bands = np.empty(len(distinct), dtype=object)
        for j, mask in enumerate(distinct.tolist()):
            key = (instrument, mask)
            if key not in self._bands:
                self._bands[key] = table.band_of(tuple(totals_of(mask))) if mask else None
            bands[j] = self._bands[key]
        return bands[inverse]

    # -- scoring ----------------------------------------------------------------

    def score(self, patients: dict[str, np.ndarray], lesions: dict[str, np.ndarray]) -> BatchResult:
        with self._lock:
            return self._score(patients, lesions)

    def _score(self, patients: dict[str, np.ndarray], lesions: dict[str, np.ndarray]) -> BatchResult:
        n = len(patients["primary_site"])
        site_code = self._site_codes(patients["primary_site"], patients["primary_histology"])
        lesion = self._score_lesions(n, lesions)
        # One contiguous multi-level lesion is "single contiguous"; several lesions are not; none is unknown.
        contiguous = np.where(
            lesion["count"] == 0, -1, np.where((lesion["count"] == 1) & (lesion["first_span"] > 1), 1, 0)
        )
        labs = np.zeros(n, dtype=np.int64)  # the six laboratory flags, base 3 (0 unknown, 1 negative, 2 positive)
        for field_name, _label, _tier, op, threshold in LAB_CUTOFFS:
            values = patients[field_name]
            flag = np.where(
                np.isnan(values), 0, np.where((values >= threshold) if op == "ge" else (values < threshold), 2, 1)
            )
            labs = labs * 3 + flag

        def decode_labs(code: int) -> tuple[bool | None, ...]:
            flags = []
            for _ in LAB_CUTOFFS:
                code, digit = divmod(code, 3)
                flags.append((None, False, True)[digit])
            return tuple(reversed(flags))

        albumin = patients["albumin_g_dl"]
        visceral = list(VisceralStatus)
        columns = {
            "visceral_status": _Column(
                _codes(patients["visceral_status"], [v.value for v in visceral]), _enum(visceral)
            ),
            "ecog": _Column(_float_codes(patients["ecog"]), _int),
            "kps": _Column(_float_codes(patients["kps"]), _int),
            "extraspinal_bone_metastases": _Column(_float_codes(patients["extraspinal_bone_metastases"]), _int),
            "vertebral_body_metastases": _Column(_float_codes(patients["vertebral_body_metastases"]), _int),
            "ambulatory_status": _Column(
                _codes(patients["ambulatory_status"], [v.value for v in Ambulation]), _enum(list(Ambulation))
            ),
            "frankel_grade": _Column(
                _codes(patients["frankel_grade"], [v.value for v in Frankel]), _enum(list(Frankel))
            ),
            "single_contiguous_lesion": _Column(contiguous, _tri),
            "collapses": _Column(lesion["fracture"], _FRACTURE_COLLAPSES.__getitem__),
            "extraspinal_fracture": _Column(_tri_codes(patients["extraspinal_pathological_fracture"]), _tri),
            "labs": _Column(labs, decode_labs),
            "albumin_is_normal": _Column(
                np.where(np.isnan(albumin), -1, albumin >= nesms.ALBUMIN_NORMAL_G_DL).astype(np.int64), _tri
            ),
            "modified_bauer_missing": _Column(np.zeros(n, dtype=np.int64), lambda c: ()),
        }
        for name in (
            "hormone_dependent",
            "molecular_targeted_therapy",
            "previous_chemotherapy",
            "visceral_treatable",
            "visceral_removable",
            "brain_metastases",
        ):
            columns[name] = _Column(_tri_codes(patients[name]), _tri)

        # Rows per candidate site: a histology family repeats its patient once per candidate.
        site_tuples = self._site_tuples
        lengths = np.array([max(len(t), 1) for t in site_tuples], dtype=np.int64)[site_code]
        single_site = np.array([SITES.index(t[0]) if len(t) == 1 else -1 for t in site_tuples], dtype=np.int64)
        if n and lengths.max() > 1:
            rows = np.repeat(np.arange(n), lengths)
            # Each tuple's candidates laid end to end; a row takes its tuple's slice.
            flat = np.array(
                [
                    SITES.index(x) if len(t) > 1 else single_site[c]
                    for c, t in enumerate(site_tuples)
                    for x in t or (None,)
                ],
                dtype=np.int64,
            )
            offsets = np.r_[0, np.cumsum([max(len(t), 1) for t in site_tuples])[:-1]].astype(np.int64)
            first = np.repeat(np.cumsum(lengths) - lengths, lengths)
            candidate = flat[np.repeat(offsets[site_code], lengths) + (np.arange(len(rows)) - first)]
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        else:
            rows, starts = None, None
            candidate = single_site[site_code] if n else np.zeros(0, dtype=np.int64)
        expanded = {name: column.take(rows) for name, column in columns.items()}
        expanded["site"] = _Column(candidate, _enum(SITES))

        def united(mask: np.ndarray) -> np.ndarray:
            if rows is None:
                return mask
            any_cannot = np.maximum.reduceat((mask == 0).astype(np.int64), starts).astype(bool)
            return np.where(any_cannot, 0, np.bitwise_or.reduceat(mask, starts))

        masks: dict[str, np.ndarray] = {}
        bands: dict[str, np.ndarray] = {}
        per_candidate: dict[str, np.ndarray] = {}
        for name, _table, specs, cap in _INSTRUMENTS:
            per_candidate[name] = self._instrument_mask(name, specs, expanded, cap)
            masks[name] = united(per_candidate[name])
        # NESMS reads modified Bauer's possible totals for the same candidate site.
        expanded["modified_bauer_totals"] = _Column(per_candidate["modified_bauer"], lambda m: tuple(totals_of(m)))
        masks["nesms"] = united(self._instrument_mask("nesms", nesms.SPECS, expanded, nesms.CEILING))
        tables = {name: table for name, table, _specs, _cap in _INSTRUMENTS} | {"nesms": nesms.TABLE}
        for name in self.SYSTEMS:
            bands[name] = self._band_codes(name, tables[name], masks[name])

        tes = self._tes_screen(n, site_code, lesion["extent"], columns, masks)
        return BatchResult(
            masks=masks,
            bands=bands,
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

    def _tes_screen(
        self,
        n: int,
        site_code: np.ndarray,
        extent: np.ndarray,
        columns: dict[str, _Column],
        masks: dict[str, np.ndarray],
    ) -> np.ndarray:
        """The TES screen's five criteria, each once per distinct input, then combined once per distinct set."""
        if n == 0:
            return np.zeros(0, dtype=object)
        states = [tes_screen.MET, tes_screen.NOT_MET, tes_screen.UNKNOWN, "selected"]
        state_code = {s: i for i, s in enumerate(states)}
        extent_states = np.array([state_code[s] for s in ("met", "not_met", "unknown")], dtype=np.int64)

        def criterion(name: str, key: np.ndarray, fn: Callable[[int], str]) -> np.ndarray:
            distinct, inverse = _dedupe(key)
            out = np.empty(len(distinct), dtype=np.int64)
            for j, k in enumerate(distinct.tolist()):
                cached = self._tes.get((name, k))
                if cached is None:
                    cached = self._tes[(name, k)] = state_code[fn(k)]
                out[j] = cached
            return out[inverse]

        site_tuples = self._site_tuples
        tok, kat = masks["revised_tokuhashi"], masks["new_katagiri"]
        # A fixed packing (every Katagiri total fits below bit ``width``): the cache outlives the batch.
        width = katagiri.TABLE.maximum + 1
        survival = criterion(
            "survival",
            (tok << width) | kat,
            lambda k: tes_screen.survival_criterion(
                tuple(totals_of(k >> width)), tuple(totals_of(k & ((1 << width) - 1)))
            ),
        )
        histology = criterion("histology", site_code, lambda k: tes_screen.histology_criterion(site_tuples[k]))
        ecog, kps = columns["ecog"].codes, columns["kps"].codes
        performance = criterion(
            "performance",
            (ecog + 1) * 1000 + (kps + 1),
            lambda k: tes_screen.performance_criterion(_int(k // 1000 - 1), _int(k % 1000 - 1)),
        )
        tomita_state = criterion("tomita", masks["tomita"], lambda k: tes_screen.tomita_criterion(tuple(totals_of(k))))
        combined = (((extent_states[extent] * 4 + survival) * 4 + histology) * 4 + performance) * 4 + tomita_state

        def combine(k: int) -> str:
            digits = []
            for _ in range(5):
                k, d = divmod(k, 4)
                digits.append(states[d])
            return tes_screen.combine(*reversed(digits))

        distinct, inverse = _dedupe(combined)
        results = np.array([combine(k) for k in distinct.tolist()], dtype=object)
        return results[inverse]

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
        span = self._span_codes(lesions["level"], lesions["level_span_end"])
        spans = self._span_tuples
        collapse = _codes(lesions["collapse"], [v.value for v in Collapse])
        pain = _codes(lesions["pain"], [v.value for v in Pain])
        columns = {
            "levels": _Column(span, spans.__getitem__),
            "pain": _Column(pain, _enum(list(Pain))),
            "lesion_type": _Column(
                _codes(lesions["lesion_type"], [v.value for v in LesionType]), _enum(list(LesionType))
            ),
            "alignment": _Column(_codes(lesions["alignment"], [v.value for v in Alignment]), _enum(list(Alignment))),
            "collapse": _Column(collapse, _enum(list(Collapse))),
            "posterolateral": _Column(
                _codes(lesions["posterolateral"], [v.value for v in Posterolateral]), _enum(list(Posterolateral))
            ),
        }
        lesion_mask = self._instrument_mask("sins", sins.SPECS, columns)
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
        never = np.datetime64("0001-01-01", "D")
        assessed = lesions["assessed_on"].astype("datetime64[D]")
        filled = np.where(np.isnat(assessed), never, assessed)
        latest = np.maximum.reduceat(filled, starts)
        out["assessed_on"][owners] = np.where(latest == never, np.datetime64("NaT", "D"), latest)
        mech = np.where(pain == list(Pain).index(Pain.MECHANICAL), filled, never)
        mech_latest = np.maximum.reduceat(mech, starts)
        out["mechanical_on"][owners] = np.where(mech_latest == never, np.datetime64("NaT", "D"), mech_latest)
        fracture_codes = [list(Collapse).index(Collapse.LT50), list(Collapse).index(Collapse.GT50)]
        any_fracture = np.maximum.reduceat(np.isin(collapse, fracture_codes).astype(np.int64), starts)
        any_unknown = np.maximum.reduceat((collapse < 0).astype(np.int64), starts)
        out["fracture"][owners] = np.where(any_fracture == 1, 1, np.where(any_unknown == 1, -1, 0))
        span_len = np.array([len(s) for s in spans], dtype=np.int64)
        out["first_span"][owners] = span_len[span][starts]
        # Spinal extent for the TES screen: the distinct levels covered, as a bit set per patient.
        first_pos = np.array([LEVEL_ORDER[s[0]] for s in spans], dtype=np.int64)[span]
        last_pos = np.array([LEVEL_ORDER[s[-1]] for s in spans], dtype=np.int64)[span]
        one = np.int64(1)
        level_bits = np.bitwise_or.reduceat(((one << (last_pos + 1)) - 1) ^ ((one << first_pos) - 1), starts)
        covered = np.bitwise_count(level_bits).astype(np.int64)
        lo = mask_min(level_bits)
        hi = mask_max(level_bits)
        extent_vocab = {"met": 0, "not_met": 1, "unknown": 2}
        key = (covered * 64 + lo) * 64 + hi
        distinct, inverse = _dedupe(key)
        extent = np.array(
            [extent_vocab[spinal_extent_criterion(int(k // 4096), int(k // 64 % 64), int(k % 64))] for k in distinct],
            dtype=np.int64,
        )
        out["extent"][owners] = extent[inverse]
        out["lesion_mask"] = lesion_mask
        return out


__all__ = ["BatchResult", "BatchScorer", "LESION_COLUMNS", "PATIENT_COLUMNS", "sins_categories", "to_mask"]


_SHARED: BatchScorer | None = None
_SHARED_LOCK = threading.Lock()


def shared_scorer() -> BatchScorer:
    """The process's scorer, whose memos carry over from one run to the next."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = BatchScorer()
        return _SHARED
