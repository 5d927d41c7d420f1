"""Code tables the FHIR importer applies, each with its source.

Sources (copies in ``/work/shared/fhir-samples``, provenance in its ``SOURCES.md``;
notes in ``/work/shared/notes/fhir-data.md``, cited as "fhir-data §x"):

* [TG263] ``mcode-stu4/terminology/ConceptMap-TG263CM.json`` (HL7 mCODE STU4 4.0.0, CC0):
  SNOMED CT vertebral-body structures C1–S5 and region codes.
* [SCT-guide] SNOMED CT editorial guide text quoted in fhir-data §2.2: the second
  family "Bone structure of Xn" (T12 23215003, L1 66794005) and spine regions.
* [mCODE-VS] ``ValueSet-mcode-secondary-cancer-disorder-vs.json``: secondary cancer
  disorders (SNOMED is-a 128462008, ICD-10-CM C77–C79 list).
* [samples] codes present in the sample files (fhir-data §2.1, §2.3–2.5).
* [LOINC] LOINC 89247-1 / 89243-0 and the ECOG answer list LL529-9; [LOINC-verify] marks
  answer codes not found in the shared sources (fhir-data §2.3 "verify").
* [RxNorm] RxNorm concepts quoted in fhir-data §2.4 (OMOP concept set, Synthea modules).
* [DICOM] DICOM PS3.16 CID 29 acquisition modality codes (MR, CT, PT, NM, DX, CR).

Anything not in these tables is matched by its display text (documented in
``docs/import-format.md``) or reported, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10_PREFIXES = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm")

#: The product's own code system for SINS components and the ESCC (Bilsky) grade (docs/import-format.md).
SPINE_CS = "https://cancer-locomo.example.org/fhir/CodeSystem/spine-assessment"

# --------------------------------------------------------------------------- vertebral levels

#: [TG263] Structure of body of vertebra Xn (C1/C2 are whole-bone codes: atlas, axis).
#: 1186895000 (T13) is deliberately absent: the ConceptMap maps VB_T12 to it by mistake (fhir-data §2.2).
VERTEBRA_BODY_SNOMED: dict[str, str] = {
    "14806007": "C1", "39976000": "C2", "91116008": "C3", "14705001": "C4", "67479001": "C5",
    "88298007": "C6", "16126006": "C7",
    "56094003": "T1", "50060007": "T2", "73138009": "T3", "86197001": "T4", "6105006": "T5",
    "32430008": "T6", "71737002": "T7", "77435000": "T8", "33766003": "T9", "48405002": "T10",
    "52120002": "T11", "280849005": "T12",
    "61032001": "L1", "53983007": "L2", "55492004": "L3", "71996003": "L4", "21799000": "L5",
    "65985001": "S1", "11808007": "S2", "49967005": "S3", "69950008": "S4", "21452006": "S5",
    # [SCT-guide] second family, "Bone structure of Xn"; the rest of it is read from the display text
    "23215003": "T12", "66794005": "L1",
}  # fmt: skip

#: Spine *regions* (no level): [TG263] and [SCT-guide]; value = the imaging region token.
SPINE_REGION_SNOMED: dict[str, str] = {
    "3572006": "whole_spine",  # vertebral body (any) — TG263 also gives it a "cervical" display: a defect
    "35769007": "thoracic",
    "73903008": "lumbar",
    "87141009": "sacral",
    "421060004": "whole_spine",  # vertebral column
    "1141981001": "whole_spine",  # vertebral column region
    "1141986006": "thoracic",
    "1141985005": "lumbar",
    "122496007": "lumbar",  # structure of lumbar vertebral column [samples: ctm-app Patient02]
}

#: Non-spinal bone structures [TG263] (+ 719537008 right acetabulum [samples]): RT there is radiation to bone.
BONE_SNOMED: frozenset[str] = frozenset(
    {
        "37783008", "719537008", "22356005", "85710004", "118645006", "71341001", "2812003", "29627003",
        "41111004", "85050009", "113197003", "48535007", "78247007", "25888004", "25523003", "15339008",
        "59558009", "24915002", "5953002", "22565002", "77644006", "58830002", "43993008", "91609006",
    }
)  # fmt: skip

_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12,
}  # fmt: skip
_REGION_LETTER = {"cervical": "C", "thoracic": "T", "lumbar": "L", "sacral": "S"}
_MAX = {"C": 7, "T": 12, "L": 5, "S": 5}
# "T12", "Th12", "Th 12", "BWK 12" (Brustwirbelkörper), "LWK 3", "HWK 5" (Halswirbelkörper), "SWK 1"
_LEVEL_RX = re.compile(r"\b(BWK|LWK|HWK|SWK|Th|C|T|L|S)\s?-?(\d{1,2})\b", re.IGNORECASE)
_GERMAN = {"bwk": "T", "lwk": "L", "hwk": "C", "swk": "S", "th": "T"}
_ORDINAL_RX = re.compile(
    r"\b(" + "|".join(_ORDINALS) + r")\s+(cervical|thoracic|lumbar|sacral)\s+vertebra", re.IGNORECASE
)
_SPAN_RX = re.compile(r"\b(?:BWK|LWK|HWK|Th|[CTLS])\s?\d{1,2}\s?[-–]\s?(?:BWK|LWK|HWK|Th|[CTLS])?\s?\d{1,2}\b", re.I)


def _level(letter: str, number: int) -> str | None:
    letter = letter.upper()
    return f"{letter}{number}" if 1 <= number <= _MAX[letter] else None


def levels_from_text(text: str | None) -> list[str]:
    """Vertebral levels named in free text, cranio-caudal order kept as written ("T12", "Th12", "BWK 12")."""
    if not text:
        return []
    found: list[str] = []
    for m in _ORDINAL_RX.finditer(text):
        lv = _level(_REGION_LETTER[m.group(2).lower()], _ORDINALS[m.group(1).lower()])
        if lv and lv not in found:
            found.append(lv)
    for m in _LEVEL_RX.finditer(text):
        prefix = m.group(1)
        letter = _GERMAN.get(prefix.lower(), prefix)
        lv = _level(letter, int(m.group(2)))
        if lv and lv not in found:
            found.append(lv)
    return found


def region_from_text(text: str | None) -> str | None:
    if not text:
        return None
    t = text.lower()
    for word, region in (("cervical", "cervical"), ("thoracic", "thoracic"), ("lumbar", "lumbar"),
                         ("sacr", "sacral"), ("whole spine", "whole_spine"), ("spine", "whole_spine"),
                         ("vertebra", "whole_spine"), ("wirbels", "whole_spine")):  # fmt: skip
        if word in t:
            return region
    return None


# --------------------------------------------------------------------------- conditions

BONE_METASTASIS_SNOMED = frozenset({"94222008", "94602001"})  # [samples] bone; vertebral column (fhir-data §2.1)
BONE_METASTASIS_ICD10 = ("C79.5", "C795")  # C79.51 bone, C79.52 bone marrow [mCODE-VS]
BRAIN_METASTASIS_SNOMED = frozenset({"94225005"})  # [samples]
BRAIN_METASTASIS_ICD10 = ("C79.3", "C793")  # C79.31 brain [mCODE-VS]
#: Other secondary disorders seen [samples]: liver, axillary LN, lung, the generic root 128462008.
OTHER_SECONDARY_SNOMED = frozenset({"94381002", "94181007", "94391008", "128462008", "1098951000119108"})
#: Synthea "secondary" codes that name the *primary* (fhir-data §2.1): colon, prostate, prostate.
SYNTHEA_PRIMARY_QUIRKS = {"94260004": "colon", "314994000": "prostate", "94503003": "prostate"}
SECONDARY_PROFILES = ("mcode-secondary-cancer-condition",)
PRIMARY_PROFILES = ("mcode-primary-cancer-condition",)
#: mCODE histology extension (STU1–STU4) and the ctm-service defect that uses the ValueSet URL (fhir-data §5).
HISTOLOGY_EXTENSIONS = ("mcode-histology-morphology-behavior",)

# --------------------------------------------------------------------------- observations

ECOG_LOINC = "89247-1"  # [samples], [LOINC]
KPS_LOINC = "89243-0"  # [samples], [LOINC]
#: ECOG answers, LOINC LL529-9: LA9622-7, LA9623-5 [samples]; LA9624-3 … LA9627-6 [LOINC-verify].
ECOG_ANSWERS = {"LA9622-7": 0, "LA9623-5": 1, "LA9624-3": 2, "LA9625-0": 3, "LA9626-8": 4, "LA9627-6": 5}
#: KPS answers: LA29176-7 = 90 [samples]; the rest of LOINC LL4986-7 [LOINC-verify].
KPS_ANSWERS = {
    "LA29175-9": 100, "LA29176-7": 90, "LA29177-5": 80, "LA29178-3": 70, "LA29179-1": 60,
    "LA29180-9": 50, "LA29181-7": 40, "LA29182-5": 30, "LA29183-3": 20, "LA29184-1": 10,
}  # fmt: skip

#: The product's own code system: Observation.code / component.code -> LesionRecord field.
SPINE_COMPONENTS = {
    "pain": "pain",
    "lesion-type": "lesion_type",
    "alignment": "alignment",
    "collapse": "collapse",
    "posterolateral": "posterolateral",
    "bilsky-escc": "bilsky_escc",
}
SPINE_ASSESSMENT_CODES = frozenset({"sins-assessment", "bilsky-escc"})

# --------------------------------------------------------------------------- medications


@dataclass(frozen=True)
class BmaProduct:
    agent: str
    strength_mg: float | None  # the dose one unit of this product gives; None for an ingredient/group
    source: str


#: [RxNorm] fhir-data §2.4.  Denosumab 120 mg (Xgeva) has no RxCUI in the sources: it is read from the display.
BMA_RXNORM: dict[str, BmaProduct] = {
    "77655": BmaProduct("zoledronic_acid", None, "ingredient (OMOP concept set)"),
    "1156253": BmaProduct("zoledronic_acid", None, "Injectable Product (ctm-app Patient02)"),
    "1114085": BmaProduct("zoledronic_acid", 4.0, "100 ML zoledronic acid 0.04 MG/ML Injection (Synthea)"),
    "993452": BmaProduct("denosumab", 60.0, "1 ML denosumab 60 MG/ML Prefilled Syringe, Prolia (Synthea)"),
    "1737449": BmaProduct("pamidronate", 30.0, "10 ML pamidronate disodium 3 MG/ML Injection (Synthea)"),
}
#: Display-text fallback: ingredient names (RxNorm ingredient names).
BMA_NAMES = {"denosumab": "denosumab", "zoledron": "zoledronic_acid", "pamidron": "pamidronate"}
_STRENGTH_RX = re.compile(r"(\d+(?:\.\d+)?)\s*ML\s+\w+(?:\s+\w+)*?\s+(\d+(?:\.\d+)?)\s*MG/ML", re.IGNORECASE)


def strength_from_display(display: str | None) -> float | None:
    """``"1.7 ML denosumab 70 MG/ML Injection"`` -> 119.0 (RxNorm SCD naming: volume x concentration)."""
    if not display:
        return None
    m = _STRENGTH_RX.search(display)
    return round(float(m.group(1)) * float(m.group(2)), 1) if m else None


# --------------------------------------------------------------------------- procedures

#: Radiotherapy procedures [samples]: mCODE STU4 course summary, STU1 radiation procedure, Synthea RT.
RADIOTHERAPY_SNOMED = frozenset(
    {
        "1217123003",
        "53438000",
        "445232009",
        "448385000",
        "33195004",
        "385798007",
        "1287742003",
        "447759004",
        "384692006",
        "113120007",
    }  # fmt: skip
)
#: Spinal surgery has no code in any source (fhir-data §2.5; CPT is AMA-licensed): matched by text.
SURGERY_TEXT = (
    ("kyphoplast", "bkp"),
    ("vertebroplast", "pvp"),
    ("separation surgery", "separation"),
    ("total en bloc spondylectomy", "tes"),  # before "en bloc", which it contains
    ("en bloc", "en_bloc"),
    ("decompression", "decompression_fixation"),
    ("laminectomy", "decompression_fixation"),
    ("fixation", "decompression_fixation"),
    ("stabili", "decompression_fixation"),
    ("corpectomy", "other_spine_surgery"),
    ("spondylectomy", "other_spine_surgery"),
    ("vertebrectomy", "other_spine_surgery"),
)
SBRT_TEXT = ("sbrt", "stereotactic body", "stereotactic ablative", "sabr")
SRS_TEXT = ("radiosurgery", "srs")

# --------------------------------------------------------------------------- imaging

#: [DICOM] CID 29 modality -> product modality.
DICOM_MODALITY = {"MR": "mri", "CT": "ct", "PT": "pet_ct", "NM": "bone_scan", "DX": "xray", "CR": "xray"}
#: Bone scan report LOINC 39638-7 and SNOMED 44491008 (fhir-data §1.1, the Senologie example).
BONE_SCAN_CODES = frozenset({"39638-7", "44491008"})
MODALITY_TEXT = (("pet", "pet_ct"), ("mri", "mri"), ("mrt", "mri"), ("magnetic", "mri"), ("bone scan", "bone_scan"),
                 ("skelettszint", "bone_scan"), ("scintigra", "bone_scan"), ("ct ", "ct"), ("computed tomog", "ct"),
                 ("x-ray", "xray"), ("radiograph", "xray"))  # fmt: skip

# --------------------------------------------------------------------------- the product's own codes and extensions
#
# For facts that no shared source gives a verified standard code for (fhir-data §4: every SRE code is
# "(verify)"; §6: no Frankel/ASIA, ambulation or SINS code; no code for the product's visceral status,
# Cancer Locomo conditions, systemic-therapy classes, dental examinations or cancer-board reviews), the
# export writes the product's own code system and extensions (docs/import-format.md, "The product's
# codes and extensions").  The importer reads them only where they appear, so files from other systems
# import exactly as before.

PRODUCT_BASE = "https://cancer-locomo.example.org/fhir"
#: The product's fact rows (``<table>/<row id>``): every exported resource carries one as an identifier.
ROW_SYSTEM = f"{PRODUCT_BASE}/NamingSystem/row"
#: The product's code system for everything but SINS/ESCC; value codes are the product's tokens.
SURVEILLANCE_CS = f"{PRODUCT_BASE}/CodeSystem/spine-surveillance"
#: Prefix of the product's extension URLs (``<EXT>/<name>``).
EXT = f"{PRODUCT_BASE}/StructureDefinition"

#: Patient extensions: name -> (patient column / PatientRecord field, value[x] type).
PATIENT_EXTENSIONS: dict[str, tuple[str, str]] = {
    "department": ("department", "String"),
    "hormone-dependent": ("hormone_dependent", "Boolean"),
    "molecular-targeted-therapy": ("molecular_targeted_therapy", "Boolean"),
    "previous-chemotherapy": ("previous_chemotherapy", "Boolean"),
    "fit-for-surgery": ("fit_for_surgery", "Boolean"),
    "patient-status": ("status", "Code"),
    "status-date": ("status_on", "Date"),
    "registered-on": ("registered_on", "Date"),
    "zoledronic-regimen": ("zoledronic_regimen", "Code"),
    "bma-not-indicated-reason": ("bma_not_indicated_reason", "String"),
    "denosumab-transition-plan": ("denosumab_transition_plan", "String"),
    "assigned-nurse": ("assigned_nurse", "String"),  # the nurse's user name
    "sex": ("sex", "String"),  # only when the product's sex is written otherwise than the FHIR gender
}

#: Observation ``neuro-status`` components: code -> (neuro_status column, value[x] type).
NEURO_COMPONENTS: dict[str, tuple[str, str]] = {
    "frankel-grade": ("frankel_grade", "CodeableConcept"),
    "ambulatory-status": ("ambulatory_status", "CodeableConcept"),
    "new-deficit": ("new_deficit", "Boolean"),
    "pain-suggests-cord-compression": ("pain_suggests_cord_compression", "Boolean"),
    "new-spinal-pain": ("new_spinal_pain", "Boolean"),
}
#: Observation ``metastatic-status`` components: code -> (metastatic_status column, value[x] type).
METASTATIC_COMPONENTS: dict[str, tuple[str, str]] = {
    "visceral-status": ("visceral_status", "CodeableConcept"),
    "visceral-treatable": ("visceral_treatable", "Boolean"),
    "visceral-removable": ("visceral_removable", "Boolean"),
    "brain-metastases": ("brain_metastases", "Boolean"),
    "extraspinal-bone-metastases": ("extraspinal_bone_metastases", "Integer"),
    "vertebral-body-metastases": ("vertebral_body_metastases", "Integer"),
    "extraspinal-pathological-fracture": ("extraspinal_pathological_fracture", "Boolean"),
}
NEURO_STATUS_CODE = "neuro-status"
METASTATIC_STATUS_CODE = "metastatic-status"
DENTAL_EXAM_CODE = "dental-examination"
BOARD_REVIEW_CODE = "cancer-board-review"
#: Skeletal-related events sent as a Condition (the notes' model, fhir-data §4); the others as a Procedure.
SRE_AS_CONDITION = frozenset(
    {
        "pathological_fracture_vertebral",
        "pathological_fracture_non_vertebral",
        "spinal_cord_compression",
        "hypercalcaemia_of_malignancy",
    }
)


def ext_url(name: str) -> str:
    return f"{EXT}/{name}"


def product_code(concept: dict | None) -> str | None:
    """The code of ``concept`` in the product's :data:`SURVEILLANCE_CS`, if it has one."""
    if not isinstance(concept, dict):
        return None
    for cd in concept.get("coding") or []:
        if isinstance(cd, dict) and cd.get("system") == SURVEILLANCE_CS and cd.get("code"):
            return cd["code"]
    return None


def product_ext(resource: dict, name: str, kind: str | None = None):
    """The value of the product's extension ``name`` on ``resource`` (``None`` when absent)."""
    url = ext_url(name)
    for e in resource.get("extension") or []:
        if isinstance(e, dict) and e.get("url") == url:
            if kind is not None:
                return e.get(f"value{kind}")
            for key, value in e.items():
                if key.startswith("value"):
                    return value
    return None


def has_product_row(resource: dict) -> bool:
    """Whether the resource was written by the product's export (it names the product's row)."""
    return any(isinstance(i, dict) and i.get("system") == ROW_SYSTEM for i in resource.get("identifier") or [])
