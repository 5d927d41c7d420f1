"""A patient exported as a FHIR R4 Bundle and imported into another, empty database has the same facts and,
after a full recompute, the same scores; importing the Bundle again changes nothing.  Both backends.

The second database is a new SQLite file in ``tmp_path`` or a new PostgreSQL database next to the
session's (created and dropped here, the way ``tests/conftest.py`` does).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from db import models as m
from db.engine import dispose_engines, get_engine, write_session
from db.schema import upgrade
from surveillance.importing import import_file
from surveillance.importing.export import (
    PRIMARY_CODES,
    patient_bundle,
    patient_export,
    patient_id_for_mrn,
    validate_bundle,
)
from surveillance.pipeline import recompute
from surveillance.state import refresh_patient_state
from tests.conftest import _pg_admin_engine

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TODAY = date(2026, 11, 27)
COMPONENTS = ("pain", "lesion_type", "alignment", "collapse", "posterolateral", "bilsky_escc")

# --------------------------------------------------------------------------- the second database


@pytest.fixture
def second_engine(db_url, tmp_path):
    """An empty, migrated database on the same backend as ``db_url``."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'second.db'}"
        upgrade(get_engine(url))
        yield get_engine(url)
        return
    name = f"{make_url(db_url).database}_rt"
    admin = _pg_admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(db_url).set(database=name).render_as_string(hide_password=False)
    upgrade(get_engine(url))
    yield get_engine(url)
    dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# --------------------------------------------------------------------------- normalised facts


def _day(v):
    return None if v is None else str(v)[:10]


def _num(v):
    return None if v is None else round(float(v), 6)


def _flag(v):
    return None if v is None else bool(v)


def _rows(engine, sql: str, pid: int) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), {"pid": pid}).mappings()]


def facts(engine, pid: int) -> dict[str, list[tuple]]:
    """Every fact table of one patient as sorted tuples, without surrogate ids, created_at and source columns."""
    q = lambda sql: _rows(engine, sql, pid)  # noqa: E731
    out: dict[str, list] = {}
    p = q("SELECT p.*, u.username AS nurse FROM patient p LEFT JOIN app_user u ON u.id = p.assigned_nurse_id "
          "WHERE p.id = :pid")[0]  # fmt: skip
    # the nurse by user name: user ids differ between databases
    out["patient"] = [
        (p["mrn"], p["family_name"], p["given_name"], _day(p["birth_date"]), p["sex"], p["primary_site"],
         p["primary_histology"], p["status"], _day(p["deceased_on"]), p["department"], _flag(p["hormone_dependent"]),
         _flag(p["molecular_targeted_therapy"]), _flag(p["previous_chemotherapy"]), _day(p["status_on"]),
         _day(p["registered_on"]), _flag(p["fit_for_surgery"]), p["zoledronic_regimen"], p["bma_not_indicated_reason"],
         p["denosumab_transition_plan"], p["nurse"])
    ]  # fmt: skip
    out["spinal_lesion"] = [
        (r["level"], r["level_span_end"], _day(r["first_seen_on"]), _flag(r["active"]),
         *(r[k] for k in COMPONENTS), _day(r["assessed_on"]), r["wbb_zones"], r["wbb_layers"], r["wbb_numbering"])
        for r in q("SELECT * FROM spinal_lesion WHERE patient_id = :pid")
    ]  # fmt: skip
    # the lesion and the imaging study an assessment was made on, by their facts
    out["lesion_assessment"] = [
        (r["level"], _flag(r["active"]), _day(r["assessed_on"]), *(r[k] for k in COMPONENTS),
         _day(r["study_on"]), r["study_modality"], r["study_region"])
        for r in q(
            "SELECT l.level, l.active, a.*, i.performed_on AS study_on, i.modality AS study_modality, "
            "i.region AS study_region FROM lesion_assessment a JOIN spinal_lesion l ON l.id = a.lesion_id "
            "LEFT JOIN imaging_study i ON i.id = a.imaging_study_id WHERE a.patient_id = :pid"
        )
    ]  # fmt: skip
    out["performance_status"] = [
        (_day(r["recorded_on"]), r["ecog"], r["kps"]) for r in q("SELECT * FROM performance_status WHERE patient_id = :pid")
    ]
    out["lab_result"] = [
        (_day(r["collected_on"]), r["test"], r["loinc"], _num(r["value"]), r["unit"])
        for r in q("SELECT * FROM lab_result WHERE patient_id = :pid")
    ]
    out["imaging_study"] = [
        (_day(r["performed_on"]), r["modality"], r["region"], r["findings"])
        for r in q("SELECT * FROM imaging_study WHERE patient_id = :pid")
    ]
    out["bma_administration"] = [
        (_day(r["given_on"]), r["agent"], _num(r["dose_mg"]), _flag(r["sre_prevention"]))
        for r in q("SELECT * FROM bma_administration WHERE patient_id = :pid")
    ]
    out["treatment"] = [
        (r["kind"], r["modality"], _day(r["started_on"]), _day(r["ended_on"]), r["level"], _flag(r["to_bone"]),
         _num(r["dose_gy"]), r["fractions"], _num(r["separation_margin_mm"]), _flag(r["emergency"]))
        for r in q("SELECT * FROM treatment WHERE patient_id = :pid")
    ]  # fmt: skip
    out["skeletal_event"] = [
        (_day(r["occurred_on"]), r["event_type"], r["level"], _flag(r["emergency"]))
        for r in q("SELECT * FROM skeletal_event WHERE patient_id = :pid")
    ]
    out["metastatic_status"] = [
        (_day(r["recorded_on"]), r["visceral_status"], _flag(r["visceral_treatable"]), _flag(r["visceral_removable"]),
         _flag(r["brain_metastases"]), r["extraspinal_bone_metastases"], r["vertebral_body_metastases"],
         _flag(r["extraspinal_pathological_fracture"]))
        for r in q("SELECT * FROM metastatic_status WHERE patient_id = :pid")
    ]  # fmt: skip
    out["locomo_condition"] = [
        (r["condition"], _day(r["onset_on"]), _day(r["resolved_on"]), r["management_plan"],
         _day(r["orthopaedic_review_on"]))
        for r in q("SELECT * FROM locomo_condition WHERE patient_id = :pid")
    ]  # fmt: skip
    out["neuro_status"] = [
        (_day(r["recorded_on"]), r["frankel_grade"], r["ambulatory_status"], _flag(r["new_deficit"]),
         _flag(r["pain_suggests_cord_compression"]), _flag(r["new_spinal_pain"]))
        for r in q("SELECT * FROM neuro_status WHERE patient_id = :pid")
    ]  # fmt: skip
    out["dental_exam"] = [
        (_day(r["examined_on"]), _flag(r["onj_suspected"]), r["findings"])
        for r in q("SELECT * FROM dental_exam WHERE patient_id = :pid")
    ]
    out["board_case"] = [
        (_day(r["queued_on"]), r["reason"], _day(r["decided_on"]), r["decision"], r["decided_by"])
        for r in q("SELECT * FROM board_case WHERE patient_id = :pid")
    ]
    return {k: sorted(v, key=repr) for k, v in out.items()}


SCORE_COLUMNS = (
    "primary_site", "lesion_count", "sins_worst_mask", "sins_worst_total", "sins_worst_category", "bilsky_worst",
    "tomita_mask", "tomita_total", "tomita_band", "tokuhashi_mask", "tokuhashi_total", "tokuhashi_band",
    "bauer_mask", "bauer_total", "bauer_band", "modified_bauer_mask", "modified_bauer_total", "modified_bauer_band",
    "nesms_mask", "nesms_total", "nesms_band", "katagiri_mask", "katagiri_total", "katagiri_band", "tes_screen",
    "locomo_types", "tier", "last_imaging_on", "next_imaging_due", "next_bma_due", "open_alerts", "critical_alerts",
    "alert_reasons",
)  # fmt: skip


def scores(engine, pid: int) -> dict:
    """The patient's scores, bands, tier, due dates and the rule ids of the open (active) alerts."""
    row = _rows(engine, "SELECT * FROM risk_snapshot WHERE patient_id = :pid", pid)
    assert row, f"patient {pid} has no risk snapshot"
    out = {k: (_day(row[0][k]) if k.endswith(("_on", "_due")) else row[0][k]) for k in SCORE_COLUMNS}
    alerts = "SELECT rule_id FROM alert WHERE patient_id = :pid AND status IN ('open', 'acknowledged', 'snoozed')"
    out["open_alert_rules"] = sorted(r["rule_id"] for r in _rows(engine, alerts, pid))
    return out


def import_bytes(engine, data: bytes, name: str):
    return import_file(engine, data, name=name, actor="test:roundtrip", now=NOW)


# --------------------------------------------------------------------------- a patient with every carried fact


def add_rich_patient(engine, mrn: str = "RT-0001") -> int:
    """A breast-cancer patient with every kind of fact the FHIR importer reads back."""
    d = lambda days: TODAY - timedelta(days=days)  # noqa: E731
    with write_session(engine) as s:
        p = m.Patient(mrn=mrn, family_name="Roundtrip", given_name="Hanako", birth_date=date(1961, 4, 2), sex="female",
                      primary_site="breast", primary_histology="invasive ductal carcinoma of the breast",
                      registered_on=d(700))  # fmt: skip
        s.add(p)
        s.flush()
        pid = p.id
        # T12: first seen with its first assessment, reassessed later (the lesion row holds the latest)
        a1 = dict(pain="mechanical", lesion_type="lytic", alignment="normal", collapse="lt50",
                  posterolateral="unilateral", bilsky_escc="1b")  # fmt: skip
        a2 = dict(pain="mechanical", lesion_type="lytic", alignment="subluxation", collapse="gt50",
                  posterolateral="bilateral", bilsky_escc="2")  # fmt: skip
        t12 = m.SpinalLesion(patient_id=pid, level="T12", first_seen_on=d(400), assessed_on=d(100), **a2)
        # L2-L3: a span, one assessment with some components unknown
        a3 = dict(pain=None, lesion_type="blastic", alignment="normal", collapse=None, posterolateral="none",
                  bilsky_escc="0")  # fmt: skip
        span = m.SpinalLesion(patient_id=pid, level="L2", level_span_end="L3", first_seen_on=d(300),
                              assessed_on=d(300), **a3)  # fmt: skip
        # T8: first seen (bone scan) before it was assessed, on the day the bone metastasis was recorded
        a4 = dict(pain="non_mechanical", lesion_type="mixed", alignment="normal", collapse="none_gt50_involved",
                  posterolateral="none", bilsky_escc="1a")  # fmt: skip
        t8 = m.SpinalLesion(patient_id=pid, level="T8", first_seen_on=d(500), assessed_on=d(450), **a4)
        s.add_all([t12, span, t8])
        s.flush()
        s.add_all([
            m.LesionAssessment(lesion_id=t12.id, patient_id=pid, assessed_on=d(400), **a1),
            m.LesionAssessment(lesion_id=t12.id, patient_id=pid, assessed_on=d(100), **a2),
            m.LesionAssessment(lesion_id=span.id, patient_id=pid, assessed_on=d(300), **a3),
            m.LesionAssessment(lesion_id=t8.id, patient_id=pid, assessed_on=d(450), **a4),
            m.LocomoConditionRecord(patient_id=pid, condition="bone_metastasis", onset_on=d(500)),
            m.MetastaticStatus(patient_id=pid, recorded_on=d(200), brain_metastases=True),
            m.PerformanceStatus(patient_id=pid, recorded_on=d(400), ecog=1, kps=80),
            m.PerformanceStatus(patient_id=pid, recorded_on=d(200), ecog=2),
            m.PerformanceStatus(patient_id=pid, recorded_on=d(30), kps=60),
            m.LabResult(patient_id=pid, collected_on=d(20), test="albumin", loinc="1751-7", value=3.1, unit="g/dL"),
            m.LabResult(patient_id=pid, collected_on=d(20), test="crp", loinc="1988-5", value=1.4, unit="mg/dL"),
            m.LabResult(patient_id=pid, collected_on=d(20), test="ldh", loinc="2532-0", value=312.0, unit="U/L"),
            m.LabResult(patient_id=pid, collected_on=d(20), test="platelets", loinc="777-3", value=182000.0,
                        unit="/µL"),
            m.LabResult(patient_id=pid, collected_on=d(20), test="calcium", loinc="17861-6", value=10.9, unit="mg/dL"),
            m.LabResult(patient_id=pid, collected_on=d(20), test="bilirubin", loinc="1975-2", value=0.7,
                        unit="mg/dL"),
            m.LabResult(patient_id=pid, collected_on=d(90), test="creatinine", loinc="2160-0", value=0.82,
                        unit="mg/dL"),
            m.LabResult(patient_id=pid, collected_on=d(20), test="creatinine", loinc="2160-0", value=1.31,
                        unit="mg/dL"),
            m.BmaAdministration(patient_id=pid, given_on=d(380), agent="zoledronic_acid", dose_mg=4.0),
            m.BmaAdministration(patient_id=pid, given_on=d(290), agent="zoledronic_acid", dose_mg=None),
            m.BmaAdministration(patient_id=pid, given_on=d(200), agent="denosumab", dose_mg=120.0),
            m.BmaAdministration(patient_id=pid, given_on=d(60), agent="denosumab", dose_mg=60.0,
                                sre_prevention=False),
            # spinal treatments with the SRE recorded for each (radiation / surgery to bone)
            m.Treatment(patient_id=pid, kind="radiotherapy", modality="sbrt", started_on=d(390), ended_on=d(388),
                        level="T12", to_bone=True, dose_gy=24.0, fractions=2),
            m.SkeletalEvent(patient_id=pid, occurred_on=d(390), event_type="radiation_to_bone", level="T12"),
            m.Treatment(patient_id=pid, kind="radiotherapy", modality="cebrt", started_on=d(290), ended_on=d(280),
                        level="L2", to_bone=True, dose_gy=30.0, fractions=10),
            m.SkeletalEvent(patient_id=pid, occurred_on=d(290), event_type="radiation_to_bone", level="L2"),
            m.Treatment(patient_id=pid, kind="radiotherapy", modality="srs", started_on=d(150), level="T8",
                        to_bone=True, dose_gy=16.0, fractions=1),
            m.SkeletalEvent(patient_id=pid, occurred_on=d(150), event_type="radiation_to_bone", level="T8"),
            m.Treatment(patient_id=pid, kind="surgery", modality="bkp", started_on=d(95), ended_on=d(95),
                        level="T12", to_bone=True),
            m.SkeletalEvent(patient_id=pid, occurred_on=d(95), event_type="surgery_to_bone", level="T12"),
            m.Treatment(patient_id=pid, kind="surgery", modality="tes", started_on=d(80), level="L2", to_bone=True),
            m.SkeletalEvent(patient_id=pid, occurred_on=d(80), event_type="surgery_to_bone", level="L2"),
            # imaging of every modality and region
            m.ImagingStudy(patient_id=pid, performed_on=d(500), modality="bone_scan", region="whole_spine",
                           findings="Uptake at T8."),
            m.ImagingStudy(patient_id=pid, performed_on=d(400), modality="mri", region="thoracic",
                           findings="T12 lytic lesion, ESCC 1b."),
            m.ImagingStudy(patient_id=pid, performed_on=d(300), modality="ct", region="lumbar", findings=None),
            m.ImagingStudy(patient_id=pid, performed_on=d(250), modality="pet_ct", region="cervical",
                           findings="No cervical uptake."),
            m.ImagingStudy(patient_id=pid, performed_on=d(120), modality="xray", region="sacral", findings=None),
            m.ImagingStudy(patient_id=pid, performed_on=d(100), modality="ct", region="other",
                           findings="Right femur: no lytic lesion."),
            m.ImagingStudy(patient_id=pid, performed_on=d(45), modality="mri", region="whole_spine",
                           findings="T12 collapse > 50 %."),
        ])  # fmt: skip
        s.flush()
        refresh_patient_state(s, [pid])
    return pid


# --------------------------------------------------------------------------- the tests


def test_primary_codes_map_back_to_their_site():
    """Each code the export writes for a primary site is read by the importer's histology table as that site."""
    from surveillance.scoring.histology import site_from_coding
    from surveillance.scoring.vocab import PrimarySite

    assert set(PRIMARY_CODES) == {s.value for s in PrimarySite}
    for site, (system, code) in PRIMARY_CODES.items():
        assert [s.value for s in site_from_coding(system, code, None).sites] == [site], site


def test_rich_patient_round_trips_with_the_same_facts_and_scores(engine, second_engine):
    pid = add_rich_patient(engine)
    recompute(engine, full=True, now=NOW, trigger="test")
    export = patient_export(engine, pid, now=NOW)
    # every fact of this patient is one the importer reads back, and the importer adds nothing
    assert export.left_out == {}
    assert export.added == {}
    data = export.as_bytes()
    bundle = json.loads(data)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    validate_bundle(bundle)
    types = sorted({e["resource"]["resourceType"] for e in bundle["entry"]})
    assert types == ["Condition", "ImagingStudy", "MedicationAdministration", "Observation", "Patient", "Procedure"]
    urls = {e["fullUrl"] for e in bundle["entry"]}
    assert len(urls) == len(bundle["entry"])
    for entry in bundle["entry"]:
        res = entry["resource"]
        assert res["id"] and res["identifier"], res["resourceType"]
        subject = res.get("subject")
        if subject is not None:
            assert subject["reference"] in urls  # references are the entries' fullUrls

    result = import_bytes(second_engine, data, "rt.json")
    assert result.status == "imported", [i.as_dict() for i in result.errors]
    warnings = sorted(i.message for i in result.issues if i.severity == "warning")
    # only the two doses this patient really has: the unknown zoledronic acid dose and the 60 mg denosumab
    assert len(warnings) == 2 and all("dose" in w for w in warnings), warnings
    pid2 = patient_id_for_mrn(second_engine, "RT-0001")
    before = facts(engine, pid)
    after = facts(second_engine, pid2)
    for table in before:
        assert after[table] == before[table], table

    recompute(engine, full=True, now=NOW, trigger="test")
    recompute(second_engine, full=True, now=NOW, trigger="test")
    assert scores(second_engine, pid2) == scores(engine, pid)
    # the compared scores are real: SINS (T12: a full assessment) and Bilsky are known, the tier is set
    snap = scores(engine, pid)
    assert snap["bilsky_worst"] == "2" and snap["lesion_count"] == 3, snap
    assert snap["sins_worst_mask"] and snap["tier"] not in (None, "none"), snap

    # the same file again: nothing changes
    counts = {t: len(v) for t, v in after.items()}
    again = import_bytes(second_engine, data, "rt.json")
    assert again.status == "unchanged"
    # a new export (another file: later timestamp) of the same patient: every record is already there
    later = patient_export(engine, pid, now=NOW + timedelta(hours=1)).as_bytes()
    assert later != data
    third = import_bytes(second_engine, later, "rt-later.json")
    assert third.status == "unchanged", third.as_dict()
    # and the imported patient exported from the second database and imported there again
    own = patient_export(second_engine, pid2, now=NOW + timedelta(hours=2))
    assert own.left_out == {} and own.added == {}
    fourth = import_bytes(second_engine, own.as_bytes(), "rt-own.json")
    assert fourth.status == "unchanged", fourth.as_dict()
    assert {t: len(v) for t, v in facts(second_engine, pid2).items()} == counts
    # the re-exported Bundle names the same resources (ids kept from the import), but for later assessments
    ids = lambda b: {(e["resource"]["resourceType"], e["resource"]["id"]) for e in b["entry"]}  # noqa: E731
    first_ids, own_ids = ids(bundle), ids(own.bundle)
    assert len(first_ids - own_ids) == 1  # T12's second assessment: assessments carry no source id
    assert all(rid.startswith("sinsa-") for _, rid in first_ids - own_ids)


def test_export_refuses_an_unknown_patient(engine):
    from surveillance.importing.export import ExportError

    with pytest.raises(ExportError):
        patient_bundle(engine, 424242)
    with pytest.raises(ExportError):
        patient_id_for_mrn(engine, "NOPE")


#: A cohort that holds every kind of fact the demo generator makes (asserted below): 150 patients, seed 1.
DEMO_PATIENTS, DEMO_SEED = 150, 1

#: Each kind of fact the round trip must carry, as a query that finds at least one row of it in the cohort.
DEMO_KINDS = {
    "every patient status": "SELECT 1 FROM patient GROUP BY 1 HAVING COUNT(DISTINCT status) = 4",
    "status date of a transferred patient": "SELECT 1 FROM patient WHERE status = 'transferred' AND status_on IS NOT NULL",
    "patient on hold": "SELECT 1 FROM patient WHERE status = 'on_hold'",
    "department, nurse, fitness, flags": "SELECT 1 FROM patient WHERE department IS NOT NULL AND assigned_nurse_id "
    "IS NOT NULL AND fit_for_surgery IS NOT NULL",
    "hormone dependence": "SELECT 1 FROM patient WHERE hormone_dependent IS NOT NULL",
    "targeted therapy, previous chemotherapy": "SELECT 1 FROM patient WHERE molecular_targeted_therapy IS NOT NULL "
    "AND previous_chemotherapy IS NOT NULL",
    "BMA regimen, reason, transition plan": "SELECT 1 FROM patient GROUP BY 1 HAVING COUNT(zoledronic_regimen) > 0 "
    "AND COUNT(bma_not_indicated_reason) > 0 AND COUNT(denosumab_transition_plan) > 0",
    "lesion span": "SELECT 1 FROM spinal_lesion WHERE level_span_end IS NOT NULL",
    "inactive lesion": "SELECT 1 FROM spinal_lesion WHERE NOT active",
    "WBB zones": "SELECT 1 FROM spinal_lesion WHERE wbb_zones IS NOT NULL",
    "lesion first seen before an assessment": "SELECT 1 FROM spinal_lesion l JOIN lesion_assessment a ON "
    "a.lesion_id = l.id GROUP BY l.id HAVING COUNT(*) > 1",
    "assessment on an imaging study": "SELECT 1 FROM lesion_assessment WHERE imaging_study_id IS NOT NULL",
    "ECOG and KPS in one record": "SELECT 1 FROM performance_status WHERE ecog IS NOT NULL AND kps IS NOT NULL",
    "KPS alone": "SELECT 1 FROM performance_status WHERE ecog IS NULL",
    "neurological status": "SELECT 1 FROM neuro_status WHERE frankel_grade <> 'E'",
    "new deficit": "SELECT 1 FROM neuro_status WHERE new_deficit",
    "visceral metastases": "SELECT 1 FROM metastatic_status WHERE visceral_status IN ('nodular', 'disseminated')",
    "extraspinal bone metastases": "SELECT 1 FROM metastatic_status WHERE extraspinal_bone_metastases > 0",
    "brain metastases": "SELECT 1 FROM metastatic_status WHERE brain_metastases",
    "systemic therapy of every class": "SELECT 1 FROM treatment WHERE kind = 'systemic' GROUP BY kind "
    "HAVING COUNT(DISTINCT modality) = 4",
    "ongoing systemic therapy": "SELECT 1 FROM treatment WHERE kind = 'systemic' AND ended_on IS NULL",
    "MISt": "SELECT 1 FROM treatment WHERE modality = 'mist'",
    "separation margin": "SELECT 1 FROM treatment WHERE separation_margin_mm IS NOT NULL",
    "emergency treatment": "SELECT 1 FROM treatment WHERE emergency",
    "spinal treatment without an SRE": "SELECT 1 FROM treatment t WHERE kind <> 'systemic' AND NOT EXISTS (SELECT 1 "
    "FROM skeletal_event e WHERE e.patient_id = t.patient_id AND e.occurred_on = t.started_on AND e.event_type IN "
    "('radiation_to_bone', 'surgery_to_bone'))",
    "every SRE type": "SELECT 1 FROM skeletal_event GROUP BY 1 HAVING COUNT(DISTINCT event_type) = 7",
    "emergency SRE": "SELECT 1 FROM skeletal_event WHERE emergency",
    "dental exam": "SELECT 1 FROM dental_exam",
    "Cancer Locomo conditions other than bone metastasis": "SELECT 1 FROM locomo_condition GROUP BY 1 "
    "HAVING COUNT(DISTINCT condition) >= 9",
    "resolved Cancer Locomo condition": "SELECT 1 FROM locomo_condition WHERE resolved_on IS NOT NULL",
    "management plan, orthopaedic review": "SELECT 1 FROM locomo_condition GROUP BY 1 "
    "HAVING COUNT(management_plan) > 0 AND COUNT(orthopaedic_review_on) > 0",
    "board case": "SELECT 1 FROM board_case WHERE decided_on IS NOT NULL",
}


def _copy_users(source, target) -> None:
    """The receiving site has the same staff accounts (nurses are matched by user name)."""
    cols = "username, display_name, role, department, password_hash, active, failed_logins, password_changed_at, " \
        "created_at, version"  # fmt: skip
    with source.connect() as conn:
        users = [dict(r) for r in conn.execute(text(f"SELECT {cols} FROM app_user ORDER BY id DESC")).mappings()]
    with target.begin() as conn:  # in reverse order, so the ids differ from the source's
        conn.execute(text(f"INSERT INTO app_user ({cols}) VALUES ({', '.join(':' + c for c in cols.split(', '))})"),
                     users)  # fmt: skip


def test_demo_patients_round_trip_with_the_same_facts_and_scores(engine, second_engine):
    """Every demo patient exported, imported into an empty database: every fact table equal and, after a full
    recompute, the same scores, bands, tier, due dates and open alerts; the export leaves nothing out."""
    from surveillance.demo import generate_demo

    generate_demo(engine, patients=DEMO_PATIENTS, seed=DEMO_SEED, today=TODAY)
    with engine.connect() as conn:
        missing = [kind for kind, sql in DEMO_KINDS.items() if conn.execute(text(sql)).first() is None]
        pids = [r[0] for r in conn.execute(text("SELECT id FROM patient ORDER BY id"))]
    assert not missing, f"the cohort lacks {missing}: choose another seed or size"
    _copy_users(engine, second_engine)
    mrns = {}
    for pid in pids:
        export = patient_export(engine, pid, now=NOW)
        assert export.left_out == {} and export.added == {}, (pid, export.left_out, export.added)
        result = import_bytes(second_engine, export.as_bytes(), f"demo-{pid}.json")
        assert result.status == "imported", (pid, [i.as_dict() for i in result.errors])
        assert not [i for i in result.issues if "nurse" in i.message], pid
        mrns[pid] = export.bundle["entry"][0]["resource"]["identifier"][1]["value"]
    counts: dict[str, int] = {}
    for pid in pids:
        before, after = facts(engine, pid), facts(second_engine, patient_id_for_mrn(second_engine, mrns[pid]))
        for table in before:
            assert after[table] == before[table], (pid, table)
            counts[table] = counts.get(table, 0) + len(before[table])
    assert all(counts.values()), counts  # every table compared holds rows
    # the copy exported again and imported into itself: every row is already there (ids kept from the import)
    for pid in pids:
        again = patient_export(second_engine, patient_id_for_mrn(second_engine, mrns[pid]), now=NOW + timedelta(hours=1))
        assert again.left_out == {} and again.added == {}, (pid, again.left_out, again.added)
        assert import_bytes(second_engine, again.as_bytes(), f"again-{pid}.json").status == "unchanged", pid

    recompute(engine, full=True, now=NOW, trigger="test")
    recompute(second_engine, full=True, now=NOW, trigger="test")
    tiers, alerts = set(), 0
    for pid in pids:
        original = scores(engine, pid)
        assert scores(second_engine, patient_id_for_mrn(second_engine, mrns[pid])) == original, pid
        tiers.add(original["tier"])
        alerts += len(original["open_alert_rules"])
    # the compared scores are real: several tiers and open alerts
    assert len(tiers) >= 3 and alerts > 0, (tiers, alerts)


def _cli(db_url: str, *args: str):
    import os
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run(
        [sys.executable, "-m", "surveillance", *args],
        cwd=Path(__file__).parents[2],
        env=dict(os.environ, DATABASE_URL=db_url),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_export_writes_the_bundle_records_the_disclosure_and_imports_back(engine, db_url, second_engine, tmp_path):
    pid = add_rich_patient(engine, mrn="RT-CLI")
    path = tmp_path / "rt-cli.json"
    proc = _cli(db_url, "export", "patient", "--mrn", "RT-CLI", "-o", str(path))
    assert proc.returncode == 0, proc.stderr
    bundle = json.loads(path.read_text(encoding="utf-8"))
    validate_bundle(bundle)
    [event] = _rows(engine, "SELECT * FROM audit_event WHERE action = 'export.patient_fhir' AND patient_id = :pid", pid)
    assert event["actor"].startswith("cli:")
    assert json.loads(event["detail"])["resources"] == len(bundle["entry"])
    # never overwrites, and an unknown MRN is a clear error: neither writes a file or a disclosure
    again = _cli(db_url, "export", "patient", "--mrn", "RT-CLI", "-o", str(path))
    assert again.returncode == 2 and "already exists" in again.stderr
    unknown = _cli(db_url, "export", "patient", "--mrn", "NO-SUCH", "-o", str(tmp_path / "x.json"))
    assert unknown.returncode == 2 and "no patient with MRN" in unknown.stderr
    assert not (tmp_path / "x.json").exists()
    assert len(_rows(engine, "SELECT id FROM audit_event WHERE action = 'export.patient_fhir' AND :pid = :pid", 0)) == 1
    result = import_bytes(second_engine, path.read_bytes(), "rt-cli.json")
    assert result.status == "imported"
    assert facts(second_engine, patient_id_for_mrn(second_engine, "RT-CLI")) == facts(engine, pid)


def test_export_file_requires_a_role_that_may_export(engine):
    from surveillance.access import Identity, PermissionDenied, Role
    from surveillance.importing.export import export_patient_file

    pid = add_rich_patient(engine, mrn="RT-ROLE")
    for role in (Role.LEAD, Role.ADMIN):
        with pytest.raises(PermissionDenied):
            export_patient_file(engine, Identity(1, f"u-{role}", "U", role), pid, now=NOW)
    assert not _rows(engine, "SELECT id FROM audit_event WHERE action = 'export.patient_fhir' AND :pid = :pid", 0)
    # a nurse exports her own patient only; another nurse's patient is refused, and the refusal is audited
    with write_session(engine) as s:
        nurse = m.AppUser(username="nurse1", display_name="N", role="nurse", password_hash="x")
        s.add(nurse)
        s.flush()
        s.get(m.Patient, pid).assigned_nurse_id = nurse.id
        nurse_id = nurse.id
    with pytest.raises(PermissionDenied):
        export_patient_file(engine, Identity(nurse_id + 1, "nurse2", "N2", Role.NURSE), pid, now=NOW)
    content, export = export_patient_file(engine, Identity(nurse_id, "nurse1", "N", Role.NURSE), pid, now=NOW)
    assert json.loads(content) == export.bundle
    events = _rows(engine, "SELECT actor, patient_id, outcome FROM audit_event WHERE action = 'export.patient_fhir' "
                   "AND :pid = :pid ORDER BY id", 0)  # fmt: skip
    assert events == [
        {"actor": "nurse2", "patient_id": pid, "outcome": "denied"},
        {"actor": "nurse1", "patient_id": pid, "outcome": "success"},
    ]


def test_patient_page_download_is_the_bundle_built_and_audited_on_click(db_url, engine, second_engine, monkeypatch):
    """The nurse's own patient: a deferred download (nothing disclosed by showing the page), the Bundle on click,
    one disclosure per click; it imports back.  The lead never reaches the page (tests/dashboard role matrix)."""
    import streamlit as st

    from tests import factories
    from tests.dashboard.conftest import login, new_app, page
    from tests.dashboard.test_exports import _button, _click, _keep_managers

    users = factories.add_users(engine)
    pid = add_rich_patient(engine, mrn="RT-PAGE")
    with write_session(engine) as s:
        s.get(m.Patient, pid).assigned_nurse_id = users["nurse1"]
    recompute(engine, full=True, now=NOW, trigger="test")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SURVEILLANCE_INPROCESS_SCHEDULER", "0")
    st.cache_data.clear()
    st.cache_resource.clear()
    managers = _keep_managers(monkeypatch)
    at = login(new_app(), engine, "nurse1")
    at.session_state["patient_id"] = pid
    page(at, "patient")
    assert not at.exception, at.exception
    exports = "SELECT actor, patient_id FROM audit_event WHERE action = 'export.patient_fhir' AND :pid = :pid"
    assert _rows(engine, exports, 0) == [], "showing the page discloses nothing"
    data = _click(managers, _button(at, "patient_download_fhir"))
    bundle = json.loads(data)
    validate_bundle(bundle)
    assert bundle["entry"][0]["resource"]["identifier"][1]["value"] == "RT-PAGE"
    assert _rows(engine, exports, 0) == [{"actor": "nurse1", "patient_id": pid}]
    _copy_users(engine, second_engine)  # the nurse arrives by user name
    result = import_bytes(second_engine, data, "page.json")
    assert result.status == "imported"
    assert facts(second_engine, patient_id_for_mrn(second_engine, "RT-PAGE")) == facts(engine, pid)
    st.cache_data.clear()
    st.cache_resource.clear()


def test_a_nurse_unknown_at_the_receiving_site_is_a_warning_and_what_cannot_be_carried_is_named(
    engine, second_engine
):
    """The nurse is sent by user name: a site without that nurse imports the patient unassigned, with a warning.
    A second active lesion at one level (the importer would merge it) is named in ``left_out``."""
    pid = add_rich_patient(engine, mrn="RT-NURSE")
    with write_session(engine) as s:
        nurse = m.AppUser(username="nurse-elsewhere", display_name="N", role="nurse", password_hash="x")
        s.add(nurse)
        s.flush()
        s.get(m.Patient, pid).assigned_nurse_id = nurse.id
        s.add(m.SpinalLesion(patient_id=pid, level="T12", first_seen_on=TODAY - timedelta(days=10)))
    export = patient_export(engine, pid, now=NOW)
    assert export.left_out == {"spinal_lesion (a second active lesion at the same level)": 1}
    patient = export.bundle["entry"][0]["resource"]
    assert {"url": "https://cancer-locomo.example.org/fhir/StructureDefinition/assigned-nurse",
            "valueString": "nurse-elsewhere"} in patient["extension"]  # fmt: skip
    result = import_bytes(second_engine, export.as_bytes(), "nurse.json")
    assert result.status == "imported"
    assert [i.message for i in result.issues if "nurse" in i.message] == [
        "assigned nurse 'nurse-elsewhere': no such nurse here; not assigned"
    ]
    pid2 = patient_id_for_mrn(second_engine, "RT-NURSE")
    assert _rows(second_engine, "SELECT assigned_nurse_id FROM patient WHERE id = :pid", pid2) == [
        {"assigned_nurse_id": None}
    ]
    # with that nurse's account at the receiving site, the same file assigns her
    with write_session(second_engine) as s:
        s.add(m.AppUser(username="nurse-elsewhere", display_name="N", role="nurse", password_hash="x"))
    third = _rows(second_engine, "SELECT id FROM app_user WHERE username = 'nurse-elsewhere' AND :pid = :pid", 0)[0]["id"]
    again = import_bytes(second_engine, patient_export(engine, pid, now=NOW + timedelta(hours=1)).as_bytes(), "n2.json")
    assert again.status == "imported", again.as_dict()
    assert _rows(second_engine, "SELECT assigned_nurse_id FROM patient WHERE id = :pid", pid2) == [
        {"assigned_nurse_id": third}
    ]


def test_a_foreign_mist_procedure_imports_as_before(engine):
    """Without the product's code a 'minimally invasive spine stabilization' is read by its text (fixation), and
    makes its SRE, as before the product's own codes existed."""
    from tests.importing.helpers import bundle, patient, rows

    proc = {
        "resourceType": "Procedure", "id": "mist-1", "status": "completed",
        "code": {"text": "Minimally invasive spine stabilization"}, "subject": {"reference": "Patient/p1"},
        "performedDateTime": "2026-10-01", "bodySite": [{"text": "T11"}],
    }  # fmt: skip
    result = import_bytes(engine, bundle(patient(), proc), "foreign.json")
    assert result.status == "imported", result.as_dict()
    assert [(r["modality"], r["level"]) for r in rows(engine, "SELECT * FROM treatment")] == [
        ("decompression_fixation", "T11")
    ]
    assert [r["event_type"] for r in rows(engine, "SELECT * FROM skeletal_event")] == ["surgery_to_bone"]
