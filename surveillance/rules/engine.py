"""The rule engine: facts + scores + ``today`` → tier, imaging clock and alert decisions.

Pure: no database, no UI, no clock (``today`` is a parameter).  It works on a
:class:`Frame` — one numpy array per field, one row per patient — so the same
code scores one patient on a form and a million in the nightly run.  Every
threshold and interval comes from the rule file (``default_rules.toml``), read
by :mod:`surveillance.rules.schema`; the logic of each rule is here, registered
under the rule's id, with the parameters it reads.

Conventions:

* Unknown is never a negative finding: an unknown date is ``NaT`` and an
  unknown number ``NaN``; a rule that needs one does not fire on it, and where
  the *absence* of a record is itself the finding (no imaging, no dental exam)
  the rule says so in its evidence.
* Possible totals arrive as bit masks (bit ``t`` set when total ``t`` is
  reachable).  Safety rules fire on what is *possible* (an unstable SINS that
  may be 13), prognosis banners on what is *certain*.
* Every decision carries the evidence that fired it, an evidence key (what
  makes this episode distinct: a new due date is a new episode, a re-run is
  not), the rule id and version, severity, source and who acts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from surveillance.rules.schema import DEFAULT_RULES_PATH, Rule, RuleSet, parse_rules

NaT = np.datetime64("NaT", "D")
DAY = np.timedelta64(1, "D")
BILSKY_RANK = {"0": 0, "1a": 1, "1b": 2, "1c": 3, "2": 4, "3": 5}
FRANKEL_RANK = {"A": 0, "B": 1, "C": 2, "D": 3, "E": 4}  # higher is better
AMBULATION_RANK = {"independent": 0, "with_aid": 1, "with_assistance": 2, "non_ambulatory": 3}
SEVERITY_ORDER = {"critical": 0, "high": 1, "routine": 2, "info": 3}
TES_POSITIVE = ("positive", "selected")

#: Every field a Frame carries, with its kind.  Unknown: NaT (date), NaN (float),
#: -1 (tri-state "tri": 0 false, 1 true), None (str).  "mask" is a bit set of possible totals.
FRAME_FIELDS: dict[str, str] = {
    "patient_id": "int",
    "active": "bool",
    "registered_on": "date",
    "primary_site": "str",
    "lesion_count": "int",
    "extraspinal_bone_metastases": "float",
    "sins_worst_mask": "mask",
    "sins_worst_level": "str",
    "bilsky_worst_rank": "int",  # -1: no lesion with a known grade
    "bilsky_worst_level": "str",
    "bilsky_unknown": "bool",  # an active lesion has no ESCC grade
    "lesions_assessed_on": "date",
    "mechanical_pain_on": "date",
    "last_new_lesion_on": "date",
    "tokuhashi_mask": "mask",
    "katagiri_mask": "mask",
    "tes_screen": "str",
    "ecog": "float",
    "previous_ecog": "float",
    "ecog_on": "date",
    "frankel_grade": "str",
    "previous_frankel_grade": "str",
    "ambulatory_status": "str",
    "previous_ambulatory_status": "str",
    "neuro_on": "date",
    "new_deficit_on": "date",
    "cord_compression_pain_on": "date",
    "new_spinal_pain_on": "date",
    "last_imaging_on": "date",
    "last_spine_sbrt_on": "date",
    "bma_agent": "str",
    "bma_first_on": "date",
    "bma_last_on": "date",
    "denosumab_last_on": "date",
    "zoledronic_first_on": "date",
    "zoledronic_regimen": "str",
    "bma_not_indicated": "bool",
    "denosumab_transition_plan": "bool",
    "dental_before_first_bma": "tri",
    "dental_last_on": "date",
    "creatinine_mg_dl": "float",
    "creatinine_on": "date",
    "creatinine_baseline_mg_dl": "float",
    "calcium_mg_dl": "float",
    "calcium_on": "date",
    "albumin_g_dl": "float",
    "separation_surgery_on": "date",
    "separation_margin_mm": "float",
    "locomo_types": "int",
    "locomo_type2_without_plan": "bool",
    "locomo_type3_last_review_on": "date",
    "on_cancer_therapy": "bool",
    "last_sre_on": "date",
    "board_decided_on": "date",
}


def _empty(kind: str, n: int) -> np.ndarray:
    if kind == "date":
        return np.full(n, NaT)
    if kind == "float":
        return np.full(n, np.nan)
    if kind in ("int", "mask"):
        return np.zeros(n, dtype=np.int64)
    if kind == "bool":
        return np.zeros(n, dtype=bool)
    if kind == "tri":
        return np.full(n, -1, dtype=np.int8)
    return _objects(n, None)


def _coerce(kind: str, values: list[Any]) -> np.ndarray:
    if kind == "date":
        return np.array([NaT if v is None else np.datetime64(v, "D") for v in values], dtype="datetime64[D]")
    if kind == "float":
        return np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    if kind in ("int", "mask"):
        return np.array([0 if v is None else int(v) for v in values], dtype=np.int64)
    if kind == "bool":
        return np.array([bool(v) for v in values], dtype=bool)
    if kind == "tri":
        return np.array([-1 if v is None else int(bool(v)) for v in values], dtype=np.int8)
    return np.array(values, dtype=object)


@dataclass
class Frame:
    """Column arrays for ``n`` patients; see :data:`FRAME_FIELDS`."""

    n: int
    cols: dict[str, np.ndarray]

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.cols[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def from_columns(cls, n: int, columns: dict[str, np.ndarray]) -> Frame:
        unknown = set(columns) - set(FRAME_FIELDS)
        if unknown:
            raise KeyError(f"not frame fields: {sorted(unknown)}")
        cols = {name: columns[name] if name in columns else _empty(kind, n) for name, kind in FRAME_FIELDS.items()}
        return cls(n, cols)

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> Frame:
        """Build a frame from plain dicts (tests, one patient on a form)."""
        n = len(records)
        columns = {}
        for name, kind in FRAME_FIELDS.items():
            if any(name in r for r in records):
                columns[name] = _coerce(kind, [r.get(name) for r in records])
        return cls.from_columns(n, columns)


# ---------------------------------------------------------------------------
# Mask helpers
# ---------------------------------------------------------------------------

_BITS = 32  # level bit sets (30 levels) as well as totals (at most 18)


def _bit_index(single: np.ndarray) -> np.ndarray:
    """Index of the one set bit of each (power-of-two, below 2**53) value; exact via the float exponent."""
    return np.frexp(single.astype(np.float64))[1].astype(np.int64) - 1


def mask_max(mask: np.ndarray) -> np.ndarray:
    """Largest possible total per row; -1 where nothing is possible (mask 0)."""
    bits = np.asarray(mask).astype(np.int64) & ((1 << _BITS) - 1)
    # frexp(m) = (f, e) with m = f * 2**e, 0.5 <= f < 1: the highest set bit is e - 1 (m < 2**32 is exact).
    return np.where(bits != 0, _bit_index(bits), -1)


def mask_min(mask: np.ndarray) -> np.ndarray:
    """Smallest possible total per row; -1 where nothing is possible."""
    bits = np.asarray(mask).astype(np.int64) & ((1 << _BITS) - 1)
    return np.where(bits != 0, _bit_index(bits & -bits), -1)  # m & -m keeps the lowest set bit


def mask_any_between(mask: np.ndarray, low: int, high: int) -> np.ndarray:
    window = sum(1 << t for t in range(low, high + 1))
    return (mask & window) != 0


def totals_of(mask: int) -> list[int]:
    return [t for t in range(_BITS) if mask >> t & 1]


# Dates as day numbers: NaT is the smallest int64, so it is never "after today"; _NEVER stands for
# "no date" while taking minima.
_NAT_DAY = np.iinfo(np.int64).min
_NEVER = np.iinfo(np.int64).max


def _day_numbers(on: np.ndarray) -> np.ndarray:
    return np.asarray(on).astype("datetime64[D]", copy=False).view(np.int64)


def _days_since(today: np.datetime64, on: np.ndarray) -> np.ndarray:
    """Days from ``on`` to ``today`` as float (NaN where unknown)."""
    days = _day_numbers(on)
    delta = (np.datetime64(today, "D").astype(np.int64) - days).astype(float)  # NaT rows wrap: masked next
    delta[days == _NAT_DAY] = np.nan
    return delta


def _earliest_future(today: np.datetime64, *candidates: np.ndarray) -> np.ndarray:
    """Per row, the earliest candidate date after ``today`` (NaT if none)."""
    if not candidates:
        return NaT
    now = np.datetime64(today, "D").astype(np.int64)
    best = None
    for c in candidates:
        days = _day_numbers(c)
        future = np.where(days > now, days, _NEVER)
        best = future if best is None else np.minimum(best, future, out=best)
    best[best == _NEVER] = _NAT_DAY
    return best.view("datetime64[D]")


def _objects(n: int, value: Any) -> np.ndarray:
    """An object array of ``n`` times ``value`` (``np.full`` converts element by element)."""
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


def _pick(codes: np.ndarray, choices: list[Any]) -> np.ndarray:
    """``choices[code]`` per row as an object array (one pointer copy per row)."""
    table = np.empty(len(choices), dtype=object)
    table[:] = choices
    return table[codes]


def _factorize(values: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """Distinct values (first-seen order) and each row's index into them.

    For object columns (strings and ``None``) — the hashing equivalent of
    ``np.unique(..., return_inverse=True)``, which cannot sort ``None``; every
    step runs in C (dict hashing and ``map``), not a Python loop per row.
    """
    items = values.tolist()
    index = {v: i for i, v in enumerate(dict.fromkeys(items))}
    codes = np.fromiter(map(index.__getitem__, items), dtype=np.intp, count=len(items))
    return list(index), codes


def _rank(values: np.ndarray, table: dict[str, int]) -> np.ndarray:
    """Each value's rank in ``table``; -1 for unknown (``None``) or a value not in the table.

    One C-level dict lookup per row (``map`` over ``dict.get``), no Python loop.
    """
    items = values.tolist()
    return np.fromiter(map(table.get, items, itertools.repeat(-1)), dtype=np.int64, count=len(items))


def _isin(values: np.ndarray, choices: Any) -> np.ndarray:
    """``np.isin`` for an object column: each distinct value is tested once."""
    if values.dtype != object:
        return np.isin(values, list(choices))
    distinct, codes = _factorize(values)
    wanted = set(choices)
    return np.array([v in wanted for v in distinct], dtype=bool)[codes]


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _str(values: np.ndarray) -> np.ndarray:
    """Values as plain strings for keys and evidence; unknown (None, NaN, NaT) as "".

    Each distinct value is converted once and looked up per row.
    """
    if values.dtype == object:
        distinct, codes = _factorize(values)
        return _pick(codes, [_text(v) for v in distinct])
    distinct, codes = np.unique(values, return_inverse=True)
    if values.dtype.kind == "M":
        text = distinct.astype(str).astype(object)
        text[np.isnat(distinct)] = ""
    else:
        text = np.array([_text(v) for v in distinct], dtype=object)  # numpy scalars, as a per-row str() sees them
    return text[codes.reshape(values.shape)]


def _key(values: np.ndarray, fired: np.ndarray) -> np.ndarray:
    """:func:`_str` of the rows that fire (an episode key is only read there); "" on the others."""
    rows = np.flatnonzero(fired)
    out = _objects(len(values), "")
    out[rows] = _str(values[rows])
    return out


def _totals_text(mask: np.ndarray) -> np.ndarray:
    """Each row's possible totals as text ("7, 8, 9"); "" where nothing is possible."""
    distinct, codes = np.unique(mask, return_inverse=True)
    text = np.array([", ".join(map(str, totals_of(int(m)))) for m in distinct], dtype=object)
    return text[codes.reshape(mask.shape)]


# ---------------------------------------------------------------------------
# Rule registry
# ---------------------------------------------------------------------------


@dataclass
class RuleOutput:
    """One rule's outcome for every row of the frame.

    ``key`` (the parts of the evidence key) and ``evidence`` are full-length
    arrays, but they are only meaningful on the rows that fire: keys are
    rendered for those rows alone ("" elsewhere), so a million-row run does
    not format dates and levels for patients with no alert.
    """

    fired: np.ndarray
    key: list[np.ndarray]
    evidence: dict[str, np.ndarray]
    severity: np.ndarray | None = None  # per-row override of the rule's severity
    next_change: np.ndarray | None = None  # earliest date the outcome could change by the clock alone


RuleFn = Callable[[Frame, dict[str, Any], np.datetime64, "Context"], RuleOutput]
_RULES: dict[str, tuple[RuleFn, dict[str, type | tuple[type, ...]]]] = {}


def rule(rule_id: str, **param_types: type | tuple[type, ...]):
    def register(fn: RuleFn) -> RuleFn:
        _RULES[rule_id] = (fn, param_types)
        return fn

    return register


def implemented_rules() -> dict[str, dict[str, Any]]:
    return {rule_id: params for rule_id, (_fn, params) in _RULES.items()}


@dataclass
class Context:
    """Derived arrays shared by several rules (computed once per evaluation)."""

    sins_max: np.ndarray
    tokuhashi_max: np.ndarray
    katagiri_min: np.ndarray
    katagiri_max: np.ndarray
    tier: np.ndarray
    due: np.ndarray
    outputs: dict[str, RuleOutput] = field(default_factory=dict)
    texts: dict[str, np.ndarray] = field(default_factory=dict)  # evidence text shared by several rules
    codes: dict[str, tuple[dict[Any, int], np.ndarray]] = field(default_factory=dict)  # factorized str fields

    def equals(self, f: Frame, str_field: str, value: str) -> np.ndarray:
        """``f.<str_field> == value`` per row; the column is factorized once per evaluation.

        ``value=None`` matches the unknown (``None``) rows, as an element-wise ``== None`` does.
        """
        if str_field not in self.codes:
            distinct, codes = _factorize(f.cols[str_field])
            self.codes[str_field] = ({v: i for i, v in enumerate(distinct)}, codes)
        index, codes = self.codes[str_field]
        code = index.get(value)
        return codes == code if code is not None else np.zeros(len(codes), dtype=bool)

    def totals_text(self, f: Frame, mask_field: str) -> np.ndarray:
        """The possible totals of a mask field as text, built once per evaluation (read-only)."""
        if mask_field not in self.texts:
            text = _totals_text(f.cols[mask_field])
            text.flags.writeable = False
            self.texts[mask_field] = text
        return self.texts[mask_field]


# --- Red flags ---------------------------------------------------------------


@rule("mscc-suspected", lookback_days=int, escalate_after_hours=int)
def _mscc(f: Frame, p, today, ctx):
    frankel, previous = _rank(f.frankel_grade, FRANKEL_RANK), _rank(f.previous_frankel_grade, FRANKEL_RANK)
    worsened = (frankel >= 0) & (previous >= 0) & (frankel < previous)
    worsened_on = np.where(worsened, f.neuro_on, NaT)
    event_on = np.fmax(np.fmax(f.new_deficit_on, f.cord_compression_pain_on), worsened_on)
    recent = _days_since(today, event_on) <= p["lookback_days"]
    no_mri_since = np.isnat(f.last_imaging_on) | (f.last_imaging_on < event_on)
    fired = f.active & recent & no_mri_since
    trigger = _pick(
        np.select([event_on == f.new_deficit_on, event_on == f.cord_compression_pain_on], [0, 1], default=2),
        ["new neurological deficit", "pain suggestive of cord compression", "Frankel grade worsened"],
    )
    return RuleOutput(
        fired,
        [_key(event_on, fired)],
        {
            "trigger": trigger,
            "recorded_on": event_on,
            "frankel_grade": f.frankel_grade,
            "previous_frankel_grade": f.previous_frankel_grade,
            "last_imaging_on": f.last_imaging_on,
        },
        next_change=event_on + (p["lookback_days"] + 1) * DAY,
    )


@rule("spinal-pain-no-neuro", lookback_days=int, action_within_days=int)
def _spinal_pain(f: Frame, p, today, ctx):
    on = f.new_spinal_pain_on
    recent = _days_since(today, on) <= p["lookback_days"]
    no_mri_since = np.isnat(f.last_imaging_on) | (f.last_imaging_on < on)
    fired = f.active & recent & no_mri_since & ~ctx.outputs["mscc-suspected"].fired
    return RuleOutput(
        fired,
        [_key(on, fired)],
        {
            "recorded_on": on,
            "last_imaging_on": f.last_imaging_on,
            "mri_within_days": np.full(f.n, p["action_within_days"]),
        },
        next_change=on + (p["lookback_days"] + 1) * DAY,
    )


@rule("escc-high-grade", min_grade=str)
def _escc(f: Frame, p, today, ctx):
    fired = f.active & (f.bilsky_worst_rank >= BILSKY_RANK[p["min_grade"]])
    grades = sorted(BILSKY_RANK, key=BILSKY_RANK.__getitem__)  # rank r -> grade, ranks 0..5
    rank = f.bilsky_worst_rank
    grade = _pick(np.where((rank >= 0) & (rank < len(grades)), rank, len(grades)), [*grades, ""])
    return RuleOutput(
        fired, [_key(f.bilsky_worst_level, fired), grade], {"level": f.bilsky_worst_level, "bilsky_escc": grade}
    )


def _sins_evidence(f: Frame, ctx: Context) -> dict[str, np.ndarray]:
    return {"level": f.sins_worst_level, "worst_sins_possible_totals": ctx.totals_text(f, "sins_worst_mask")}


@rule("sins-unstable", min_sins=int)
def _sins_unstable(f: Frame, p, today, ctx):
    fired = f.active & (ctx.sins_max >= p["min_sins"])
    return RuleOutput(fired, [_key(f.sins_worst_level, fired)], _sins_evidence(f, ctx))


@rule("sins-potentially-unstable", min_sins=int, max_sins=int)
def _sins_potential(f: Frame, p, today, ctx):
    in_band = mask_any_between(f.sins_worst_mask, p["min_sins"], p["max_sins"])
    # The unstable alert supersedes this one for the same lesion.
    fired = f.active & in_band & ~ctx.outputs["sins-unstable"].fired
    return RuleOutput(fired, [_key(f.sins_worst_level, fired)], _sins_evidence(f, ctx))


@rule("sins-kakutani-10", min_sins=int, min_tokuhashi=int, max_katagiri=int)
def _kakutani(f: Frame, p, today, ctx):
    # Expected survival >= 6 months unless both prognoses exclude it; unknown scores do not exclude it.
    tokuhashi_ok = (f.tokuhashi_mask == 0) | (ctx.tokuhashi_max >= p["min_tokuhashi"])
    katagiri_ok = (f.katagiri_mask == 0) | ((ctx.katagiri_min >= 0) & (ctx.katagiri_min <= p["max_katagiri"]))
    fired = f.active & (ctx.sins_max >= p["min_sins"]) & (tokuhashi_ok | katagiri_ok)
    evidence = _sins_evidence(f, ctx)
    evidence["tokuhashi_possible_totals"] = ctx.totals_text(f, "tokuhashi_mask")
    evidence["katagiri_possible_totals"] = ctx.totals_text(f, "katagiri_mask")
    return RuleOutput(fired, [_key(f.sins_worst_level, fired)], evidence)


@rule("sins-10-on-denosumab", min_sins=int, on_drug_within_days=int)
def _sins_denosumab(f: Frame, p, today, ctx):
    on_drug = _days_since(today, f.denosumab_last_on) <= p["on_drug_within_days"]
    fired = f.active & (ctx.sins_max >= p["min_sins"]) & on_drug
    evidence = _sins_evidence(f, ctx)
    evidence["denosumab_last_on"] = f.denosumab_last_on
    return RuleOutput(
        fired,
        [_key(f.sins_worst_level, fired)],
        evidence,
        next_change=f.denosumab_last_on + (p["on_drug_within_days"] + 1) * DAY,
    )


# --- Imaging -------------------------------------------------------------------


@rule("imaging-due-soon", days_before_due=int)
def _imaging_soon(f: Frame, p, today, ctx):
    start = ctx.due - p["days_before_due"] * DAY
    fired = f.active & ~np.isnat(ctx.due) & (start <= today) & (today < ctx.due)
    return RuleOutput(
        fired,
        [_key(ctx.due, fired)],
        {"tier": ctx.tier, "last_imaging_on": f.last_imaging_on, "due_on": ctx.due},
        next_change=_earliest_future(today, start, ctx.due),
    )


@rule("imaging-overdue", escalate_after_days=int, escalated_severity=str)
def _imaging_overdue(f: Frame, p, today, ctx):
    fired = f.active & ~np.isnat(ctx.due) & (ctx.due <= today)
    overdue = _days_since(today, ctx.due)
    severity = _objects(f.n, None)
    severity[overdue >= p["escalate_after_days"]] = p["escalated_severity"] or None
    no_imaging = _pick(np.isnat(f.last_imaging_on).view(np.int8), ["", "no qualifying spine imaging recorded"])
    return RuleOutput(
        fired,
        [_key(ctx.due, fired)],
        {
            "tier": ctx.tier,
            "last_imaging_on": f.last_imaging_on,
            "due_on": ctx.due,
            "days_overdue": overdue,
            "note": no_imaging,
        },
        severity=severity,
        next_change=_earliest_future(today, ctx.due, ctx.due + p["escalate_after_days"] * DAY),
    )


@rule("post-sbrt-fracture-window", window_months=int, high_if_sins_min=int)
def _post_sbrt(f: Frame, p, today, ctx):
    window_end = f.last_spine_sbrt_on + int(round(p["window_months"] * 30.44)) * DAY
    in_window = ~np.isnat(f.last_spine_sbrt_on) & (today <= window_end)
    pain_after = ~np.isnat(f.mechanical_pain_on) & (f.mechanical_pain_on >= f.last_spine_sbrt_on)
    fired = f.active & in_window & pain_after
    severity = _objects(f.n, None)
    severity[ctx.sins_max >= p["high_if_sins_min"]] = "high"
    return RuleOutput(
        fired,
        [_key(f.last_spine_sbrt_on, fired)],
        {"sbrt_on": f.last_spine_sbrt_on, "mechanical_pain_on": f.mechanical_pain_on, "window_ends_on": window_end},
        severity=severity,
        next_change=window_end + DAY,
    )


# --- Bone-modifying agents ------------------------------------------------------


def _has_bone_metastasis(f: Frame) -> np.ndarray:
    return (f.lesion_count > 0) | (np.nan_to_num(f.extraspinal_bone_metastases, nan=0) > 0)


@rule("bma-indicated-none")
def _bma_none(f: Frame, p, today, ctx):
    # [CONV] expected survival >= 3 months unless Katagiri is certainly high AND Tokuhashi certainly 0-8.
    poor = (ctx.katagiri_min >= 7) & (f.tokuhashi_mask != 0) & (ctx.tokuhashi_max <= 8)
    fired = f.active & _has_bone_metastasis(f) & np.isnat(f.bma_first_on) & ~f.bma_not_indicated & ~poor
    return RuleOutput(
        fired,
        [_objects(f.n, "none")],
        {"lesion_count": f.lesion_count, "extraspinal_bone_metastases": f.extraspinal_bone_metastases},
    )


def _bma_interval(f: Frame, ctx: Context, den: int, za_q4w: int, za_q12w: int) -> np.ndarray:
    q12 = ctx.equals(f, "zoledronic_regimen", "q12w")
    return np.where(ctx.equals(f, "bma_agent", "zoledronic_acid"), np.where(q12, za_q12w, za_q4w), den).astype(float)


@rule(
    "bma-dose-overdue",
    denosumab_overdue_days=int,
    zoledronic_q4w_overdue_days=int,
    zoledronic_q12w_overdue_days=int,
    escalate_after_days=int,
    escalated_severity=str,
    stopped_after_days=int,
    stopped_after_days_q12w=int,
)
def _bma_overdue(f: Frame, p, today, ctx):
    threshold = _bma_interval(
        f, ctx, p["denosumab_overdue_days"], p["zoledronic_q4w_overdue_days"], p["zoledronic_q12w_overdue_days"]
    )
    since = _days_since(today, f.bma_last_on)
    # Past the stop threshold the agent counts as stopped: the stop and indication rules take over.
    on_zoledronic = ctx.equals(f, "bma_agent", "zoledronic_acid")
    q12w_zoledronic = on_zoledronic & ctx.equals(f, "zoledronic_regimen", "q12w")
    stopped = np.where(q12w_zoledronic, p["stopped_after_days_q12w"], p["stopped_after_days"])
    fired = f.active & ~np.isnat(f.bma_last_on) & (since > threshold) & (since <= stopped) & ~f.bma_not_indicated
    severity = _objects(f.n, None)
    severity[since > threshold + p["escalate_after_days"]] = p["escalated_severity"]
    regimen = _objects(f.n, "q4w")
    regimen[on_zoledronic] = f.zoledronic_regimen[on_zoledronic]
    regimen[on_zoledronic & ctx.equals(f, "zoledronic_regimen", None)] = "q4w assumed (regimen not recorded)"
    limit = f.bma_last_on + threshold.astype("timedelta64[D]")
    return RuleOutput(
        fired,
        [_key(f.bma_last_on, fired)],
        {"agent": f.bma_agent, "last_dose_on": f.bma_last_on, "days_since_last_dose": since, "regimen": regimen},
        severity=severity,
        next_change=_earliest_future(
            today,
            limit + DAY,
            limit + (p["escalate_after_days"] + 1) * DAY,
            f.bma_last_on + (stopped + 1).astype("timedelta64[D]"),
        ),
    )


@rule(
    "bma-predose-lab-missing",
    lab_within_days=int,
    due_window_days=int,
    denosumab_interval_days=int,
    zoledronic_q4w_interval_days=int,
    zoledronic_q12w_interval_days=int,
    watch_until_days_after_due=int,
)
def _predose_lab(f: Frame, p, today, ctx):
    interval = _bma_interval(
        f, ctx, p["denosumab_interval_days"], p["zoledronic_q4w_interval_days"], p["zoledronic_q12w_interval_days"]
    )
    next_dose = f.bma_last_on + interval.astype("timedelta64[D]")
    window_start = next_dose - p["due_window_days"] * DAY
    window_end = next_dose + p["watch_until_days_after_due"] * DAY  # later than that the dose is overdue or stopped
    is_za = ctx.equals(f, "bma_agent", "zoledronic_acid")
    is_den = ctx.equals(f, "bma_agent", "denosumab")
    lab_on = np.where(is_za, f.creatinine_on, np.where(is_den, f.calcium_on, NaT))
    lab_recent = _days_since(today, lab_on) <= p["lab_within_days"]
    in_window = (window_start <= today) & (today <= window_end)
    fired = f.active & (is_za | is_den) & ~np.isnat(f.bma_last_on) & in_window & ~lab_recent & ~f.bma_not_indicated
    needed = _pick(is_za.astype(np.intp), ["calcium", "creatinine"])
    return RuleOutput(
        fired,
        [_key(next_dose, fired)],
        {"agent": f.bma_agent, "next_dose_on": next_dose, "test_needed": needed, "last_test_on": lab_on},
        next_change=_earliest_future(today, window_start, window_end + DAY, lab_on + (p["lab_within_days"] + 1) * DAY),
    )


@rule("bma-renal-hold", normal_baseline_max_mg_dl=float, rise_from_normal_mg_dl=float, rise_from_abnormal_mg_dl=float)
def _renal_hold(f: Frame, p, today, ctx):
    baseline = f.creatinine_baseline_mg_dl
    allowed = np.where(
        baseline <= p["normal_baseline_max_mg_dl"], p["rise_from_normal_mg_dl"], p["rise_from_abnormal_mg_dl"]
    )
    # Rounded so a rise of exactly the threshold (1.4 - 0.9) is not lost to binary floating point.
    rise = np.round(f.creatinine_mg_dl - baseline, 6)
    on_za = ctx.equals(f, "bma_agent", "zoledronic_acid") & ~np.isnat(f.zoledronic_first_on)
    fired = f.active & on_za & ~np.isnan(rise) & (rise >= allowed) & (f.creatinine_on >= f.zoledronic_first_on)
    return RuleOutput(
        fired,
        [_key(f.creatinine_on, fired)],
        {
            "creatinine_mg_dl": f.creatinine_mg_dl,
            "baseline_mg_dl": baseline,
            "rise_mg_dl": rise,
            "allowed_rise_mg_dl": allowed,
        },
    )


@rule("bma-hypocalcaemia", corrected_calcium_below_mg_dl=float, on_drug_within_days=int)
def _hypocalcaemia(f: Frame, p, today, ctx):
    albumin = f.albumin_g_dl
    corrected = np.round(np.where(np.isnan(albumin), f.calcium_mg_dl, f.calcium_mg_dl + 0.8 * (4.0 - albumin)), 6)
    on_drug = _days_since(today, f.denosumab_last_on) <= p["on_drug_within_days"]
    fired = f.active & on_drug & ~np.isnan(corrected) & (corrected < p["corrected_calcium_below_mg_dl"])
    method = _pick(np.isnan(albumin).astype(np.intp), ["albumin-corrected (Payne)", "measured (no albumin)"])
    return RuleOutput(
        fired,
        [_key(f.calcium_on, fired)],
        {
            "calcium_mg_dl": f.calcium_mg_dl,
            "corrected_calcium_mg_dl": corrected,
            "method": method,
            "calcium_on": f.calcium_on,
        },
        next_change=f.denosumab_last_on + (p["on_drug_within_days"] + 1) * DAY,
    )


@rule("bma-dental-missing", review_every_days=int, on_drug_within_days=int)
def _dental(f: Frame, p, today, ctx):
    on_drug = _days_since(today, f.bma_last_on) <= p["on_drug_within_days"]
    none_before = f.dental_before_first_bma == 0
    stale = np.isnat(f.dental_last_on) | (_days_since(today, f.dental_last_on) > p["review_every_days"])
    fired = f.active & on_drug & (none_before | stale)
    never = np.isnat(f.dental_last_on)
    reason = _pick(
        np.select([never, none_before, stale], [0, 1, 2], default=3),
        [
            "no dental examination recorded",
            "no dental examination before the first dose",
            "dental review older than the interval",
            "",
        ],
    )
    key = _key(f.dental_last_on, fired)  # the first that applies: none, before-first-dose, the last exam's date
    key[none_before] = "before-first-dose"
    key[never] = "none"
    return RuleOutput(
        fired,
        [key],
        {"reason": reason, "dental_last_on": f.dental_last_on, "bma_first_on": f.bma_first_on},
        next_change=_earliest_future(
            today,
            f.dental_last_on + (p["review_every_days"] + 1) * DAY,
            f.bma_last_on + (p["on_drug_within_days"] + 1) * DAY,
        ),
    )


@rule("bma-stopped-denosumab", stopped_after_days=int)
def _denosumab_stopped(f: Frame, p, today, ctx):
    since = _days_since(today, f.denosumab_last_on)
    still_latest = ctx.equals(f, "bma_agent", "denosumab")  # not switched to another agent since
    fired = f.active & (since > p["stopped_after_days"]) & still_latest & ~f.denosumab_transition_plan
    return RuleOutput(
        fired,
        [_key(f.denosumab_last_on, fired)],
        {"denosumab_last_on": f.denosumab_last_on, "days_since_last_dose": since},
        next_change=f.denosumab_last_on + (p["stopped_after_days"] + 1) * DAY,
    )


# --- Performance status and Cancer Locomo ------------------------------------------


@rule("ecog-decline", min_worsening=int, crossing_from_max=int, crossing_to_min=int, lookback_days=int)
def _ecog(f: Frame, p, today, ctx):
    known = ~np.isnan(f.ecog) & ~np.isnan(f.previous_ecog)
    worse = (f.ecog - f.previous_ecog) >= p["min_worsening"]
    crossed = (f.previous_ecog <= p["crossing_from_max"]) & (f.ecog >= p["crossing_to_min"])
    recent = _days_since(today, f.ecog_on) <= p["lookback_days"]
    fired = f.active & known & (worse | crossed) & recent
    return RuleOutput(
        fired,
        [_key(f.ecog_on, fired)],
        {"ecog": f.ecog, "previous_ecog": f.previous_ecog, "recorded_on": f.ecog_on},
        next_change=f.ecog_on + (p["lookback_days"] + 1) * DAY,
    )


@rule("ambulation-lost", lookback_days=int)
def _ambulation(f: Frame, p, today, ctx):
    now, before = _rank(f.ambulatory_status, AMBULATION_RANK), _rank(f.previous_ambulatory_status, AMBULATION_RANK)
    # Falls to needing another person or not walking at all, from anything better.
    lost = (now >= 2) & (before >= 0) & (now > before)
    recent = _days_since(today, f.neuro_on) <= p["lookback_days"]
    fired = f.active & lost & recent
    return RuleOutput(
        fired,
        [_key(f.neuro_on, fired)],
        {"ambulatory_status": f.ambulatory_status, "previous": f.previous_ambulatory_status, "recorded_on": f.neuro_on},
        next_change=f.neuro_on + (p["lookback_days"] + 1) * DAY,
    )


@rule("locomo-type2-untreated")
def _type2(f: Frame, p, today, ctx):
    fired = f.active & f.locomo_type2_without_plan
    return RuleOutput(fired, [_objects(f.n, "type2")], {"locomo_types": f.locomo_types})


@rule("locomo-type3-overlooked", review_every_days=int)
def _type3(f: Frame, p, today, ctx):
    has_type3 = (f.locomo_types & 4) != 0
    unreviewed = np.isnat(f.locomo_type3_last_review_on) | (
        _days_since(today, f.locomo_type3_last_review_on) > p["review_every_days"]
    )
    fired = f.active & has_type3 & f.on_cancer_therapy & unreviewed
    return RuleOutput(
        fired,
        [_key(f.locomo_type3_last_review_on, fired)],
        {"last_orthopaedic_review_on": f.locomo_type3_last_review_on},
        next_change=f.locomo_type3_last_review_on + (p["review_every_days"] + 1) * DAY,
    )


# --- Board ------------------------------------------------------------------------


@rule(
    "board-candidate",
    min_sins=int,
    min_bilsky=str,
    new_sre_days=int,
    ecog_decline=bool,
    unknown_primary=bool,
    tes_positive=bool,
)
def _board(f: Frame, p, today, ctx):
    reasons: list[tuple[np.ndarray, str, np.ndarray]] = [
        (ctx.sins_max >= p["min_sins"], f"SINS ≥ {p['min_sins']} possible", f.lesions_assessed_on),
        (f.bilsky_worst_rank >= BILSKY_RANK[p["min_bilsky"]], f"Bilsky ≥ {p['min_bilsky']}", f.lesions_assessed_on),
        (_days_since(today, f.last_sre_on) <= p["new_sre_days"], "new skeletal-related event", f.last_sre_on),
    ]
    if p["ecog_decline"]:
        reasons.append((ctx.outputs["ecog-decline"].fired, "ECOG decline", f.ecog_on))
    if p["unknown_primary"]:
        reasons.append(
            (
                ctx.equals(f, "primary_site", "unknown_primary") & _has_bone_metastasis(f),
                "unknown primary with bone metastasis",
                f.registered_on,
            )
        )
    if p["tes_positive"]:
        reasons.append((_isin(f.tes_screen, TES_POSITIVE), "TES screen positive", f.lesions_assessed_on))
    latest = np.full(f.n, NaT)
    which = np.zeros(f.n, dtype=np.intp)  # bit i set: reason i applies
    for bit, (mask, _label, on) in enumerate(reasons):
        which |= mask.astype(np.intp) << bit
        latest = np.where(mask & (np.isnat(latest) | (on > latest)), on, latest)
    any_reason = which != 0
    # The text of every combination of reasons (at most 2**6), in the order above, then one lookup per row.
    labels = [label for _mask, label, _on in reasons]
    text = _pick(
        which,
        ["; ".join(label for i, label in enumerate(labels) if combo >> i & 1) for combo in range(1 << len(labels))],
    )
    undecided = np.isnat(f.board_decided_on) | np.isnat(latest) | (f.board_decided_on < latest)
    fired = f.active & any_reason & undecided
    return RuleOutput(
        fired,
        [text, _key(latest, fired)],
        {"reasons": text, "since": latest, "board_decided_on": f.board_decided_on},
        next_change=_earliest_future(today, f.last_sre_on + (p["new_sre_days"] + 1) * DAY),
    )


@rule("tes-candidate")
def _tes(f: Frame, p, today, ctx):
    fired = f.active & _isin(f.tes_screen, TES_POSITIVE)
    return RuleOutput(fired, [_key(f.tes_screen, fired)], {"tes_screen": f.tes_screen})


@rule("separation-margin-lt3mm", margin_below_mm=float)
def _separation(f: Frame, p, today, ctx):
    fired = f.active & ~np.isnan(f.separation_margin_mm) & (f.separation_margin_mm < p["margin_below_mm"])
    return RuleOutput(
        fired,
        [_key(f.separation_surgery_on, fired)],
        {"surgery_on": f.separation_surgery_on, "margin_mm": f.separation_margin_mm},
    )


@rule("prognosis-poor", min_katagiri=int)
def _prognosis(f: Frame, p, today, ctx):
    fired = f.active & (ctx.katagiri_min >= p["min_katagiri"])
    possible = ctx.totals_text(f, "katagiri_mask")
    return RuleOutput(fired, [_objects(f.n, "katagiri-high")], {"katagiri_possible_totals": possible})


# Rules that read other rules' outputs run after them.
RULE_ORDER = [
    "mscc-suspected",
    "spinal-pain-no-neuro",
    "escc-high-grade",
    "sins-unstable",
    "sins-potentially-unstable",
    "sins-kakutani-10",
    "sins-10-on-denosumab",
    "imaging-due-soon",
    "imaging-overdue",
    "post-sbrt-fracture-window",
    "bma-indicated-none",
    "bma-dose-overdue",
    "bma-predose-lab-missing",
    "bma-renal-hold",
    "bma-hypocalcaemia",
    "bma-dental-missing",
    "bma-stopped-denosumab",
    "ecog-decline",
    "ambulation-lost",
    "locomo-type2-untreated",
    "locomo-type3-overlooked",
    "board-candidate",
    "tes-candidate",
    "separation-margin-lt3mm",
    "prognosis-poor",
]
# alert_summary() records a row's alerts as one base-5 digit per rule in one int64.
if len(RULE_ORDER) > 27:
    raise RuntimeError("more than 27 rules: widen alert_summary()'s key")


# ---------------------------------------------------------------------------
# Tier and imaging clock
# ---------------------------------------------------------------------------


MONTH_DAYS = 30.44


def _months_later(on: np.ndarray, months: int) -> np.ndarray:
    return on + int(months * MONTH_DAYS) * DAY  # whole days: "within 6 months" is day 182 inclusive


def compute_tiers(
    f: Frame, ruleset: RuleSet, today: np.datetime64, sins_max: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Risk tier, next spine-imaging due date, and the next day the tier can change by the clock alone."""
    t = ruleset.tiers
    has_lesion = f.lesion_count > 0
    sbrt_window_end = _months_later(f.last_spine_sbrt_on, t.post_sbrt_high_months)
    after_sbrt = ~np.isnat(f.last_spine_sbrt_on) & (today <= sbrt_window_end)
    any_sbrt = ~np.isnat(f.last_spine_sbrt_on)
    high_risk_lesion = (sins_max >= t.intermediate_sins_min) | (f.bilsky_worst_rank >= BILSKY_RANK["1b"])
    high = has_lesion & (
        (sins_max >= t.high_sins_min)
        | (f.bilsky_worst_rank >= BILSKY_RANK[t.high_bilsky_min])
        | (after_sbrt & high_risk_lesion)
    )
    new_lesion_end = _months_later(f.last_new_lesion_on, t.new_lesion_months)
    new_lesion = ~np.isnat(f.last_new_lesion_on) & (today <= new_lesion_end)
    # "Or after SBRT" has no time limit in the rules (only the high tier's 13 months has); an active
    # lesion whose ESCC grade was never recorded is not assumed low grade.
    intermediate = (
        has_lesion & ~high & ((sins_max >= t.intermediate_sins_min) | new_lesion | any_sbrt | f.bilsky_unknown)
    )
    low = has_lesion & ~high & ~intermediate
    screening = ~has_lesion & _isin(f.primary_site, t.screening_sites)
    tiers = ["inactive", "high", "intermediate", "low", "screening", "none"]
    tier_code = np.select([~f.active, high, intermediate, low, screening], [0, 1, 2, 3, 4], default=5)
    tier = _pick(tier_code, tiers)
    interval = np.select(
        [high, intermediate, low, screening],
        [t.high_interval_days, t.intermediate_interval_days, t.low_interval_days, t.screening_interval_days],
        default=0,
    ).astype("timedelta64[D]")
    # No qualifying imaging yet: due since the patient entered surveillance.
    base = np.where(np.isnat(f.last_imaging_on), f.registered_on, f.last_imaging_on + interval)
    due = np.where(f.active & (tier_code != tiers.index("none")), base, NaT).astype("datetime64[D]")
    changes = _earliest_future(today, sbrt_window_end + DAY, new_lesion_end + DAY)
    return tier, due, np.where(f.active, changes, NaT).astype("datetime64[D]")


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertDecision:
    patient_id: int
    rule_id: str
    rule_version: str
    severity: str
    title: str
    action: str
    who: str
    source: str
    verify: bool
    evidence_key: str
    evidence: dict[str, Any]


def _plain(value: Any) -> Any:
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(value.astype("datetime64[D]"))
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else round(float(value), 3)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    return value


@dataclass
class Evaluation:
    frame: Frame
    ruleset: RuleSet
    today: np.datetime64
    tier: np.ndarray
    next_imaging_due: np.ndarray
    days_overdue: np.ndarray
    outputs: dict[str, RuleOutput]
    severity: dict[str, np.ndarray]  # rule id -> effective severity per row (object)
    priority: np.ndarray
    recheck_on: np.ndarray
    open_count: np.ndarray
    critical_count: np.ndarray
    reasons: np.ndarray

    def fired_rows(self, rule_id: str) -> np.ndarray:
        return np.flatnonzero(self.outputs[rule_id].fired)

    def decision(self, rule_id: str, row: int) -> AlertDecision:
        r: Rule = self.ruleset.rule(rule_id)
        out = self.outputs[rule_id]
        key = "|".join(str(part[row]) for part in out.key)
        evidence = {name: _plain(values[row]) for name, values in out.evidence.items()}
        evidence = {k: v for k, v in evidence.items() if v not in (None, "")}
        return AlertDecision(
            patient_id=int(self.frame.patient_id[row]),
            rule_id=r.id,
            rule_version=r.version,
            severity=str(self.severity[rule_id][row]),
            title=r.title,
            action=r.action,
            who=r.who,
            source=r.source + (" (verify)" if r.verify else ""),
            verify=r.verify,
            evidence_key=key[:128],
            evidence=evidence,
        )

    def decisions(self, row: int) -> list[AlertDecision]:
        return [self.decision(rule_id, row) for rule_id in RULE_ORDER if self.outputs[rule_id].fired[row]]


@dataclass
class AlertSummary:
    """Per row: the priority (sum of severity weights), counts and reasons of a set of alerts."""

    priority: np.ndarray
    count: np.ndarray
    critical: np.ndarray
    reasons: np.ndarray  # titles, most severe first, then by title, joined by "; " ("" for none)


def alert_summary(
    rows_by_rule: dict[str, np.ndarray], severity: dict[str, np.ndarray], ruleset: RuleSet, n: int
) -> AlertSummary:
    """Summarise the alerts at ``rows_by_rule[rule_id]`` (their severities in ``severity``) for ``n`` rows.

    One definition for the rule engine (every firing) and the pipeline (the
    alerts left open, which make the caseload's priority and "why").  A row's
    alerts become one base-5 number (a digit per rule: 0 none, 1 + severity
    order), so the reasons text is built once per distinct combination.
    """
    weights = ruleset.severity_weights
    by_order = sorted(SEVERITY_ORDER, key=SEVERITY_ORDER.__getitem__)
    weight_of = np.array([weights.get(name, 0) for name in by_order], dtype=np.int64)
    priority = np.zeros(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    critical = np.zeros(n, dtype=np.int64)
    key = np.zeros(n, dtype=np.int64)
    for rule_id in RULE_ORDER:
        digit = np.zeros(n, dtype=np.int64)
        rows = rows_by_rule.get(rule_id)
        if rows is not None and len(rows):
            order = _rank(severity[rule_id][rows], SEVERITY_ORDER)
            digit[rows] = order + 1
            priority[rows] += weight_of[order]
            count[rows] += 1
            critical[rows] += order == SEVERITY_ORDER["critical"]
        key = key * 5 + digit
    titles = [ruleset.rule(rule_id).title for rule_id in RULE_ORDER]
    combos, codes = np.unique(key, return_inverse=True)
    texts = []
    for combo in combos.tolist():
        found = []
        for title in reversed(titles):
            combo, digit = divmod(combo, 5)
            if digit:
                found.append((digit, title))
        texts.append("; ".join(title for _digit, title in sorted(found)))
    return AlertSummary(priority, count, critical, _pick(codes.reshape(key.shape), texts))


def evaluate(frame: Frame, ruleset: RuleSet, today: date | np.datetime64) -> Evaluation:
    """Apply every rule to every row of ``frame`` as of ``today``."""
    today = np.datetime64(today, "D")
    sins_max = mask_max(frame.sins_worst_mask)
    tier, due, tier_change = compute_tiers(frame, ruleset, today, sins_max)
    ctx = Context(
        sins_max=sins_max,
        tokuhashi_max=mask_max(frame.tokuhashi_mask),
        katagiri_min=mask_min(frame.katagiri_mask),
        katagiri_max=mask_max(frame.katagiri_mask),
        tier=tier,
        due=due,
    )
    severity: dict[str, np.ndarray] = {}
    next_changes = [tier_change]
    for rule_id in RULE_ORDER:
        fn, _ = _RULES[rule_id]
        r = ruleset.rule(rule_id)
        out = fn(frame, r.params, today, ctx)
        ctx.outputs[rule_id] = out
        sev = _objects(frame.n, r.severity)
        if out.severity is not None:
            override = out.severity != None  # noqa: E711 - element-wise on the object array
            sev[override] = out.severity[override]
        severity[rule_id] = sev
        if out.next_change is not None:
            next_changes.append(out.next_change)
    recheck = _earliest_future(today, *next_changes)
    fired = alert_summary(
        {rule_id: np.flatnonzero(out.fired) for rule_id, out in ctx.outputs.items()}, severity, ruleset, frame.n
    )
    overdue = _days_since(today, due)
    return Evaluation(
        frame=frame,
        ruleset=ruleset,
        today=today,
        tier=tier,
        next_imaging_due=due,
        days_overdue=np.where(overdue >= 0, overdue, np.nan),
        outputs=ctx.outputs,
        severity=severity,
        priority=fired.priority,
        recheck_on=np.where(frame.active, recheck, NaT).astype("datetime64[D]"),
        open_count=fired.count,
        critical_count=fired.critical,
        reasons=fired.reasons,
    )


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> RuleSet:
    return parse_rules(Path(path).read_text(encoding="utf-8"), known_rules=implemented_rules())


def load_rules(path: str | Path | None = None) -> RuleSet:
    """The validated rule set (default: the shipped ``default_rules.toml``)."""
    path = Path(path) if path else DEFAULT_RULES_PATH
    return _load_cached(str(path), path.stat().st_mtime)
