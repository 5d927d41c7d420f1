"""Transactions, partial imports, idempotency, re-scoring, audit and the mappings the samples lack."""

from __future__ import annotations

import json

from surveillance.importing import codes, import_file
from tests.importing.helpers import NOW, SAMPLES, bundle, counts, ecog, patient, rows

SNOMED = "http://snomed.info/sct"
SPINE = codes.SPINE_CS


def _imp(engine, data: bytes, **kw):
    return import_file(engine, data, name="test.json", actor="tester", now=NOW, **kw)


def test_one_bad_entry_rejects_the_whole_file_and_partial_imports_the_rest(engine):
    data = bundle(patient(), ecog("e-good", 2), ecog("e-bad", 7, day="2026-10-02"))
    before = counts(engine)
    rejected = _imp(engine, data)
    assert rejected.status == "rejected"
    assert counts(engine) == before
    [error] = rejected.errors
    assert (error.entry_index, error.location) == (2, "Bundle.entry[2].resource(Observation/e-bad)")
    assert "ecog: 7 is outside 0–4" in error.message
    assert rows(engine, "SELECT status FROM import_batch") == [{"status": "rejected"}]

    partial = _imp(engine, data, partial=True)
    assert partial.status == "partial"
    assert [r["ecog"] for r in rows(engine, "SELECT ecog FROM performance_status")] == [2]
    assert counts(engine)["patient"] == 1


def test_reimport_changes_nothing_by_hash_and_by_source_ids(engine):
    path = SAMPLES / "ctm-app/TrialMatching_Patient02.json"
    first = import_file(engine, path, actor="tester", now=NOW)
    assert first.status == "imported"
    after_first = counts(engine)
    again = import_file(engine, path, actor="tester", now=NOW)
    assert again.status == "unchanged"
    assert counts(engine) == after_first
    # the same content re-serialised (another SHA-256) is still recognised by its source ids
    other_bytes = json.dumps(json.loads(path.read_bytes()), indent=1).encode()
    third = _imp(engine, other_bytes)
    assert third.status == "unchanged", third.issues
    assert counts(engine) == after_first
    batches = rows(engine, "SELECT file_sha256, status FROM import_batch ORDER BY id")
    assert [b["status"] for b in batches] == ["imported", "unchanged", "unchanged"]
    assert batches[0]["file_sha256"] == first.file_sha256 and len(first.file_sha256) == 64


def test_imported_patients_are_rescored_and_the_import_is_audited(engine):
    result = _imp(engine, bundle(patient(), ecog("e1", 1)))
    [pid] = result.patient_ids
    [snap] = rows(engine, "SELECT patient_id, run_id FROM risk_snapshot")
    assert snap["patient_id"] == pid
    [event] = rows(engine, "SELECT actor, action, target, detail FROM audit_event WHERE action = 'import.file'")
    assert event["actor"] == "tester"
    assert event["target"] == f"import_batch:{result.batch_id}"
    assert json.loads(event["detail"])["file_sha256"] == result.file_sha256


def test_unresolved_references_and_conflicting_duplicates_are_reported(engine):
    stray = ecog("e2", 1, pid="nobody")
    dup_a = ecog("e3", 1)
    dup_b = dict(ecog("e3", 2))
    result = _imp(engine, bundle(patient(), stray, dup_a, dup_b))
    assert result.status == "rejected"
    messages = {i.entry_index: i.message for i in result.errors}
    assert "unresolved patient reference 'Patient/nobody'" in messages[1]
    assert "Observation/e3 appears again (entry 2) with different content" in messages[3]


def test_vertebral_levels_from_both_snomed_families_and_free_text(engine):
    bone_mets = {
        "resourceType": "Condition",
        "id": "c1",
        "code": {"coding": [{"system": SNOMED, "code": "94222008"}]},
        "bodySite": [
            {"coding": [{"system": SNOMED, "code": "280849005"}]},  # body of T12 (TG-263)
            {"coding": [{"system": SNOMED, "code": "66794005"}]},  # bone structure of L1 (second family)
            {"text": "LWK 3"},
        ],
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2026-09-01",
    }
    bone_scan = {
        "resourceType": "DiagnosticReport",
        "id": "d1",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "39638-7"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-09-10",
        "conclusion": "Ossäre Metastase BWK 12 und Th 9",
        "conclusionCode": [{"coding": [{"system": SNOMED, "code": "94222008"}]}],
    }
    result = _imp(engine, bundle(patient(), bone_mets, bone_scan))
    assert result.status == "imported", result.issues
    levels = sorted(r["level"] for r in rows(engine, "SELECT level FROM spinal_lesion"))
    assert levels == ["L1", "L3", "T12", "T9"]  # T12 of the report is the Condition's lesion, not a second one
    [study] = rows(engine, "SELECT modality, region, performed_on FROM imaging_study")
    assert (study["modality"], str(study["performed_on"])[:10]) == ("bone_scan", "2026-09-10")


def test_sins_and_escc_components_in_the_product_code_system(engine):
    obs = {
        "resourceType": "Observation",
        "id": "s1",
        "status": "final",
        "code": {"coding": [{"system": SPINE, "code": "sins-assessment"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-10-05",
        "bodySite": {"text": "Th11"},
        "component": [
            {"code": {"coding": [{"system": SPINE, "code": k}]},
             "valueCodeableConcept": {"coding": [{"system": SPINE, "code": v}]}}
            for k, v in (("pain", "mechanical"), ("lesion-type", "lytic"), ("collapse", "lt50"),
                         ("bilsky-escc", "1b"))
        ],
    }  # fmt: skip
    assert _imp(engine, bundle(patient(), obs)).status == "imported"
    [lesion] = rows(engine, "SELECT level, pain, lesion_type, collapse, bilsky_escc FROM spinal_lesion")
    assert lesion == {"level": "T11", "pain": "mechanical", "lesion_type": "lytic", "collapse": "lt50",
                      "bilsky_escc": "1b"}  # fmt: skip
    assert counts(engine)["lesion_assessment"] == 1


def test_labs_by_loinc_with_ucum_units_converted(engine):
    def lab(oid, loinc, value, unit):
        return {
            "resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-10-01",
            "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": unit},
        }  # fmt: skip

    result = _imp(engine, bundle(patient(), lab("a", "1751-7", 35, "g/L"), lab("c", "17861-6", 2.5, "mmol/L")))
    assert result.status == "imported", result.issues
    values = {
        r["test"]: (round(r["value"], 2), r["unit"]) for r in rows(engine, "SELECT test, value, unit FROM lab_result")
    }
    # albumin 35 g/L = 3.5 g/dL; calcium 2.5 mmol/L x 40.08 g/mol / 10 = 10.02 mg/dL
    assert values == {"albumin": (3.5, "g/dL"), "calcium": (10.02, "mg/dL")}


def test_bma_by_rxnorm_and_60mg_denosumab_is_not_sre_prevention(engine):
    def admin(oid, code, display, dose=None, day="2026-10-01"):
        res = {
            "resourceType": "MedicationAdministration", "id": oid, "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": codes.RXNORM, "code": code, "display": display}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": day,
        }  # fmt: skip
        if dose is not None:
            res["dosage"] = {"dose": {"value": dose, "unit": "mg"}}
        return res

    result = _imp(
        engine,
        bundle(
            patient(),
            admin("m1", "993452", "1 ML denosumab 60 MG/ML Prefilled Syringe"),  # Prolia: 60 mg from the product
            admin("m2", "999999", "1.7 ML denosumab 70 MG/ML Injection", day="2026-10-20"),  # by name + strength
            admin("m3", "1114085", "zoledronic acid", dose=4, day="2026-11-01"),
        ),
    )
    assert result.status == "imported", result.issues
    got = [
        (r["agent"], r["dose_mg"], bool(r["sre_prevention"]))
        for r in rows(engine, "SELECT agent, dose_mg, sre_prevention FROM bma_administration ORDER BY given_on")
    ]
    assert got == [("denosumab", 60.0, False), ("denosumab", 119.0, True), ("zoledronic_acid", 4.0, True)]
    assert any("osteoporosis dose" in i.message and i.entry_index == 1 for i in result.issues)


def test_deceased_patient_gets_the_status_and_date(engine):
    dead = dict(patient(), deceasedDateTime="2026-08-30T10:00:00+09:00")
    assert _imp(engine, bundle(dead)).status == "imported"
    [p] = rows(engine, "SELECT status, deceased_on FROM patient")
    assert (p["status"], str(p["deceased_on"])[:10]) == ("deceased", "2026-08-30")


def test_spinal_surgery_and_kyphoplasty_become_treatments_and_sres(engine):
    bkp = {
        "resourceType": "Procedure", "id": "k1", "status": "completed",
        "code": {"text": "Balloon kyphoplasty L2"}, "subject": {"reference": "Patient/p1"},
        "performedDateTime": "2026-10-10",
    }  # fmt: skip
    assert _imp(engine, bundle(patient(), bkp)).status == "imported"
    [t] = rows(engine, "SELECT kind, modality, level FROM treatment")
    assert t == {"kind": "surgery", "modality": "bkp", "level": "L2"}
    [e] = rows(engine, "SELECT event_type, level FROM skeletal_event")
    assert e == {"event_type": "surgery_to_bone", "level": "L2"}


def test_future_dates_are_refused(engine):
    result = _imp(engine, bundle(patient(), ecog("e1", 1, day="2027-01-01")))
    assert result.status == "rejected"
    assert "2027-01-01 is in the future" in result.errors[0].message


def test_level_parser_reads_the_spellings_of_the_notes():
    assert codes.levels_from_text("BWK 12") == ["T12"]
    assert codes.levels_from_text("Th12 and LWK 3") == ["T12", "L3"]
    assert codes.levels_from_text("Bone structure of twelfth thoracic vertebra") == ["T12"]
    assert codes.levels_from_text("T13") == []  # no such vertebra (the TG-263 defect)
    assert codes.levels_from_text("breast") == []


def test_content_is_sniffed_not_the_file_name(engine):
    result = import_file(engine, b"\x89PNG\r\n\x1a\n....", name="data.json", actor="tester", now=NOW)
    assert result.status == "rejected"
    assert result.errors[0].message == "the file is neither FHIR JSON nor CSV text"
