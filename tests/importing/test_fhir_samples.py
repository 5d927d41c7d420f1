"""Every FHIR/JSON file of tests/fixtures/fhir-samples (= /work/shared/fhir-samples): imported with what it says, or rejected for its defect.

Expectations come from reading the files (and notes/fhir-data.md, which lists their
defects), not from the importer: e.g. TrialMatching_Patient02 is a breast cancer
patient with bone metastasis, radiotherapy to the lumbar vertebral column on
2019-11-01 and to the right acetabulum on 2019-05-01, zoledronic acid on
2019-06-01 and ECOG 1 on 2019-04-01.
"""

from __future__ import annotations

from datetime import date

import pytest

from surveillance.importing import fhir, import_file
from tests.importing.helpers import NOW, SAMPLES, counts, rows


def _import(engine, relative: str, **kw):
    return import_file(engine, SAMPLES / relative, actor="tester", now=NOW, **kw)


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def test_trial_matching_patient02_breast_bone_mets_rt_lumbar_zoledronic_ecog1(engine):
    result = _import(engine, "ctm-app/TrialMatching_Patient02.json")
    assert result.status == "imported", result.issues
    [p] = rows(engine, "SELECT id, mrn, primary_site, birth_date, sex, status FROM patient")
    assert (p["primary_site"], _day(p["birth_date"]), p["sex"], p["status"]) == (
        "breast",
        date(1973, 1, 1),
        "female",
        "active",
    )
    [bone] = rows(engine, "SELECT condition FROM locomo_condition WHERE patient_id = :p", p=p["id"])
    assert bone["condition"] == "bone_metastasis"
    [rt] = rows(engine, "SELECT kind, modality, level, to_bone, started_on FROM treatment")
    assert (rt["kind"], rt["level"], bool(rt["to_bone"]), _day(rt["started_on"])) == (
        "radiotherapy",
        None,
        True,
        date(2019, 11, 1),
    )
    sres = rows(engine, "SELECT event_type, occurred_on FROM skeletal_event ORDER BY occurred_on")
    assert [(s["event_type"], _day(s["occurred_on"])) for s in sres] == [
        ("radiation_to_bone", date(2019, 5, 1)),  # right acetabulum
        ("radiation_to_bone", date(2019, 11, 1)),  # lumbar vertebral column
    ]
    [bma] = rows(engine, "SELECT agent, dose_mg, given_on, sre_prevention FROM bma_administration")
    assert (bma["agent"], bma["dose_mg"], _day(bma["given_on"])) == ("zoledronic_acid", None, date(2019, 6, 1))
    [ps] = rows(engine, "SELECT ecog, kps, recorded_on FROM performance_status")
    assert (ps["ecog"], ps["kps"], _day(ps["recorded_on"])) == (1, None, date(2019, 4, 1))
    # the breast-RT procedures (right breast structure) are not skeletal events; no unknown dose invented
    assert any("dose is not given" in i.message for i in result.issues)
    # re-scored at once
    assert (
        rows(engine, "SELECT primary_site FROM risk_snapshot WHERE patient_id = :p", p=p["id"])[0]["primary_site"]
        == "breast"
    )


def test_trial_matching_patient01_breast_bone_mets_ecog1_no_bma(engine):
    result = _import(engine, "ctm-app/TrialMatching_Patient01.json")
    assert result.status == "imported", result.issues
    [p] = rows(engine, "SELECT primary_site FROM patient")
    assert p["primary_site"] == "breast"
    assert [r["condition"] for r in rows(engine, "SELECT condition FROM locomo_condition")] == ["bone_metastasis"]
    assert [r["ecog"] for r in rows(engine, "SELECT ecog FROM performance_status")] == [1]
    # palbociclib, ribociclib … are not bone-modifying agents; liver and axillary mets are reported, not stored
    assert counts(engine)["bma_administration"] == 0
    assert any("liver" in i.message and i.severity == "info" for i in result.issues)


def test_patient01_and_02_share_an_untyped_identifier_but_are_two_patients(engine):
    """Both files carry identifier value a123 without an MR type: it is not taken as the MRN."""
    assert _import(engine, "ctm-app/TrialMatching_Patient01.json").status == "imported"
    assert _import(engine, "ctm-app/TrialMatching_Patient02.json").status == "imported"
    assert counts(engine)["patient"] == 2


def test_eom_patient_non_uuid_urn_references_resolve(engine):
    result = _import(engine, "ctm-service/eom_patient_1.json")
    assert result.status == "imported", result.issues
    [p] = rows(engine, "SELECT id, mrn, primary_site FROM patient")
    assert (p["mrn"], p["primary_site"]) == ("Ancora-13", "breast")
    [ps] = rows(engine, "SELECT ecog, recorded_on FROM performance_status")
    assert (ps["ecog"], _day(ps["recorded_on"])) == (3, date(2022, 1, 2))


def test_ctm_service_patient_data_is_rejected_with_entry_level_report(engine):
    before = counts(engine)
    result = _import(engine, "ctm-service/patient_data.json")
    assert result.status == "rejected"
    assert counts(engine) == before
    errors = {(i.entry_index, i.message.split(":")[0]) for i in result.errors}
    # entries 2-4: several value[x] in one Observation (fhir-data §5)
    assert {e for e in errors if e[1] == "not valid FHIR R4"} == {(2, "not valid FHIR R4"), (3, "not valid FHIR R4"),
                                                                   (4, "not valid FHIR R4")}  # fmt: skip
    # entries 23/24 name Patient/mCODEMassiveBioPatientExample1004, which is not in the file
    assert any(i.entry_index == 23 and "unresolved patient reference" in i.message for i in result.errors)
    # duplicates are reported (entries 11-14 and 21 repeat 7-10 and 19)
    duplicates = {i.entry_index for i in result.issues if i.message.startswith("duplicate of entry")}
    assert duplicates == {11, 12, 13, 14, 21}
    assert all("Bundle.entry[" in i.location for i in result.errors)


def test_ctm_service_patient_data_partial_imports_the_valid_entries(engine):
    result = _import(engine, "ctm-service/patient_data.json", partial=True)
    assert result.status == "partial"
    [p] = rows(engine, "SELECT primary_site, birth_date FROM patient")
    assert (p["primary_site"], _day(p["birth_date"])) == ("breast", date(1966, 8, 3))
    assert counts(engine)["performance_status"] == 0  # the ECOG/KPS name a patient that is not there
    assert any("ECOG 3 and KPS 90" in i.message for i in result.issues)  # discordant pair (fhir-data §2.3)


def test_invalid_ecog_and_kps_minus_one_are_rejected(engine):
    result = _import(engine, "ctm-service/patient_data_missing_birthdate_invalid_ecog_karnofsky.json")
    assert result.status == "rejected"
    messages = " | ".join(i.message for i in result.errors)
    assert "ecog: -1 is outside 0–4" in messages and "kps: -1 is outside 10–100" in messages
    assert counts(engine)["patient"] == 0


def test_jenny_m_stu4_bundle_absolute_fullurls(engine):
    result = _import(engine, "mcode-stu4/Bundle-mcode-patient-bundle-jenny-m.json")
    assert result.status == "imported", result.issues
    [p] = rows(engine, "SELECT mrn, primary_site FROM patient")
    assert (p["mrn"], p["primary_site"]) == ("MRN1234", "breast")
    [ps] = rows(engine, "SELECT ecog, recorded_on FROM performance_status")
    assert (ps["ecog"], _day(ps["recorded_on"])) == (0, date(2018, 4, 12))


def test_john_anyperson_resources_one_file_each(engine):
    # a Condition whose patient is neither in the file nor imported before: rejected, said so
    orphan = _import(engine, "mcode-stu4/Condition-primary-cancer-condition-nsclc.json")
    assert orphan.status == "rejected"
    assert "unresolved patient reference 'Patient/cancer-patient-john-anyperson'" in orphan.errors[0].message
    assert _import(engine, "mcode-stu4/Patient-cancer-patient-john-anyperson.json").status == "imported"
    [p] = rows(engine, "SELECT id, mrn, birth_date, sex FROM patient")
    assert (p["mrn"], _day(p["birth_date"]), p["sex"]) == ("m123", date(1951, 1, 20), "male")
    assert _import(engine, "mcode-stu4/Condition-primary-cancer-condition-nsclc.json").status == "imported"
    assert rows(engine, "SELECT primary_site FROM patient")[0]["primary_site"] == "lung_nsclc"
    assert _import(engine, "mcode-stu4/Condition-secondary-cancer-condition-brain-mets.json").status == "imported"
    assert rows(engine, "SELECT brain_metastases FROM metastatic_status")[0]["brain_metastases"] in (True, 1)
    assert _import(engine, "mcode-stu4/Observation-ecog-performance-status-fully-active.json").status == "imported"
    assert _import(engine, "mcode-stu4/Observation-karnofsky-performance-status-normal-activity.json").status == (
        "imported"
    )
    ps = rows(engine, "SELECT ecog, kps FROM performance_status ORDER BY id")
    assert [(r["ecog"], r["kps"]) for r in ps] == [(0, None), (None, 90)]


NOTHING_TO_STORE = [
    "mcode-stu4/BodyStructure-jenny-m-chest-wall-lymph-nodes-treatment-volume.json",
    "mcode-stu4/BodyStructure-jenny-m-chest-wall-treatment-volume.json",
    "mcode-stu4/BodyStructure-john-anyperson-treatment-volume.json",
    "mcode-stu4/BodyStructure-tumor-lobular-carcinoma-left-breast.json",
    "mcode-stu4/MedicationAdministration-a96613ef-89ea-4d90-a41b-30f707492f3e.json",  # cyclophosphamide
    "mcode-stu4/MedicationAdministration-cancer-related-medication-admin-doxorubicin-jenny-m.json",
    "mcode-stu4/MedicationRequest-cancer-related-medication-request-cisplatin-stopped.json",
    "mcode-stu4/Observation-cancer-disease-status-improved.json",
    "mcode-stu4/Observation-histologic-behavior-and-type-non-small-cell.json",
    "mcode-stu4/Observation-history-of-cancer-metastatic-to-liver.json",
    "mcode-stu4/Observation-tumor-size-pathology.json",
    "mcode-stu4/Procedure-cancer-related-surgical-procedure-lobectomy.json",
    "mcode-stu4/Procedure-radiotherapy-treatment-summary-other-with-text.json",  # chest wall: not bone
    "mcode-stu4/terminology/ConceptMap-TG263CM.json",
    "mcode-stu4/terminology/ValueSet-mcode-cancer-body-location-vs.json",
    "mcode-stu4/terminology/ValueSet-mcode-radiotherapy-treatment-location-vs.json",
    "mcode-stu4/terminology/ValueSet-mcode-secondary-cancer-disorder-vs.json",
]


@pytest.mark.parametrize("relative", NOTHING_TO_STORE)
def test_files_without_a_product_fact_parse_to_no_records_and_no_error(relative):
    parsed = fhir.parse(relative, (SAMPLES / relative).read_bytes())
    assert parsed.records == []
    assert [i for i in parsed.issues if i.severity == "error"] == []
    assert parsed.issues, "the report says why nothing was taken"


def test_files_without_a_product_fact_write_nothing(engine):
    for relative in NOTHING_TO_STORE:
        result = _import(engine, relative)
        assert result.status == "unchanged", (relative, result.issues)
    assert counts(engine) == dict.fromkeys(counts(engine), 0)


@pytest.mark.parametrize("relative", sorted(p.name for p in (SAMPLES / "oifm-cde").glob("*.json")))
def test_oifm_definitions_are_not_fhir_and_are_rejected(engine, relative):
    result = _import(engine, f"oifm-cde/{relative}")
    assert result.status == "rejected"
    assert result.errors[0].message == "not a FHIR resource: no resourceType"
