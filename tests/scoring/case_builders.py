"""Builders for scoring-engine test cases (shared/case-format.md, case format v1).

Written from the case format only, independently of the engine.  The default
patient is fully known and as favourable as the tables allow, so a test that
changes one input isolates that input's points:

* primary ``breast`` with ``hormone_dependent: true``
* ECOG 0 and KPS 90, independent ambulation, Frankel E, fit for surgery
* every laboratory value comfortably inside its normal range
  (clinical-reference §8.1: CRP < 0.4, LDH < 250, albumin >= 3.7,
  platelets >= 100,000, calcium < 10.3, bilirubin < 1.4; NESMS albumin >= 3.5)
* no visceral or brain metastases, no previous chemotherapy
* exactly one skeletal metastasis (one vertebral body, no extraspinal focus),
  no pathological fracture
* one quiet lesion at T8 (semirigid, every other SINS component 0), ESCC 0

Expected points of that default, by hand from the reference:
SINS 1 (§2.2 T8 semirigid), Tomita 1+0+1 = 2 (§4.1), revised Tokuhashi
2+2+2+2+5+2 = 15 (§5.1/§5.2), Bauer 5 and modified Bauer 4 (§6.1),
NESMS 2+1+1 = 4 capped to 3 (§7.1), new Katagiri 0 (§8.1/§8.2).
"""

from __future__ import annotations

import copy
from typing import Any

#: Laboratory values well inside the normal range of every cut-off (§8.1, §7.1).
NORMAL_LABS: dict[str, float] = {
    "albumin_g_dl": 4.2,
    "crp_mg_dl": 0.1,
    "ldh_u_l": 180,
    "platelets_per_ul": 250000,
    "calcium_mg_dl": 9.5,
    "total_bilirubin_mg_dl": 0.5,
}

LAB_FIELDS: tuple[str, ...] = tuple(NORMAL_LABS)

#: A lesion whose every SINS component except location scores 0 (§2.1).
QUIET_COMPONENTS: dict[str, str] = {
    "pain": "none",
    "lesion_type": "blastic",
    "alignment": "normal",
    "collapse": "none",
    "posterolateral": "none",
}

#: The six systemic systems of the result object (case-format.md, Output).
SYSTEMS: tuple[str, ...] = (
    "tomita",
    "revised_tokuhashi",
    "bauer",
    "modified_bauer",
    "nesms",
    "new_katagiri",
)

UNKNOWN = object()
"""Sentinel for :func:`make_case`: drop the field entirely (missing == unknown)."""


def lesion(level: str = "T8", **overrides: Any) -> dict[str, Any]:
    """A lesion at ``level``, quiet (SINS components 0) unless overridden.

    ``bilsky_escc`` defaults to ``"0"``.  Pass a value of :data:`UNKNOWN` to drop
    a key from the lesion.
    """
    out: dict[str, Any] = {"level": level, **QUIET_COMPONENTS, "bilsky_escc": "0"}
    for key, value in overrides.items():
        if value is UNKNOWN:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def base_case() -> dict[str, Any]:
    """The fully known, favourable default patient described in the module docstring."""
    return {
        "id": "test",
        "primary_site": "breast",
        "hormone_dependent": True,
        "molecular_targeted_therapy": None,
        "ecog": 0,
        "kps": 90,
        "ambulatory_status": "independent",
        **NORMAL_LABS,
        "previous_chemotherapy": False,
        "visceral_metastases": {"status": "none", "treatable": None, "removable": None},
        "brain_metastases": False,
        "extraspinal_bone_metastases": 0,
        "vertebral_body_metastases": 1,
        "spinal_involvement_single_contiguous_lesion": False,
        "extraspinal_pathological_fracture": False,
        "frankel_grade": "E",
        "fit_for_surgery": True,
        "spinal_lesions": [lesion("T8")],
    }


def make_case(**overrides: Any) -> dict[str, Any]:
    """The default patient with top-level fields replaced.

    A value of :data:`UNKNOWN` removes the field (missing means unknown); ``None``
    keeps the key with a JSON ``null`` (also unknown).
    """
    case = copy.deepcopy(base_case())
    for key, value in overrides.items():
        if value is UNKNOWN:
            case.pop(key, None)
        else:
            case[key] = copy.deepcopy(value)
    return case


def visceral(status: str | None, treatable: bool | None = None, removable: bool | None = None) -> dict[str, Any]:
    return {"status": status, "treatable": treatable, "removable": removable}
