"""The mCODE Extraction Framework sample CSVs (tests/fixtures/fhir-samples/mcode-extraction-csv, SOURCES.md §4).

Expectations come from reading the nine files, not from the importer: three patients
(MRN 123 Jane Doe, female, 1980-01-01; 456 John Doe, male, 1970-01-01; 789 Jimmy Doe,
other, 1980-03-01); their conditions are the generic SNOMED 363346000 with the display
text "Breast Cancer", "Prostate Cancer" and "Lung Cancer" (no NSCLC/SCLC subtype); the
observations are LOINC 1695-6, body height and body weight (no ECOG, KPS or product
lab); the procedures are brachytherapy, "destruction of lesion", a mastectomy and proton
teleradiotherapy to a non-bone site (SNOMED 41224006); the drugs are triamcinolone, coal
tar and vitamin K (RxNorm 10760, 91318, 91833: no bone-modifying agent); staging,
disease status and adverse events are nothing the product stores.  The samples carry no
ECOG, no BMA and no bone metastasis, so the last tests feed framework-format rows that
do (codes from notes/fhir-data.md §2.3-2.5) to show those columns are mapped.
"""

from __future__ import annotations

from datetime import date

import pytest

from surveillance.importing import import_file
from tests.importing.helpers import NOW, SAMPLES, counts, rows

FOLDER = SAMPLES / "mcode-extraction-csv"


def _import(engine, name: str):
    return import_file(engine, FOLDER / f"{name}.csv", actor="tester", now=NOW)


def _bytes(engine, name: str, text: str):
    return import_file(engine, text.encode(), name=name, actor="tester", now=NOW)


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _infos(result) -> list[str]:
    return [i.message for i in result.issues if i.severity == "info"]


def _nothing_written(engine, before: dict[str, int]) -> None:
    assert counts(engine) == before


def test_patient_information_three_patients(engine):
    result = _import(engine, "patient-information")
    assert result.status == "imported", result.issues
    assert result.counts["patient"] == 3
    got = rows(engine, "SELECT mrn, family_name, given_name, birth_date, sex, status FROM patient ORDER BY mrn")
    assert [
        (p["mrn"], p["family_name"], p["given_name"], _day(p["birth_date"]), p["sex"], p["status"]) for p in got
    ] == [
        ("123", "Doe", "Jane", date(1980, 1, 1), "female", "active"),
        ("456", "Doe", "John", date(1970, 1, 1), "male", "active"),
        ("789", "Doe", "Jimmy", date(1980, 3, 1), "other", "active"),
    ]


def test_condition_information_primary_sites(engine):
    assert _import(engine, "patient-information").status == "imported"
    result = _import(engine, "condition-information")
    assert result.status == "imported", result.issues
    got = rows(engine, "SELECT mrn, primary_site, primary_histology FROM patient ORDER BY mrn")
    assert [(p["mrn"], p["primary_site"]) for p in got] == [("123", "breast"), ("456", "prostate"), ("789", None)]
    # "Lung Cancer" without NSCLC/SCLC: left unknown (never guessed), with a warning on its row
    [lung] = [i for i in result.issues if i.location.endswith("row 4")]
    assert lung.severity == "warning" and "lung_nsclc" in lung.message and "left unknown" in lung.message
    # names and birth dates from the patient file are not overwritten by the condition file
    assert rows(engine, "SELECT given_name FROM patient WHERE mrn = '123'")[0]["given_name"] == "Jane"


def test_condition_information_without_its_patients_is_rejected(engine):
    result = _import(engine, "condition-information")
    assert result.status == "rejected"
    assert counts(engine)["patient"] == 0
    assert any("123" in i.message and "no patient" in i.message for i in result.errors), result.issues


def test_observation_information_nothing_stored(engine):
    _import(engine, "patient-information")
    before = counts(engine)
    result = _import(engine, "observation-information")
    assert not result.errors, result.issues
    _nothing_written(engine, before)
    infos = _infos(result)
    assert sum("nothing the product stores" in m for m in infos) == 3
    assert any(m.startswith("Body height") for m in infos)


def test_procedure_information_no_bone_or_spine_treatment(engine):
    _import(engine, "patient-information")
    before = counts(engine)
    result = _import(engine, "procedure-information")
    assert not result.errors, result.issues
    _nothing_written(engine, before)
    by_row = {i.location.rsplit(" ", 1)[-1]: i.message for i in result.issues}
    assert "Brachytherapy" in by_row["2"] and "Total mastectomy" in by_row["4"]
    # row 5 is radiotherapy (teleradiotherapy protons), but to 41224006, not bone or spine
    assert "not to bone or spine" in by_row["5"]


@pytest.mark.parametrize(
    "name",
    ["cancer-related-medication-administration-information", "cancer-related-medication-request-information"],
)
def test_medication_files_no_bone_modifying_agent(engine, name):
    _import(engine, "patient-information")
    before = counts(engine)
    result = _import(engine, name)
    assert not result.errors, result.issues
    _nothing_written(engine, before)
    infos = _infos(result)
    assert any(m.startswith("Triamcinolone Oral Paste") and "nothing the product stores" in m for m in infos)
    assert any(m.startswith("Coal Tar") for m in infos)
    # the third row (vitamin K) is stopped / cancelled
    assert any("'stopped'" in m or "'cancelled'" in m for m in infos)


@pytest.mark.parametrize(
    ("name", "rows_in_file"),
    [("staging-information", 5), ("cancer-disease-status-information", 3), ("adverse-event-information", 3)],
)
def test_files_the_product_does_not_store(engine, name, rows_in_file):
    _import(engine, "patient-information")
    before = counts(engine)
    result = _import(engine, name)
    assert not result.errors, result.issues
    _nothing_written(engine, before)
    [info] = result.issues
    assert info.severity == "info" and name in info.message and "nothing the product stores" in info.message
    assert f"({rows_in_file} rows)" in info.message


def test_all_nine_in_order(engine):
    order = [
        "patient-information", "condition-information", "observation-information", "procedure-information",
        "cancer-related-medication-administration-information", "cancer-related-medication-request-information",
        "cancer-disease-status-information", "staging-information", "adverse-event-information",
    ]  # fmt: skip
    assert sorted(p.stem for p in FOLDER.glob("*.csv")) == sorted(order)  # one test per file above
    for name in order:
        assert not _import(engine, name).errors, name
    c = counts(engine)
    assert c["patient"] == 3 and c["performance_status"] == 0 and c["bma_administration"] == 0
    assert c["treatment"] == 0 and c["lab_result"] == 0


# --- framework-format rows that the product does store -------------------------------------------

PATIENTS = "mrn,familyName,givenName,gender,dateOfBirth\nM-1,Test,Pat,female,1960-05-01\n"


def test_observation_ecog_kps_and_lab_with_inline_unit(engine):
    assert _bytes(engine, "patient-information.csv", PATIENTS).status == "imported"
    result = _bytes(
        engine,
        "observation-information.csv",
        "mrn,observationId,status,code,codeSystem,displayName,value,valueCodeSystem,effectiveDate\n"
        "M-1,o1,final,89247-1,http://loinc.org,ECOG,2,,2026-09-01\n"
        "M-1,o2,final,89243-0,http://loinc.org,Karnofsky,70,,2026-09-02\n"
        "M-1,o3,final,1751-7,http://loinc.org,Albumin,31 g/L,,2026-09-03\n",
    )
    assert result.status == "imported", result.issues
    ps = rows(engine, "SELECT ecog, kps, recorded_on FROM performance_status ORDER BY recorded_on")
    assert [(p["ecog"], p["kps"], _day(p["recorded_on"])) for p in ps] == [
        (2, None, date(2026, 9, 1)),
        (None, 70, date(2026, 9, 2)),
    ]
    [lab] = rows(engine, "SELECT test, value, unit FROM lab_result")
    assert lab["test"] == "albumin"
    # stored in the product's canonical unit (g/dL, surveillance/labs.py): 31 g/L is 3.1 g/dL
    assert (round(float(lab["value"]), 3), lab["unit"]) == (3.1, "g/dL")


def test_bone_metastasis_at_t12_radiotherapy_and_zoledronic_acid(engine):
    _bytes(engine, "patient-information.csv", PATIENTS)
    cond = _bytes(
        engine,
        "condition-information.csv",
        "mrn,conditionId,codeSystem,code,displayName,dateOfDiagnosis,bodySite\n"
        "M-1,c1,http://snomed.info/sct,94222008,Secondary malignant neoplasm of bone,2026-08-01,280849005\n",
    )
    assert cond.status == "imported", cond.issues
    [lesion] = rows(engine, "SELECT level FROM spinal_lesion")
    assert lesion["level"] == "T12"  # 280849005 = T12 vertebral body (TG263 ConceptMap)
    proc = _bytes(
        engine,
        "procedure-information.csv",
        "mrn,procedureId,status,code,codeSystem,displayName,effectiveDate,bodySite\n"
        "M-1,p1,completed,33195004,http://snomed.info/sct,External beam radiation therapy,2026-08-10,280849005\n",
    )
    assert proc.status == "imported", proc.issues
    [rt] = rows(engine, "SELECT kind, level, started_on FROM treatment")
    assert (rt["kind"], rt["level"], _day(rt["started_on"])) == ("radiotherapy", "T12", date(2026, 8, 10))
    assert [s["event_type"] for s in rows(engine, "SELECT event_type FROM skeletal_event")] == ["radiation_to_bone"]
    med = _bytes(
        engine,
        "cancer-related-medication-administration-information.csv",
        "mrn,medicationId,code,codeSystem,displayText,startDate,endDate,status\n"
        "M-1,m1,1114085,http://www.nlm.nih.gov/research/umls/rxnorm,zoledronic acid 4 MG,2026-08-15,,completed\n",
    )
    assert med.status == "imported", med.issues
    [bma] = rows(engine, "SELECT agent, dose_mg, given_on FROM bma_administration")
    assert (bma["agent"], float(bma["dose_mg"]), _day(bma["given_on"])) == ("zoledronic_acid", 4.0, date(2026, 8, 15))


def test_row_for_an_unknown_mrn_is_reported(engine):
    _bytes(engine, "patient-information.csv", PATIENTS)
    result = _bytes(
        engine,
        "observation-information.csv",
        "mrn,observationId,status,code,codeSystem,displayName,value,valueCodeSystem,effectiveDate\n"
        "M-404,o1,final,89247-1,http://loinc.org,ECOG,1,,2026-09-01\n",
    )
    assert result.status == "rejected"
    [err] = result.errors
    assert "M-404" in err.message and "no patient" in err.message and err.location.endswith("row 2")
    assert counts(engine)["performance_status"] == 0


def test_ambiguous_date_is_refused_with_its_cell(engine):
    result = _bytes(
        engine, "patient-information.csv", "mrn,familyName,givenName,gender,dateOfBirth\nM-2,Test,Amb,male,12-09-1994\n"
    )
    assert result.status == "rejected"
    [err] = result.errors
    assert "12-09-1994" in err.message and err.location.endswith("dateofbirth")
    assert counts(engine)["patient"] == 0


def test_a_csv_that_is_neither_template_nor_mcode_keeps_the_template_error(engine):
    result = _bytes(engine, "other.csv", "mrn,colour\nX,blue\n")
    assert result.status == "rejected"
    assert "matches no template" in result.errors[0].message


def test_date_of_death_column_marks_the_patient_deceased(engine):
    result = _bytes(
        engine,
        "patient-information.csv",
        "mrn,familyName,givenName,gender,dateOfBirth,dateOfDeath\nM-3,Test,Dec,male,1950-02-01,2026-03-04\n",
    )
    assert result.status == "imported", result.issues
    [p] = rows(engine, "SELECT status, deceased_on FROM patient")
    assert (p["status"], _day(p["deceased_on"])) == ("deceased", date(2026, 3, 4))
