"""Controlled vocabularies of the case format (``shared/case-format.md`` v1).

Every categorical input of every instrument is one of these ``StrEnum``s, so a
value that is not listed fails at the boundary instead of silently scoring as
zero.  The string values are the exact JSON tokens of the case format.
"""

from __future__ import annotations

from enum import StrEnum

CASE_FORMAT_VERSION = "case-format v1"


class Level(StrEnum):
    """Spinal levels from the occiput to S5 (clinical-reference §2.2).

    The coccyx is deliberately absent: SINS does not define it.
    """

    OCCIPUT = "Occiput"
    C1 = "C1"
    C2 = "C2"
    C3 = "C3"
    C4 = "C4"
    C5 = "C5"
    C6 = "C6"
    C7 = "C7"
    T1 = "T1"
    T2 = "T2"
    T3 = "T3"
    T4 = "T4"
    T5 = "T5"
    T6 = "T6"
    T7 = "T7"
    T8 = "T8"
    T9 = "T9"
    T10 = "T10"
    T11 = "T11"
    T12 = "T12"
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L4 = "L4"
    L5 = "L5"
    S1 = "S1"
    S2 = "S2"
    S3 = "S3"
    S4 = "S4"
    S5 = "S5"


#: Cranio-caudal order, used to check that a span is contiguous.
LEVEL_ORDER: dict[Level, int] = {level: i for i, level in enumerate(Level)}


class Pain(StrEnum):
    MECHANICAL = "mechanical"
    NON_MECHANICAL = "non_mechanical"
    NONE = "none"


class LesionType(StrEnum):
    LYTIC = "lytic"
    MIXED = "mixed"
    BLASTIC = "blastic"


class Alignment(StrEnum):
    SUBLUXATION = "subluxation"
    DEFORMITY = "deformity"
    NORMAL = "normal"


class Collapse(StrEnum):
    GT50 = "gt50"
    LT50 = "lt50"
    NONE_GT50_INVOLVED = "none_gt50_involved"
    NONE = "none"


class Posterolateral(StrEnum):
    BILATERAL = "bilateral"
    UNILATERAL = "unilateral"
    NONE = "none"


class BilskyGrade(StrEnum):
    """ESCC grade: a string, never a number ("1a" and "1" are different)."""

    G0 = "0"
    G1A = "1a"
    G1B = "1b"
    G1C = "1c"
    G2 = "2"
    G3 = "3"


class Ambulation(StrEnum):
    INDEPENDENT = "independent"
    WITH_AID = "with_aid"
    WITH_ASSISTANCE = "with_assistance"
    NON_AMBULATORY = "non_ambulatory"


class VisceralStatus(StrEnum):
    NONE = "none"
    NODULAR = "nodular"
    DISSEMINATED = "disseminated"


class Frankel(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"


class PrimarySite(StrEnum):
    """The controlled ``primary_site`` codes of the case format."""

    LUNG_NSCLC = "lung_nsclc"
    LUNG_SCLC = "lung_sclc"
    BREAST = "breast"
    PROSTATE = "prostate"
    THYROID = "thyroid"
    KIDNEY = "kidney"
    LIVER = "liver"
    COLON = "colon"
    RECTUM = "rectum"
    STOMACH = "stomach"
    ESOPHAGUS = "esophagus"
    PANCREAS = "pancreas"
    GALLBLADDER = "gallbladder"
    BLADDER = "bladder"
    UTERUS = "uterus"
    CERVIX = "cervix"
    OVARY = "ovary"
    HEAD_NECK = "head_neck"
    MYELOMA = "myeloma"
    LYMPHOMA = "lymphoma"
    MELANOMA = "melanoma"
    SOFT_TISSUE_SARCOMA = "soft_tissue_sarcoma"
    OSTEOSARCOMA = "osteosarcoma"
    NEUROENDOCRINE = "neuroendocrine"
    TESTIS_GERM_CELL = "testis_germ_cell"
    UNKNOWN_PRIMARY = "unknown_primary"
    OTHER = "other"


#: Plain-language names, used in explanations and on the reference page.
PRIMARY_SITE_LABELS: dict[PrimarySite, str] = {
    PrimarySite.LUNG_NSCLC: "Non-small-cell lung cancer",
    PrimarySite.LUNG_SCLC: "Small-cell lung cancer",
    PrimarySite.BREAST: "Breast",
    PrimarySite.PROSTATE: "Prostate",
    PrimarySite.THYROID: "Thyroid (differentiated)",
    PrimarySite.KIDNEY: "Renal cell carcinoma",
    PrimarySite.LIVER: "Hepatocellular carcinoma",
    PrimarySite.COLON: "Colon",
    PrimarySite.RECTUM: "Rectum",
    PrimarySite.STOMACH: "Stomach",
    PrimarySite.ESOPHAGUS: "Oesophagus",
    PrimarySite.PANCREAS: "Pancreas",
    PrimarySite.GALLBLADDER: "Gallbladder",
    PrimarySite.BLADDER: "Bladder / urothelial",
    PrimarySite.UTERUS: "Endometrium (uterus)",
    PrimarySite.CERVIX: "Uterine cervix",
    PrimarySite.OVARY: "Ovary",
    PrimarySite.HEAD_NECK: "Head and neck SCC",
    PrimarySite.MYELOMA: "Multiple myeloma",
    PrimarySite.LYMPHOMA: "Lymphoma",
    PrimarySite.MELANOMA: "Melanoma",
    PrimarySite.SOFT_TISSUE_SARCOMA: "Soft-tissue sarcoma",
    PrimarySite.OSTEOSARCOMA: "Osteosarcoma",
    PrimarySite.NEUROENDOCRINE: "Carcinoid / neuroendocrine tumour",
    PrimarySite.TESTIS_GERM_CELL: "Seminoma / testicular germ-cell tumour",
    PrimarySite.UNKNOWN_PRIMARY: "Cancer of unknown primary",
    PrimarySite.OTHER: "Other known histology (named by no system)",
}


def allowed(enum: type[StrEnum]) -> list[str]:
    """The allowed JSON tokens of a vocabulary, in declaration order."""
    return [member.value for member in enum]
