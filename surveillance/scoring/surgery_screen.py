"""Surgery-contraindication screen (shared/surveillance-rules.md, "surgery-contraindication-screen").

The review lists contraindications to surgery for spinal metastasis —
disseminated carcinomatosis of the bone marrow (DCBM), excess multiple bone
metastases, poor performance or general condition, expected survival below
3–6 months — and notes that surgery may still be indicated for symptomatic
MESCC or instability.  It gives no thresholds, so each item reports what the
record says and, where a published band is a natural proxy, whether the concern
is met; the proxies are implementation conventions [CONV]:

* DCBM is not recorded by the product: always ``unknown`` (clinician judgement),
  with the latest platelet count as context;
* excess multiple bone metastases: ≥ 3 extraspinal foci or ≥ 3 vertebral bodies
  (the worst categories of the revised Tokuhashi items);
* poor performance: ECOG 3–4, or KPS ≤ 40 when ECOG is not recorded;
* expected survival < 3–6 months: revised Tokuhashi 0–8 (< 6 months) or new
  Katagiri 7–10 (high risk).

Each item is ``yes`` / ``possible`` (some reachable totals meet it) / ``no`` /
``unknown``.  Information for the case card, never an alert.
"""

from __future__ import annotations

from collections.abc import Callable

TABLE_VERSION = "review-contraindications/1"
CITATION = "The review (Cancer Locomo), §4: contraindications to surgery; proxies [CONV]"
EXCESS_BONE_METASTASES = 3
POOR_ECOG_MIN = 3
POOR_KPS_MAX = 40
SHORT_SURVIVAL_TOKUHASHI_MAX = 8
SHORT_SURVIVAL_KATAGIRI_MIN = 7

YES, POSSIBLE, NO, UNKNOWN = "yes", "possible", "no", "unknown"

ITEMS = (
    ("dcbm", "Disseminated carcinomatosis of the bone marrow", "not recorded: clinician judgement"),
    ("bone_metastases", "Excess multiple bone metastases", "≥ 3 extraspinal foci or ≥ 3 vertebral bodies [CONV]"),
    ("performance", "Poor performance or general condition", "ECOG 3–4, or KPS ≤ 40 without ECOG [CONV]"),
    ("survival", "Expected survival < 3–6 months", "revised Tokuhashi 0–8 or new Katagiri 7–10 [CONV]"),
)


def _from_totals(totals: tuple[int, ...], concern: Callable[[int], bool]) -> str:
    if not totals:
        return UNKNOWN
    hits = [concern(t) for t in totals]
    return YES if all(hits) else POSSIBLE if any(hits) else NO


def compute_surgery_screen(
    *,
    extraspinal_bone_metastases: int | None,
    vertebral_body_metastases: int | None,
    ecog: int | None,
    kps: int | None,
    platelets_per_ul: float | None,
    tokuhashi_totals: tuple[int, ...],
    katagiri_totals: tuple[int, ...],
) -> dict:
    items = [{"item": "dcbm", "status": UNKNOWN, "values": {"platelets_per_ul": platelets_per_ul}}]

    counts = [c for c in (extraspinal_bone_metastases, vertebral_body_metastases) if c is not None]
    if any(c >= EXCESS_BONE_METASTASES for c in counts):
        bone = YES
    elif len(counts) < 2:
        bone = UNKNOWN
    else:
        bone = NO
    items.append({"item": "bone_metastases", "status": bone,
                  "values": {"extraspinal": extraspinal_bone_metastases, "vertebral": vertebral_body_metastases}})

    if ecog is not None:
        performance = YES if ecog >= POOR_ECOG_MIN else NO
    elif kps is not None:
        performance = YES if kps <= POOR_KPS_MAX else NO
    else:
        performance = UNKNOWN
    items.append({"item": "performance", "status": performance, "values": {"ecog": ecog, "kps": kps}})

    verdicts = [
        _from_totals(tokuhashi_totals, lambda t: t <= SHORT_SURVIVAL_TOKUHASHI_MAX),
        _from_totals(katagiri_totals, lambda t: t >= SHORT_SURVIVAL_KATAGIRI_MIN),
    ]
    survival = next((v for v in (YES, POSSIBLE, NO) if v in verdicts), UNKNOWN)
    items.append({"item": "survival", "status": survival,
                  "values": {"tokuhashi": list(tokuhashi_totals), "katagiri": list(katagiri_totals)}})
    return {
        "items": items,
        "information_only": True,
        "note": "Surgery may still be indicated for symptomatic MESCC or instability.",
        "citation": CITATION,
        "table_version": TABLE_VERSION,
    }
