"""A stored patient as a case of the JSON case format.

The bridge between the store and the scoring core for one patient (the patient
page, the board's case card, the FHIR export): the patient row, its
``patient_state`` and its active lesions become exactly the case the batch
scorer scores, so the explanation a physician reads is the computation behind
the snapshot.  The derivations that are not stored as such live here and in
``surveillance.batch`` only, and a test holds the two to the same answers:

* ``vertebral_body_metastases``: the recorded count, else the distinct levels
  of the active lesions (``patient_state``);
* ``spinal_involvement_single_contiguous_lesion``: true for one active lesion
  spanning several levels, false for several lesions or one single-level
  lesion, unknown without lesions.
"""

from __future__ import annotations

from typing import Any

from surveillance.state import lesion_levels


def _flag(value: Any) -> bool | None:
    """Booleans as stored (SQLite returns 0/1 to untyped reads) as true/false/unknown."""
    return None if value is None else bool(value)


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def single_contiguous_lesion(lesions: list[dict[str, Any]]) -> bool | None:
    if not lesions:
        return None
    if len(lesions) == 1:
        return len(lesion_levels(lesions[0]["level"], lesions[0]["level_span_end"])) > 1
    return False


def case_from_record(patient: dict[str, Any], state: dict[str, Any], lesions: list[dict[str, Any]]) -> dict[str, Any]:
    """The case-format v1 input for one patient (only active lesions are passed)."""
    case_lesions = []
    for lesion in lesions:
        levels = lesion_levels(lesion["level"], lesion["level_span_end"])
        entry: dict[str, Any] = {
            "level": lesion["level"],
            "pain": lesion["pain"],
            "lesion_type": lesion["lesion_type"],
            "alignment": lesion["alignment"],
            "collapse": lesion["collapse"],
            "posterolateral": lesion["posterolateral"],
            "bilsky_escc": lesion["bilsky_escc"],
        }
        if len(levels) > 1:
            entry["level_span"] = [lv.value for lv in levels]
        if lesion.get("wbb_zones"):
            entry["wbb_zones"] = [int(z) for z in lesion["wbb_zones"].split(",")]
            entry["wbb_numbering"] = lesion.get("wbb_numbering") or "boriani_clockwise"
            if lesion.get("wbb_layers"):
                entry["wbb_layers"] = lesion["wbb_layers"].split(",")
        case_lesions.append(entry)
    ecog = state.get("ecog")
    kps = state.get("kps")
    return {
        "id": patient.get("mrn"),
        "primary_site": patient.get("primary_site"),
        "primary_histology": None if patient.get("primary_site") else patient.get("primary_histology"),
        "hormone_dependent": _flag(patient.get("hormone_dependent")),
        "molecular_targeted_therapy": _flag(patient.get("molecular_targeted_therapy")),
        "previous_chemotherapy": _flag(patient.get("previous_chemotherapy")),
        "fit_for_surgery": _flag(patient.get("fit_for_surgery")),
        "ecog": None if ecog is None else int(ecog),
        "kps": None if kps is None else int(kps),
        "ambulatory_status": state.get("ambulatory_status"),
        "frankel_grade": state.get("frankel_grade"),
        "albumin_g_dl": state.get("albumin_g_dl"),
        "crp_mg_dl": state.get("crp_mg_dl"),
        "ldh_u_l": state.get("ldh_u_l"),
        "platelets_per_ul": state.get("platelets_per_ul"),
        "calcium_mg_dl": state.get("calcium_mg_dl"),
        "total_bilirubin_mg_dl": state.get("total_bilirubin_mg_dl"),
        "visceral_metastases": {
            "status": state.get("visceral_status"),
            "treatable": _flag(state.get("visceral_treatable")),
            "removable": _flag(state.get("visceral_removable")),
        },
        "brain_metastases": _flag(state.get("brain_metastases")),
        "extraspinal_bone_metastases": _count(state.get("extraspinal_bone_metastases")),
        "vertebral_body_metastases": _count(state.get("vertebral_body_metastases")),
        "spinal_involvement_single_contiguous_lesion": single_contiguous_lesion(lesions),
        "extraspinal_pathological_fracture": _flag(state.get("extraspinal_pathological_fracture")),
        "spinal_lesions": case_lesions,
    }
