"""Histology normaliser: free text and FHIR codings → ``primary_site`` codes.

Every expectation here was written by hand: the §15 rows from
``shared/clinical-reference.md`` §15 ("Histology (plain name)" column) and the
case-format code list, the FHIR expectations by reading each Condition in
``tests/fixtures/fhir-samples`` (a byte-identical copy of shared/fhir-samples),
the ICD-10 expectations from the ICD-10 category titles.  None is generated from
the module's own tables.
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import pytest

from surveillance.scoring import histology
from surveillance.scoring.histology import (
    TABLE_VERSION,
    HistologyMatch,
    UnknownHistology,
    normalise_histology,
    site_from_coding,
)
from surveillance.scoring.vocab import PrimarySite as P

SAMPLES = Path(__file__).parents[1] / "fixtures" / "fhir-samples"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ALL_CODES = {site.value for site in P}


def _sites(text: str) -> tuple[P, ...]:
    return normalise_histology(text).sites


def _assert_unknown(exc: UnknownHistology, given: str) -> None:
    """The contract of every UnknownHistology: what was given, 'could not be mapped', the nearest codes."""
    assert exc.text == given
    assert 0 < len(exc.suggestions) <= 5
    assert set(exc.suggestions) <= ALL_CODES
    assert len(set(exc.suggestions)) == len(exc.suggestions)
    message = str(exc)
    assert repr(given) in message
    assert "could not be mapped" in message
    assert exc.suggestions[0] in message


# --------------------------------------------------------------------------- #
# §15: every histology row, by its plain name and by an ordinary phrase
# --------------------------------------------------------------------------- #

# (row "Histology (plain name)" of §15, an everyday phrase for it, expected code(s))
SECTION_15 = [
    ("Breast", "breast cancer", (P.BREAST,)),
    ("Prostate", "prostate cancer", (P.PROSTATE,)),
    ("Thyroid (differentiated)", "differentiated thyroid carcinoma", (P.THYROID,)),
    ("Renal cell carcinoma", "carcinoma of the kidney, renal cell type", (P.KIDNEY,)),
    ("Endometrium (uterus)", "endometrial carcinoma", (P.UTERUS,)),
    ("Uterine cervix", "cervical cancer", (P.CERVIX,)),
    ("NSCLC", "non-small cell lung cancer", (P.LUNG_NSCLC,)),
    ("SCLC", "small cell lung cancer", (P.LUNG_SCLC,)),
    ("Hepatocellular", "hepatocellular carcinoma", (P.LIVER,)),
    ("Colon", "colon cancer", (P.COLON,)),
    ("Rectum", "rectal cancer", (P.RECTUM,)),
    ("Stomach", "gastric cancer", (P.STOMACH,)),
    ("Oesophagus", "oesophageal cancer", (P.ESOPHAGUS,)),
    ("Pancreas", "pancreatic cancer", (P.PANCREAS,)),
    ("Bladder / urothelial", "urothelial carcinoma of the bladder", (P.BLADDER,)),
    ("Gallbladder", "gallbladder cancer", (P.GALLBLADDER,)),
    ("Head and neck SCC", "squamous cell carcinoma of the head and neck", (P.HEAD_NECK,)),
    ("Ovary", "ovarian cancer", (P.OVARY,)),
    ("Multiple myeloma", "plasma cell myeloma", (P.MYELOMA,)),
    ("Lymphoma", "malignant lymphoma", (P.LYMPHOMA,)),
    ("Melanoma", "malignant melanoma", (P.MELANOMA,)),
    ("Soft-tissue sarcoma", "soft tissue sarcoma", (P.SOFT_TISSUE_SARCOMA,)),
    ("Osteosarcoma", "osteosarcoma of the femur", (P.OSTEOSARCOMA,)),
    ("Carcinoid / NET", "carcinoid tumour", (P.NEUROENDOCRINE,)),
    ("Seminoma / testis", "testicular seminoma", (P.TESTIS_GERM_CELL,)),
    ("Unknown primary", "cancer of unknown primary", (P.UNKNOWN_PRIMARY,)),
]


def test_section_15_is_transcribed_completely():
    # §15 has 26 histology rows; every controlled code except `other` appears once.
    assert len(SECTION_15) == 26
    named = {site for _row, _phrase, sites in SECTION_15 for site in sites}
    assert named == set(P) - {P.OTHER}


@pytest.mark.parametrize(("row", "phrase", "expected"), SECTION_15, ids=[r[0] for r in SECTION_15])
def test_every_section_15_histology_maps(row, phrase, expected):
    assert _sites(row) == expected
    assert _sites(phrase) == expected


@pytest.mark.parametrize("code", [site.value for site in P])
def test_an_exact_code_is_accepted_as_a_code(code):
    match = normalise_histology(code)
    assert match == HistologyMatch((P(code),), code, "code")
    assert normalise_histology(f"  {code.upper()} ").source == "code"


# --------------------------------------------------------------------------- #
# The phrasing of real notes, abbreviations, Japanese
# --------------------------------------------------------------------------- #

NOTE_PHRASES = [
    ("breast carcinoma (ER/PR positive)", (P.BREAST,)),
    ("renal cell carcinoma (clear cell)", (P.KIDNEY,)),
    ("non-small cell lung squamous carcinoma", (P.LUNG_NSCLC,)),
    ("squamous cell carcinoma of the uterine cervix", (P.CERVIX,)),
    ("carcinoma of unknown primary", (P.UNKNOWN_PRIMARY,)),
    ("pancreatic ductal adenocarcinoma", (P.PANCREAS,)),
    ("hepatocellular carcinoma", (P.LIVER,)),
    ("colon adenocarcinoma", (P.COLON,)),
    ("cutaneous melanoma", (P.MELANOMA,)),
    ("multiple myeloma", (P.MYELOMA,)),
    ("prostate adenocarcinoma (hormone-sensitive)", (P.PROSTATE,)),
    ("Breast Cancer", (P.BREAST,)),
    ("Prostate Cancer", (P.PROSTATE,)),
    ("Malignant neoplasm of breast (disorder)", (P.BREAST,)),
    ("Infiltrating duct carcinoma of breast (disorder)", (P.BREAST,)),
    ("Adenocarcinoma of lung, stage IV", (P.LUNG_NSCLC,)),
    ("lung cancer (adenocarcinoma)", (P.LUNG_NSCLC,)),
    ("Small cell carcinoma of lung (disorder)", (P.LUNG_SCLC,)),
    ("urothelial carcinoma of the renal pelvis", (P.BLADDER,)),
    ("gall bladder carcinoma", (P.GALLBLADDER,)),
    ("gastric lymphoma", (P.LYMPHOMA,)),
    ("pancreatic neuroendocrine tumour", (P.NEUROENDOCRINE,)),
    ("uterine leiomyosarcoma", (P.SOFT_TISSUE_SARCOMA,)),
    ("HER2-positive gastric cancer", (P.STOMACH,)),
    ("castration-resistant prostate cancer", (P.PROSTATE,)),
    ("ＢＲＥＡＳＴ　ＣＡＮＣＥＲ", (P.BREAST,)),  # full-width letters and space
    ("Breast   cancer!!", (P.BREAST,)),
]


@pytest.mark.parametrize(("text", "expected"), NOTE_PHRASES)
def test_note_phrasing(text, expected):
    match = normalise_histology(text)
    assert match.sites == expected
    assert match.source == "text"
    assert match.matched_term


ABBREVIATIONS = [
    ("NSCLC", (P.LUNG_NSCLC,)),
    ("SCLC", (P.LUNG_SCLC,)),
    ("RCC", (P.KIDNEY,)),
    ("ccRCC", (P.KIDNEY,)),
    ("HCC", (P.LIVER,)),
    ("CRPC", (P.PROSTATE,)),
    ("mCRPC", (P.PROSTATE,)),
    ("mHSPC", (P.PROSTATE,)),
    ("TNBC", (P.BREAST,)),
    ("HR+ breast", (P.BREAST,)),
    ("NET", (P.NEUROENDOCRINE,)),
    ("GIST", (P.SOFT_TISSUE_SARCOMA,)),  # decision: mesenchymal, scored as soft-tissue sarcoma
    ("CUP", (P.UNKNOWN_PRIMARY,)),
    ("SCC of head and neck", (P.HEAD_NECK,)),
    ("HNSCC", (P.HEAD_NECK,)),
    ("MM", (P.MYELOMA,)),
    ("DLBCL", (P.LYMPHOMA,)),
    ("Hodgkin lymphoma", (P.LYMPHOMA,)),
    ("Hodgkin's disease", (P.LYMPHOMA,)),
    ("NHL", (P.LYMPHOMA,)),
]


@pytest.mark.parametrize(("text", "expected"), ABBREVIATIONS)
def test_abbreviations(text, expected):
    assert _sites(text) == expected


def test_gist_decision_is_explained():
    assert "sarcoma" in normalise_histology("GIST").note


JAPANESE = [
    ("非小細胞肺癌", (P.LUNG_NSCLC,)),
    ("小細胞肺癌", (P.LUNG_SCLC,)),
    ("乳癌", (P.BREAST,)),
    ("乳がん", (P.BREAST,)),
    ("乳ガン", (P.BREAST,)),
    ("前立腺癌", (P.PROSTATE,)),
    ("前立腺がん", (P.PROSTATE,)),
    ("腎細胞癌", (P.KIDNEY,)),
    ("腎癌", (P.KIDNEY,)),
    ("肝細胞癌", (P.LIVER,)),
    ("肝癌", (P.LIVER,)),
    ("結腸癌", (P.COLON,)),
    ("直腸癌", (P.RECTUM,)),
    ("胃癌", (P.STOMACH,)),
    ("胃がん", (P.STOMACH,)),
    ("食道癌", (P.ESOPHAGUS,)),
    ("膵癌", (P.PANCREAS,)),
    ("膵臓癌", (P.PANCREAS,)),
    ("膵臓がん", (P.PANCREAS,)),
    ("胆嚢癌", (P.GALLBLADDER,)),
    ("膀胱癌", (P.BLADDER,)),
    ("子宮体癌", (P.UTERUS,)),
    ("子宮頸癌", (P.CERVIX,)),
    ("卵巣癌", (P.OVARY,)),
    ("甲状腺癌", (P.THYROID,)),
    ("頭頸部癌", (P.HEAD_NECK,)),
    ("多発性骨髄腫", (P.MYELOMA,)),
    ("悪性リンパ腫", (P.LYMPHOMA,)),
    ("悪性黒色腫", (P.MELANOMA,)),
    ("軟部肉腫", (P.SOFT_TISSUE_SARCOMA,)),
    ("骨肉腫", (P.OSTEOSARCOMA,)),
    ("神経内分泌腫瘍", (P.NEUROENDOCRINE,)),
    ("カルチノイド", (P.NEUROENDOCRINE,)),
    ("精巣腫瘍", (P.TESTIS_GERM_CELL,)),
    ("胚細胞腫瘍", (P.TESTIS_GERM_CELL,)),
    ("原発不明癌", (P.UNKNOWN_PRIMARY,)),
    ("原発不明がん", (P.UNKNOWN_PRIMARY,)),
    ("乳癌骨転移", (P.BREAST,)),  # breast cancer, bone metastasis: the bone is relocated
    ("ｶﾙﾁﾉｲﾄﾞ", (P.NEUROENDOCRINE,)),  # half-width katakana
]


@pytest.mark.parametrize(("text", "expected"), JAPANESE)
def test_japanese_names(text, expected):
    assert _sites(text) == expected


def test_japanese_near_misses_are_not_confused():
    # 軟骨肉腫 (chondrosarcoma) contains 骨肉腫 (osteosarcoma); 副腎癌 (adrenal) contains 腎癌 (kidney).
    assert _sites("軟骨肉腫") == (P.OTHER,)
    with pytest.raises(UnknownHistology):
        normalise_histology("副腎癌")
    # 前立腺肥大 is benign prostatic hyperplasia, not cancer.
    with pytest.raises(UnknownHistology):
        normalise_histology("前立腺肥大")


# --------------------------------------------------------------------------- #
# Families
# --------------------------------------------------------------------------- #

FAMILIES = [
    ("Lung Cancer", (P.LUNG_NSCLC, P.LUNG_SCLC)),
    ("lung cancer", (P.LUNG_NSCLC, P.LUNG_SCLC)),
    ("肺癌", (P.LUNG_NSCLC, P.LUNG_SCLC)),
    ("肺がん", (P.LUNG_NSCLC, P.LUNG_SCLC)),
    ("colorectal cancer", (P.COLON, P.RECTUM)),
    ("大腸癌", (P.COLON, P.RECTUM)),
    ("rectosigmoid carcinoma", (P.COLON, P.RECTUM)),
    ("uterine cancer", (P.UTERUS, P.CERVIX)),
    ("子宮癌", (P.UTERUS, P.CERVIX)),
    ("子宮がん", (P.UTERUS, P.CERVIX)),
    ("sarcoma", (P.SOFT_TISSUE_SARCOMA, P.OSTEOSARCOMA)),
    ("medullary thyroid carcinoma", (P.THYROID, P.NEUROENDOCRINE)),
]


@pytest.mark.parametrize(("text", "expected"), FAMILIES)
def test_families_return_several_sites_with_a_note(text, expected):
    match = normalise_histology(text)
    assert match.sites == expected
    assert match.note


def test_two_primaries_named_are_both_kept():
    match = normalise_histology("breast cancer and lymphoma")
    assert match.sites == (P.BREAST, P.LYMPHOMA)
    assert "several" in match.note


# --------------------------------------------------------------------------- #
# Words that relocate or negate a site
# --------------------------------------------------------------------------- #

RELOCATED = [
    ("metastatic to bone from breast", (P.BREAST,)),
    ("breast cancer with bone metastases", (P.BREAST,)),
    ("cervical spine metastases from breast cancer", (P.BREAST,)),
    ("lung metastasis from renal cell carcinoma", (P.KIDNEY,)),
    ("prostate cancer metastatic to the lumbar spine", (P.PROSTATE,)),
    ("Metastasis from malignant tumor of prostate (disorder)", (P.PROSTATE,)),
    ("metastatic breast cancer", (P.BREAST,)),
    ("pathological fracture secondary to breast cancer", (P.BREAST,)),
    ("breast cancer, no bone lesions", (P.BREAST,)),
    ("family history of prostate cancer, lung adenocarcinoma", (P.LUNG_NSCLC,)),
    ("ruled out lymphoma; multiple myeloma", (P.MYELOMA,)),
    ("肝細胞癌の肺転移", (P.LIVER,)),
]


@pytest.mark.parametrize(("text", "expected"), RELOCATED)
def test_relocating_and_negating_words_do_not_fool_it(text, expected):
    assert _sites(text) == expected


SECONDARY_TEXT = [
    "secondary malignant neoplasm of bone",
    "Secondary malignant neoplasm of bone (disorder)",
    "Secondary malignant neoplastic disease",
    "Metastatic malignant neoplasm to colon",
    "bone metastases",
    "spinal metastasis",
    "metastatic bone disease",
    "転移性骨腫瘍",
    "転移性肺癌",  # metastatic tumour *in* the lung
]


@pytest.mark.parametrize("text", SECONDARY_TEXT)
def test_a_secondary_site_is_not_a_primary(text):
    with pytest.raises(UnknownHistology) as info:
        normalise_histology(text)
    _assert_unknown(info.value, text)
    assert "secondary" in str(info.value)
    assert "not a primary" in str(info.value)
    assert info.value.suggestions[0] == "unknown_primary"


# --------------------------------------------------------------------------- #
# What cannot be mapped
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "text",
    [
        "banana",
        "xyz carcinoma",
        "carcinoma",
        "adenocarcinoma",
        "no evidence of disease",
        "バナナ",
        "tumour of uncertain behaviour",
    ],
)
def test_unmappable_text_raises_with_the_nearest_codes(text):
    with pytest.raises(UnknownHistology) as info:
        normalise_histology(text)
    _assert_unknown(info.value, text)
    assert "other" not in info.value.suggestions[:1]  # never `other` as a fallback


def test_empty_text_raises():
    for text in ("", "   "):
        with pytest.raises(UnknownHistology) as info:
            normalise_histology(text)
        assert info.value.text == text
        assert set(info.value.suggestions) <= ALL_CODES
        assert "could not be mapped" in str(info.value)


def test_unknown_histology_is_a_value_error():
    assert issubclass(UnknownHistology, ValueError)


def test_a_bone_primary_without_histology_raises_with_bone_suggestions():
    with pytest.raises(UnknownHistology) as info:
        normalise_histology("Malignant neoplasm of bone")
    _assert_unknown(info.value, "Malignant neoplasm of bone")
    assert info.value.suggestions[:2] == ["osteosarcoma", "other"]


OTHER_HISTOLOGIES = [
    "cholangiocarcinoma",
    "malignant pleural mesothelioma",
    "thymoma",
    "acute myeloid leukaemia",
    "Ewing sarcoma",
    "chondrosarcoma",
    "glioblastoma",
    "adrenocortical carcinoma",
    "squamous cell carcinoma of the anal canal",
    "Merkel cell carcinoma",
    "anaplastic thyroid carcinoma",
]


@pytest.mark.parametrize("text", OTHER_HISTOLOGIES)
def test_other_only_for_recognised_histologies_no_system_names(text):
    match = normalise_histology(text)
    assert match.sites == (P.OTHER,)
    assert match.note


def test_chronic_lymphocytic_leukaemia_is_scored_as_lymphoma():
    match = normalise_histology("chronic lymphocytic leukaemia")
    assert match.sites == (P.LYMPHOMA,)
    assert "lymphoma" in match.note


# --------------------------------------------------------------------------- #
# FHIR samples: every Condition in every file
# --------------------------------------------------------------------------- #

# Read from each file by hand: (file, Condition.id) → expected primary_site code(s).
FHIR_PRIMARY = {
    ("ctm-app/TrialMatching_Patient01.json", "mCODETrialMatchingPrimaryCancerConditionExample01"): (P.BREAST,),
    ("ctm-app/TrialMatching_Patient02.json", "mCODETrialMatchingPrimaryCancerConditionPatientExample02"): (P.BREAST,),
    ("ctm-service/eom_patient_1.json", "conditionId-1"): (P.BREAST,),
    ("ctm-service/patient_data.json", "4dee068c-5ffe-4977-8677-4ff9b518e763"): (P.BREAST,),
    (
        "ctm-service/patient_data_missing_birthdate_invalid_ecog_karnofsky.json",
        "4dee068c-5ffe-4977-8677-4ff9b518e763",
    ): (P.BREAST,),
    ("mcode-stu4/Bundle-mcode-patient-bundle-jenny-m.json", "primary-cancer-condition-jenny-m"): (P.BREAST,),
    ("mcode-stu4/Condition-primary-cancer-condition-nsclc.json", "primary-cancer-condition-nsclc"): (P.LUNG_NSCLC,),
}
# Secondary cancer Conditions (bone, liver, axillary nodes, lung, brain, generic): must not map.
FHIR_SECONDARY = {
    ("ctm-app/TrialMatching_Patient01.json", "mCODETrialMatchingSecondaryCancerConditionPatientExample01"),
    ("ctm-app/TrialMatching_Patient01.json", "mCODETrialMatchingSecondaryCancerCondition02PatientExample01"),
    ("ctm-app/TrialMatching_Patient01.json", "mCODETrialMatchingSecondaryCancerCondition03PatientExample01"),
    ("ctm-app/TrialMatching_Patient02.json", "mCODETrialMatchingSecondaryCancerConditionPatientExample02"),
    ("ctm-service/eom_patient_1.json", "conditionId-2"),
    # code 128462008 although its code.text says "Malignant neoplasm of breast"
    ("ctm-service/patient_data.json", "4dee068c-5ffe-4977-8677-4ff9b518e763x"),
    ("mcode-stu4/Condition-secondary-cancer-condition-brain-mets.json", "secondary-cancer-condition-brain-mets"),
}
# condition-information.csv: generic SNOMED 363346000 with a free-text displayName.
CSV_EXPECTED = {
    "conditionId-1": (P.BREAST,),  # "Breast Cancer"
    "conditionId-2": (P.PROSTATE,),  # "Prostate Cancer"
    "conditionId-3": (P.LUNG_NSCLC, P.LUNG_SCLC),  # "Lung Cancer": subtype not stated
}


def _conditions(node):
    if isinstance(node, dict):
        if node.get("resourceType") == "Condition":
            yield node
        for value in node.values():
            yield from _conditions(value)
    elif isinstance(node, list):
        for value in node:
            yield from _conditions(value)


def _sample_conditions():
    # The fixtures are part of the repository: a missing folder is a failure, not a skip.
    assert SAMPLES.is_dir(), f"FHIR samples not found at {SAMPLES}"
    found = []
    for path in sorted(SAMPLES.rglob("*.json")):
        for condition in _conditions(json.loads(path.read_text(encoding="utf-8"))):
            found.append((path.relative_to(SAMPLES).as_posix(), condition))
    return found


def _kind(condition) -> str:
    profiles = " ".join(condition.get("meta", {}).get("profile", []))
    if "primary-cancer-condition" in profiles:
        return "primary"
    if "secondary-cancer-condition" in profiles:
        return "secondary"
    return "unprofiled"


def test_every_condition_in_the_samples_is_listed_here():
    seen = {(name, c["id"]): _kind(c) for name, c in _sample_conditions()}
    assert {k for k, kind in seen.items() if kind == "primary"} == set(FHIR_PRIMARY)
    assert {k for k, kind in seen.items() if kind == "secondary"} == FHIR_SECONDARY
    assert [k for k, kind in seen.items() if kind == "unprofiled"] == []


def test_every_primary_cancer_condition_in_the_samples_maps():
    checked = 0
    for name, condition in _sample_conditions():
        if _kind(condition) != "primary":
            continue
        expected = FHIR_PRIMARY[(name, condition["id"])]
        codings = condition["code"]["coding"]
        for coding in codings:
            match = site_from_coding(coding["system"], coding["code"], coding.get("display"))
            assert match.sites == expected, (name, coding)
            assert match.source == "snomed"
            # and without the display: the code alone is enough for these concepts
            assert site_from_coding(coding["system"], coding["code"]).sites == expected
            checked += 1
    assert checked == 7


def test_every_secondary_cancer_condition_in_the_samples_raises():
    checked = 0
    for name, condition in _sample_conditions():
        if _kind(condition) != "secondary":
            continue
        for coding in condition["code"]["coding"]:
            with pytest.raises(UnknownHistology) as info:
                site_from_coding(coding["system"], coding["code"], coding.get("display"))
            assert "secondary" in str(info.value), name
            assert info.value.suggestions == ["unknown_primary"]
            checked += 1
    assert checked == 8  # patient_data.json holds the 128462008 Condition twice


def test_every_condition_row_of_the_csv_maps_through_its_display_text():
    path = SAMPLES / "mcode-extraction-csv" / "condition-information.csv"
    assert path.exists(), f"{path} not found"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("conditionId")]
    assert {row["conditionId"] for row in rows} == set(CSV_EXPECTED)
    for row in rows:
        assert row["code"] == "363346000"
        match = site_from_coding(row["codeSystem"], row["code"], row["displayName"])
        assert match.sites == CSV_EXPECTED[row["conditionId"]], row
        assert "363346000" in match.note and "generic" in match.note


def test_a_generic_code_without_display_raises():
    with pytest.raises(UnknownHistology) as info:
        site_from_coding(SNOMED, "363346000")
    _assert_unknown(info.value, "363346000")
    assert "generic" in str(info.value)


# --------------------------------------------------------------------------- #
# SNOMED CT beyond the samples
# --------------------------------------------------------------------------- #

SNOMED_CASES = [
    ("399068003", (P.PROSTATE,)),  # Malignant tumor of prostate (Synthea prostate module)
    ("93761005", (P.COLON,)),  # Primary malignant neoplasm of colon (Synthea)
    ("363406005", (P.COLON,)),  # Malignant tumor of colon (Synthea)
    ("254632001", (P.LUNG_SCLC,)),  # Small cell carcinoma of lung (Synthea)
    ("423121009", (P.LUNG_NSCLC,)),  # NSCLC TNM stage 4 (Synthea)
    ("67841000119103", (P.LUNG_SCLC,)),  # Primary SCLC TNM stage 4 (Synthea)
    ("93880001", (P.LUNG_NSCLC, P.LUNG_SCLC)),  # Primary malignant neoplasm of lung: subtype unknown
]


@pytest.mark.parametrize(("code", "expected"), SNOMED_CASES)
def test_snomed_codes(code, expected):
    match = site_from_coding(SNOMED, code)
    assert match.sites == expected
    assert match.source == "snomed"
    assert code in match.matched_term


@pytest.mark.parametrize(
    ("code", "expected"), [("94260004", (P.COLON,)), ("314994000", (P.PROSTATE,)), ("94503003", (P.PROSTATE,))]
)
def test_synthea_secondary_as_primary_quirk(code, expected):
    # notes/fhir-data.md §2.1: Synthea codes these primaries with secondary-neoplasm concepts.
    match = site_from_coding(SNOMED, code, "whatever the display says")
    assert match.sites == expected
    assert "quirk" in match.note.lower()


SECONDARY_SNOMED = ["94222008", "128462008", "94225005", "94381002", "94181007", "94391008"]


@pytest.mark.parametrize("code", SECONDARY_SNOMED)
@pytest.mark.parametrize("system", [SNOMED, "SNOMED", "sct"])
def test_secondary_snomed_codes_raise(system, code):
    with pytest.raises(UnknownHistology) as info:
        site_from_coding(system, code, "Malignant neoplasm of breast")  # the display cannot overrule the code
    _assert_unknown(info.value, code)
    assert "secondary" in str(info.value) and "not a primary" in str(info.value)


def test_an_unlisted_snomed_code_falls_back_to_its_display():
    match = site_from_coding(SNOMED, "109989006", "Multiple myeloma (disorder)")
    assert match.sites == (P.MYELOMA,)
    assert match.source == "text"
    assert "109989006" in match.note
    with pytest.raises(UnknownHistology) as info:
        site_from_coding(SNOMED, "109989006")
    _assert_unknown(info.value, "109989006")
    with pytest.raises(UnknownHistology) as info:
        site_from_coding(SNOMED, "94602001", "Secondary malignant neoplasm of vertebral column")
    assert "secondary" in str(info.value)


def test_a_malformed_snomed_code_raises():
    with pytest.raises(UnknownHistology) as info:
        site_from_coding(SNOMED, "C50.9")
    _assert_unknown(info.value, "C50.9")


# --------------------------------------------------------------------------- #
# ICD-10 / ICD-10-CM
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("system", [ICD10, ICD10CM, "icd-10", "ICD10", "ICD-10-CM", "icd10cm"])
@pytest.mark.parametrize("code", ["C50.9", "c509", "C50", "c50.9", " C50.911 ", "C50.912"])
def test_icd10_spellings(system, code):
    match = site_from_coding(system, code)
    assert match.sites == (P.BREAST,)
    assert match.source == "icd10"


ICD10_CASES = [
    ("C00.0", (P.HEAD_NECK,)),
    ("C09.9", (P.HEAD_NECK,)),
    ("C14.0", (P.HEAD_NECK,)),
    ("C32.9", (P.HEAD_NECK,)),
    ("C15.9", (P.ESOPHAGUS,)),
    ("C16.9", (P.STOMACH,)),
    ("C18.7", (P.COLON,)),
    ("C19", (P.COLON, P.RECTUM)),
    ("C20", (P.RECTUM,)),
    ("C22.0", (P.LIVER,)),
    ("C23", (P.GALLBLADDER,)),
    ("C25.0", (P.PANCREAS,)),
    ("C25.4", (P.NEUROENDOCRINE,)),
    ("C34.1", (P.LUNG_NSCLC, P.LUNG_SCLC)),
    ("C34.90", (P.LUNG_NSCLC, P.LUNG_SCLC)),
    ("C43.5", (P.MELANOMA,)),
    ("C49.2", (P.SOFT_TISSUE_SARCOMA,)),
    ("C50.4", (P.BREAST,)),
    ("C53.9", (P.CERVIX,)),
    ("C54.1", (P.UTERUS,)),
    ("C55", (P.UTERUS,)),
    ("C56.9", (P.OVARY,)),
    ("C61", (P.PROSTATE,)),
    ("C62.9", (P.TESTIS_GERM_CELL,)),
    ("C64.1", (P.KIDNEY,)),
    ("C65.9", (P.BLADDER,)),
    ("C66", (P.BLADDER,)),
    ("C67.9", (P.BLADDER,)),
    ("C68.0", (P.BLADDER,)),
    ("C73", (P.THYROID,)),
    ("C7A.010", (P.NEUROENDOCRINE,)),
    ("C80.1", (P.UNKNOWN_PRIMARY,)),
    ("C80.0", (P.UNKNOWN_PRIMARY,)),
    ("C81.9", (P.LYMPHOMA,)),
    ("C83.3", (P.LYMPHOMA,)),
    ("C85.9", (P.LYMPHOMA,)),
    ("C88.0", (P.LYMPHOMA,)),
    ("C90.0", (P.MYELOMA,)),
    ("C90.00", (P.MYELOMA,)),
    ("C22.1", (P.OTHER,)),
    ("C92.0", (P.OTHER,)),
    ("C45.0", (P.OTHER,)),
]


@pytest.mark.parametrize(("code", "expected"), ICD10_CASES)
def test_icd10_categories(code, expected):
    assert site_from_coding(ICD10, code).sites == expected


@pytest.mark.parametrize("code", ["C19", "C34.9"])
def test_icd10_families_carry_a_note(code):
    assert site_from_coding(ICD10CM, code).note


@pytest.mark.parametrize("code", ["C77.0", "C78.7", "C79.5", "C79.51", "c7951", "C79.52", "C7B.03"])
def test_icd10_secondary_codes_raise(code):
    with pytest.raises(UnknownHistology) as info:
        site_from_coding(ICD10CM, code)
    _assert_unknown(info.value, code)
    assert "secondary" in str(info.value) and "not a primary" in str(info.value)


def test_icd10_bone_needs_the_histology():
    with pytest.raises(UnknownHistology) as info:
        site_from_coding(ICD10, "C41.2", "Malignant neoplasm of vertebral column")
    _assert_unknown(info.value, "C41.2")
    assert info.value.suggestions[:2] == ["osteosarcoma", "other"]
    match = site_from_coding(ICD10, "C40.2", "Osteosarcoma of distal femur")
    assert match.sites == (P.OSTEOSARCOMA,)
    assert site_from_coding(ICD10, "C41.4", "Ewing sarcoma of pelvis").sites == (P.OTHER,)
    # a display naming something that is not a bone tumour does not overrule the bone code
    with pytest.raises(UnknownHistology):
        site_from_coding(ICD10, "C41.2", "Breast cancer")


@pytest.mark.parametrize("code", ["C22.9", "C22", "C22.7", "C97"])
def test_icd10_codes_that_do_not_name_a_primary_histology_raise(code):
    with pytest.raises(UnknownHistology) as info:
        site_from_coding(ICD10CM, code, "Malignant neoplasm of liver")
    _assert_unknown(info.value, code)


@pytest.mark.parametrize("code", ["D05.1", "Z85.3", "D48.6"])
def test_icd10_codes_outside_malignant_neoplasms_raise(code):
    with pytest.raises(UnknownHistology) as info:
        site_from_coding(ICD10, code)
    _assert_unknown(info.value, code)


def test_icd10_code_outside_the_table_uses_the_display():
    assert site_from_coding(ICD10, "C17.9", "Carcinoid tumour of small intestine").sites == (P.NEUROENDOCRINE,)
    with pytest.raises(UnknownHistology) as info:
        site_from_coding(ICD10, "C17.9")
    _assert_unknown(info.value, "C17.9")


def test_malformed_icd10_code_raises():
    for code in ("50.9", "CC50", "breast", ""):
        with pytest.raises(UnknownHistology):
            site_from_coding(ICD10, code)


def test_unsupported_system_uses_the_display_or_raises():
    match = site_from_coding("http://loinc.org", "44667-4", "Breast cancer")
    assert match.sites == (P.BREAST,) and match.source == "text"
    with pytest.raises(UnknownHistology) as info:
        site_from_coding("http://loinc.org", "44667-4")
    _assert_unknown(info.value, "44667-4")


# --------------------------------------------------------------------------- #
# Module properties
# --------------------------------------------------------------------------- #


def test_match_is_immutable():
    match = normalise_histology("breast")
    with pytest.raises(AttributeError):
        match.sites = (P.PROSTATE,)  # type: ignore[misc]
    assert all(isinstance(site, P) for site in normalise_histology("colorectal cancer").sites)


def test_table_version_is_declared():
    assert isinstance(TABLE_VERSION, str) and TABLE_VERSION
    assert histology.__doc__ and "Sources" in histology.__doc__


def test_imports_only_the_standard_library_and_vocab():
    tree = ast.parse(Path(histology.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported <= {
        "__future__",
        "difflib",
        "re",
        "unicodedata",
        "dataclasses",
        "functools",
        "surveillance.scoring.vocab",
    }


def test_the_literal_prefilter_never_changes_a_result(monkeypatch):
    # The module skips a rule's regex unless one of its literals is present; with every rule
    # searched unconditionally, every phrase of this file must give the same answer.
    corpus = [text for text, *_ in NOTE_PHRASES + ABBREVIATIONS + JAPANESE + FAMILIES + RELOCATED]
    corpus += [row for row, _phrase, _sites in SECTION_15] + [phrase for _row, phrase, _sites in SECTION_15]
    corpus += SECONDARY_TEXT + OTHER_HISTOLOGIES + ["banana", "xyz carcinoma", "Malignant neoplasm of bone"]
    match = histology._match_text.__wrapped__
    gated = [match(text) for text in corpus]

    def unconditional(entries):
        return histology._Index({}, (), (), {}, frozenset(range(len(entries))))

    monkeypatch.setattr(histology, "_SEGMENT_INDEX", unconditional(histology._SEGMENT_ENTRIES))
    monkeypatch.setattr(histology, "_CROSS_INDEX", unconditional(histology._CROSS_ENTRIES))
    assert [match(text) for text in corpus] == gated


def test_diagnosis_qualifiers_are_reported():
    assert "in-situ" in normalise_histology("ductal carcinoma in situ of the breast").note
    assert "suspected" in normalise_histology("suspected lung cancer").note
    poorly = normalise_histology("poorly differentiated thyroid carcinoma")
    assert poorly.sites == (P.THYROID, P.OTHER) and poorly.note
