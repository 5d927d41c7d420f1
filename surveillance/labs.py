"""The laboratory tests the product uses: codes, LOINC, canonical units and conversions.

Each test is stored in one canonical unit, named in the field names that cross
boundaries (``albumin_g_dl``).  LOINC codes identify tests on import; UCUM
units are converted to the canonical unit by the factors below (molar masses:
calcium 40.08 g/mol, creatinine 113.12 g/mol, bilirubin 584.66 g/mol).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from surveillance.scoring.case import LAB_LIMITS


class LabTest(StrEnum):
    ALBUMIN = "albumin"
    CRP = "crp"
    LDH = "ldh"
    PLATELETS = "platelets"
    CALCIUM = "calcium"
    BILIRUBIN = "bilirubin"
    CREATININE = "creatinine"


@dataclass(frozen=True)
class LabDefinition:
    test: LabTest
    label: str
    unit: str  # canonical unit (as in the field names)
    state_field: str  # column of patient_state / field of the case format
    loinc: tuple[str, ...]
    #: UCUM unit -> factor that converts a value in that unit to the canonical unit
    conversions: dict[str, float]
    plausible: tuple[float, float]  # canonical unit; outside is refused as a likely unit error (case.LAB_LIMITS)


LABS: dict[LabTest, LabDefinition] = {
    LabTest.ALBUMIN: LabDefinition(
        LabTest.ALBUMIN,
        "Albumin",
        "g/dL",
        "albumin_g_dl",
        ("1751-7", "61151-7"),
        {"g/dL": 1.0, "g/L": 0.1, "g/dl": 1.0},
        LAB_LIMITS["albumin_g_dl"][:2],
    ),
    LabTest.CRP: LabDefinition(
        LabTest.CRP,
        "C-reactive protein",
        "mg/dL",
        "crp_mg_dl",
        ("1988-5", "30522-7"),
        {"mg/dL": 1.0, "mg/L": 0.1, "mg/dl": 1.0},
        LAB_LIMITS["crp_mg_dl"][:2],
    ),
    LabTest.LDH: LabDefinition(
        LabTest.LDH,
        "Lactate dehydrogenase",
        "U/L",
        "ldh_u_l",
        ("2532-0", "14804-9"),
        {"U/L": 1.0, "IU/L": 1.0, "u/L": 1.0},
        LAB_LIMITS["ldh_u_l"][:2],
    ),
    LabTest.PLATELETS: LabDefinition(
        LabTest.PLATELETS,
        "Platelets",
        "/µL",
        "platelets_per_ul",
        ("777-3", "26515-7"),
        {"/uL": 1.0, "10*3/uL": 1000.0, "10*9/L": 1000.0, "/µL": 1.0, "K/uL": 1000.0},
        LAB_LIMITS["platelets_per_ul"][:2],
    ),
    LabTest.CALCIUM: LabDefinition(
        LabTest.CALCIUM,
        "Calcium (measured)",
        "mg/dL",
        "calcium_mg_dl",
        ("17861-6", "2000-8"),
        {"mg/dL": 1.0, "mmol/L": 4.008, "mg/dl": 1.0},
        LAB_LIMITS["calcium_mg_dl"][:2],
    ),
    LabTest.BILIRUBIN: LabDefinition(
        LabTest.BILIRUBIN,
        "Total bilirubin",
        "mg/dL",
        "total_bilirubin_mg_dl",
        ("1975-2", "42719-5"),
        {"mg/dL": 1.0, "umol/L": 1 / 17.1, "µmol/L": 1 / 17.1, "mg/dl": 1.0},
        LAB_LIMITS["total_bilirubin_mg_dl"][:2],
    ),
    LabTest.CREATININE: LabDefinition(
        LabTest.CREATININE,
        "Creatinine",
        "mg/dL",
        "creatinine_mg_dl",
        ("2160-0", "38483-4"),
        {"mg/dL": 1.0, "umol/L": 1 / 88.4, "µmol/L": 1 / 88.4, "mg/dl": 1.0},
        (0.05, 25.0),
    ),
}

LOINC_TO_TEST: dict[str, LabTest] = {code: d.test for d in LABS.values() for code in d.loinc}


def to_canonical(test: LabTest | str, value: float, unit: str) -> float:
    """``value`` in ``unit`` converted to the test's canonical unit; unknown units raise."""
    definition = LABS[LabTest(test)]
    if unit == definition.unit:
        return value
    try:
        return value * definition.conversions[unit]
    except KeyError:
        allowed = ", ".join(sorted({definition.unit, *definition.conversions}))
        raise ValueError(f"{definition.label}: unit {unit!r} is not supported; use one of {allowed}") from None


def corrected_calcium_mg_dl(calcium_mg_dl: float, albumin_g_dl: float | None) -> float:
    """Albumin-corrected calcium (Payne): Ca + 0.8 × (4.0 − albumin); measured Ca without albumin."""
    if albumin_g_dl is None:
        return calcium_mg_dl
    return calcium_mg_dl + 0.8 * (4.0 - albumin_g_dl)
