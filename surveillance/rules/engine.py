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
    return np.full(n, None, dtype=object)


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


def mask_max(mask: np.ndarray) -> np.ndarray:
    """Largest possible total per row; -1 where nothing is possible (mask 0)."""
    out = np.full(mask.shape, -1, dtype=np.int64)
    for bit in range(_BITS):
        out = np.where((mask >> bit) & 1 == 1, bit, out)
    return out


def mask_min(mask: np.ndarray) -> np.ndarray:
    """Smallest possible total per row; -1 where nothing is possible."""
    out = np.full(mask.shape, -1, dtype=np.int64)
    for bit in reversed(range(_BITS)):
        out = np.where((mask >> bit) & 1 == 1, bit, out)
    return out


def mask_any_between(mask: np.ndarray, low: int, high: int) -> np.ndarray:
    window = sum(1 << t for t in range(low, high + 1))
    return (mask & window) != 0


def totals_of(mask: int) -> list[int]:
    return [t for t in range(_BITS) if mask >> t & 1]


def _days_since(today: np.datetime64, on: np.ndarray) -> np.ndarray:
    """Days from ``on`` to ``today`` as float (NaN where unknown)."""
    delta = (today - on).astype("timedelta64[D]").astype(float)
    delta[np.isnat(on)] = np.nan
    return delta


def _earliest_future(today: np.datetime64, *candidates: np.ndarray) -> np.ndarray:
    """Per row, the earliest candidate date after ``today`` (NaT if none)."""
    best = None
    for c in candidates:
        c = np.where(c > today, c, NaT)
        best = c if best is None else np.where(np.isnat(best) | (~np.isnat(c) & (c < best)), c, best)
    return best if best is not None else NaT


def _rank(values: np.ndarray, table: dict[str, int]) -> np.ndarray:
    return np.array([table.get(v, -1) if v is not None else -1 for v in values], dtype=np.int64)


def _str(values: np.ndarray) -> np.ndarray:
    """Values as plain strings for keys and evidence; unknown (None, NaN, NaT) as ""."""
    if values.dtype.kind == "M":
        text = values.astype(str).astype(object)
        text[np.isnat(values)] = ""
        return text
    return np.array(
        ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values], dtype=object
    )


# ---------------------------------------------------------------------------
# Rule registry
# ---------------------------------------------------------------------------


@dataclass
class RuleOutput:
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
    trigger = np.where(
        event_on == f.new_deficit_on,
        "new neurological deficit",
        np.where(
            event_on == f.cord_compression_pain_on, "pain suggestive of cord compression", "Frankel grade worsened"
        ),
    )
    return RuleOutput(
        fired,
        [_str(event_on)],
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
        [_str(on)],
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
    grade = np.array(
        [{v: k for k, v in BILSKY_RANK.items()}.get(int(r), "") for r in f.bilsky_worst_rank], dtype=object
    )
    return RuleOutput(fired, [_str(f.bilsky_worst_level), grade], {"level": f.bilsky_worst_level, "bilsky_escc": grade})


def _sins_evidence(f: Frame) -> dict[str, np.ndarray]:
    possible = np.array([", ".join(map(str, totals_of(int(m)))) for m in f.sins_worst_mask], dtype=object)
    return {"level": f.sins_worst_level, "worst_sins_possible_totals": possible}


@rule("sins-unstable", min_sins=int)
def _sins_unstable(f: Frame, p, today, ctx):
    fired = f.active & (ctx.sins_max >= p["min_sins"])
    return RuleOutput(fired, [_str(f.sins_worst_level)], _sins_evidence(f))


@rule("sins-potentially-unstable", min_sins=int, max_sins=int)
def _sins_potential(f: Frame, p, today, ctx):
    in_band = mask_any_between(f.sins_worst_mask, p["min_sins"], p["max_sins"])
    # The unstable alert supersedes this one for the same lesion.
    fired = f.active & in_band & ~ctx.outputs["sins-unstable"].fired
    return RuleOutput(fired, [_str(f.sins_worst_level)], _sins_evidence(f))


@rule("sins-kakutani-10", min_sins=int, min_tokuhashi=int, max_katagiri=int)
def _kakutani(f: Frame, p, today, ctx):
    # Expected survival >= 6 months unless both prognoses exclude it; unknown scores do not exclude it.
    tokuhashi_ok = (f.tokuhashi_mask == 0) | (ctx.tokuhashi_max >= p["min_tokuhashi"])
    katagiri_ok = (f.katagiri_mask == 0) | ((ctx.katagiri_min >= 0) & (ctx.katagiri_min <= p["max_katagiri"]))
    fired = f.active & (ctx.sins_max >= p["min_sins"]) & (tokuhashi_ok | katagiri_ok)
    evidence = _sins_evidence(f)
    evidence["tokuhashi_possible_totals"] = np.array(
        [", ".join(map(str, totals_of(int(m)))) for m in f.tokuhashi_mask], dtype=object
    )
    evidence["katagiri_possible_totals"] = np.array(
        [", ".join(map(str, totals_of(int(m)))) for m in f.katagiri_mask], dtype=object
    )
    return RuleOutput(fired, [_str(f.sins_worst_level)], evidence)


@rule("sins-10-on-denosumab", min_sins=int, on_drug_within_days=int)
def _sins_denosumab(f: Frame, p, today, ctx):
    on_drug = _days_since(today, f.denosumab_last_on) <= p["on_drug_within_days"]
    fired = f.active & (ctx.sins_max >= p["min_sins"]) & on_drug
    evidence = _sins_evidence(f)
    evidence["denosumab_last_on"] = f.denosumab_last_on
    return RuleOutput(
        fired,
        [_str(f.sins_worst_level)],
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
        [_str(ctx.due)],
        {"tier": ctx.tier, "last_imaging_on": f.last_imaging_on, "due_on": ctx.due},
        next_change=_earliest_future(today, start, ctx.due),
    )


@rule("imaging-overdue", escalate_after_days=int, escalated_severity=str)
def _imaging_overdue(f: Frame, p, today, ctx):
    fired = f.active & ~np.isnat(ctx.due) & (ctx.due <= today)
    overdue = _days_since(today, ctx.due)
    severity = np.where(overdue >= p["escalate_after_days"], p["escalated_severity"], "").astype(object)
    severity[severity == ""] = None
    no_imaging = np.where(np.isnat(f.last_imaging_on), "no qualifying spine imaging recorded", "")
    return RuleOutput(
        fired,
        [_str(ctx.due)],
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
    severity = np.where(ctx.sins_max >= p["high_if_sins_min"], "high", None).astype(object)
    return RuleOutput(
        fired,
        [_str(f.last_spine_sbrt_on)],
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
        [np.full(f.n, "none", dtype=object)],
        {"lesion_count": f.lesion_count, "extraspinal_bone_metastases": f.extraspinal_bone_metastases},
    )


def _bma_interval(f: Frame, den: int, za_q4w: int, za_q12w: int) -> np.ndarray:
    q12 = f.zoledronic_regimen == "q12w"
    return np.where(f.bma_agent == "zoledronic_acid", np.where(q12, za_q12w, za_q4w), den).astype(float)


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
        f, p["denosumab_overdue_days"], p["zoledronic_q4w_overdue_days"], p["zoledronic_q12w_overdue_days"]
    )
    since = _days_since(today, f.bma_last_on)
    # Past the stop threshold the agent counts as stopped: the stop and indication rules take over.
    q12w_zoledronic = (f.bma_agent == "zoledronic_acid") & (f.zoledronic_regimen == "q12w")
    stopped = np.where(q12w_zoledronic, p["stopped_after_days_q12w"], p["stopped_after_days"])
    fired = f.active & ~np.isnat(f.bma_last_on) & (since > threshold) & (since <= stopped) & ~f.bma_not_indicated
    severity = np.where(since > threshold + p["escalate_after_days"], p["escalated_severity"], None).astype(object)
    regimen = np.where(
        f.bma_agent == "zoledronic_acid",
        np.where(f.zoledronic_regimen == None, "q4w assumed (regimen not recorded)", f.zoledronic_regimen),  # noqa: E711
        "q4w",
    ).astype(object)
    limit = f.bma_last_on + threshold.astype("timedelta64[D]")
    return RuleOutput(
        fired,
        [_str(f.bma_last_on)],
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
        f, p["denosumab_interval_days"], p["zoledronic_q4w_interval_days"], p["zoledronic_q12w_interval_days"]
    )
    next_dose = f.bma_last_on + interval.astype("timedelta64[D]")
    window_start = next_dose - p["due_window_days"] * DAY
    window_end = next_dose + p["watch_until_days_after_due"] * DAY  # later than that the dose is overdue or stopped
    is_za = f.bma_agent == "zoledronic_acid"
    is_den = f.bma_agent == "denosumab"
    lab_on = np.where(is_za, f.creatinine_on, np.where(is_den, f.calcium_on, NaT))
    lab_recent = _days_since(today, lab_on) <= p["lab_within_days"]
    in_window = (window_start <= today) & (today <= window_end)
    fired = f.active & (is_za | is_den) & ~np.isnat(f.bma_last_on) & in_window & ~lab_recent & ~f.bma_not_indicated
    needed = np.where(is_za, "creatinine", "calcium").astype(object)
    return RuleOutput(
        fired,
        [_str(next_dose)],
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
    on_za = (f.bma_agent == "zoledronic_acid") & ~np.isnat(f.zoledronic_first_on)
    fired = f.active & on_za & ~np.isnan(rise) & (rise >= allowed) & (f.creatinine_on >= f.zoledronic_first_on)
    return RuleOutput(
        fired,
        [_str(f.creatinine_on)],
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
    method = np.where(np.isnan(albumin), "measured (no albumin)", "albumin-corrected (Payne)").astype(object)
    return RuleOutput(
        fired,
        [_str(f.calcium_on)],
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
    reason = np.select(
        [never, none_before, stale],
        ["no dental examination recorded", "no dental examination before the first dose",
         "dental review older than the interval"],
        default="",
    ).astype(object)
    key = np.select([never, none_before], ["none", "before-first-dose"], default=_str(f.dental_last_on)).astype(object)
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
    still_latest = f.bma_agent == "denosumab"  # not switched to another agent since
    fired = f.active & (since > p["stopped_after_days"]) & still_latest & ~f.denosumab_transition_plan
    return RuleOutput(
        fired,
        [_str(f.denosumab_last_on)],
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
        [_str(f.ecog_on)],
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
        [_str(f.neuro_on)],
        {"ambulatory_status": f.ambulatory_status, "previous": f.previous_ambulatory_status, "recorded_on": f.neuro_on},
        next_change=f.neuro_on + (p["lookback_days"] + 1) * DAY,
    )


@rule("locomo-type2-untreated")
def _type2(f: Frame, p, today, ctx):
    fired = f.active & f.locomo_type2_without_plan
    return RuleOutput(fired, [np.full(f.n, "type2", dtype=object)], {"locomo_types": f.locomo_types})


@rule("locomo-type3-overlooked", review_every_days=int)
def _type3(f: Frame, p, today, ctx):
    has_type3 = (f.locomo_types & 4) != 0
    unreviewed = np.isnat(f.locomo_type3_last_review_on) | (
        _days_since(today, f.locomo_type3_last_review_on) > p["review_every_days"]
    )
    fired = f.active & has_type3 & f.on_cancer_therapy & unreviewed
    return RuleOutput(
        fired,
        [_str(f.locomo_type3_last_review_on)],
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
                (f.primary_site == "unknown_primary") & _has_bone_metastasis(f),
                "unknown primary with bone metastasis",
                f.registered_on,
            )
        )
    if p["tes_positive"]:
        reasons.append((np.isin(f.tes_screen, ["positive", "selected"]), "TES screen positive", f.lesions_assessed_on))
    latest = np.full(f.n, NaT)
    text = np.full(f.n, "", dtype=object)
    any_reason = np.zeros(f.n, dtype=bool)
    for mask, label, on in reasons:
        any_reason |= mask
        latest = np.where(mask & (np.isnat(latest) | (on > latest)), on, latest)
        text = np.where(mask, np.where(text == "", label, text + "; " + label), text)
    undecided = np.isnat(f.board_decided_on) | np.isnat(latest) | (f.board_decided_on < latest)
    fired = f.active & any_reason & undecided
    return RuleOutput(
        fired,
        [text, _str(latest)],
        {"reasons": text, "since": latest, "board_decided_on": f.board_decided_on},
        next_change=_earliest_future(today, f.last_sre_on + (p["new_sre_days"] + 1) * DAY),
    )


@rule("tes-candidate")
def _tes(f: Frame, p, today, ctx):
    fired = f.active & np.isin(f.tes_screen, ["positive", "selected"])
    return RuleOutput(fired, [_str(f.tes_screen)], {"tes_screen": f.tes_screen})


@rule("separation-margin-lt3mm", margin_below_mm=float)
def _separation(f: Frame, p, today, ctx):
    fired = f.active & ~np.isnan(f.separation_margin_mm) & (f.separation_margin_mm < p["margin_below_mm"])
    return RuleOutput(
        fired,
        [_str(f.separation_surgery_on)],
        {"surgery_on": f.separation_surgery_on, "margin_mm": f.separation_margin_mm},
    )


@rule("prognosis-poor", min_katagiri=int)
def _prognosis(f: Frame, p, today, ctx):
    fired = f.active & (ctx.katagiri_min >= p["min_katagiri"])
    possible = np.array([", ".join(map(str, totals_of(int(m)))) for m in f.katagiri_mask], dtype=object)
    return RuleOutput(fired, [np.full(f.n, "katagiri-high", dtype=object)], {"katagiri_possible_totals": possible})


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
    screening = ~has_lesion & np.isin(f.primary_site, list(t.screening_sites))
    tier = np.select(
        [~f.active, high, intermediate, low, screening],
        ["inactive", "high", "intermediate", "low", "screening"],
        default="none",
    ).astype(object)
    interval = np.select(
        [high, intermediate, low, screening],
        [t.high_interval_days, t.intermediate_interval_days, t.low_interval_days, t.screening_interval_days],
        default=0,
    ).astype("timedelta64[D]")
    # No qualifying imaging yet: due since the patient entered surveillance.
    base = np.where(np.isnat(f.last_imaging_on), f.registered_on, f.last_imaging_on + interval)
    due = np.where(f.active & (tier != "none"), base, NaT).astype("datetime64[D]")
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
    weights = ruleset.severity_weights
    priority = np.zeros(frame.n, dtype=np.int64)
    open_count = np.zeros(frame.n, dtype=np.int64)
    critical = np.zeros(frame.n, dtype=np.int64)
    recheck = tier_change
    reasons = np.full(frame.n, "", dtype=object)
    for rule_id in RULE_ORDER:
        fn, _ = _RULES[rule_id]
        r = ruleset.rule(rule_id)
        out = fn(frame, r.params, today, ctx)
        ctx.outputs[rule_id] = out
        sev = np.full(frame.n, r.severity, dtype=object)
        if out.severity is not None:
            override = np.array([s is not None for s in out.severity], dtype=bool)
            sev[override] = out.severity[override]
        severity[rule_id] = sev
        fired = out.fired
        if fired.any():
            weight = np.select([sev == name for name in weights], list(weights.values()), default=0)
            priority += np.where(fired, weight, 0)
        open_count += fired
        critical += fired & (sev == "critical")
        if fired.any():
            reasons = np.where(fired, np.where(reasons == "", r.title, reasons + "; " + r.title), reasons)
        if out.next_change is not None:
            recheck = _earliest_future(today, recheck, out.next_change)
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
        priority=priority,
        recheck_on=np.where(frame.active, recheck, NaT).astype("datetime64[D]"),
        open_count=open_count,
        critical_count=critical,
        reasons=reasons,
    )


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float) -> RuleSet:
    return parse_rules(Path(path).read_text(encoding="utf-8"), known_rules=implemented_rules())


def load_rules(path: str | Path | None = None) -> RuleSet:
    """The validated rule set (default: the shipped ``default_rules.toml``)."""
    path = Path(path) if path else DEFAULT_RULES_PATH
    return _load_cached(str(path), path.stat().st_mtime)
