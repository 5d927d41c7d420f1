"""One patient as a FHIR R4 ``collection`` Bundle that the product's own importer reads back.

:func:`patient_bundle` ``(engine, patient_id, *, now=None) -> dict`` builds the
Bundle; :func:`patient_export` also says which stored facts the Bundle leaves
out (``left_out``: what -> rows), because the importer
(:mod:`surveillance.importing.fhir`) has no mapping for them.  The CLI
(``python -m surveillance export patient --mrn MRN``) and the patient page's
download go through :func:`export_patient_file`, which records the disclosure
(:func:`surveillance.disclosure.export_file`).

Every resource is written **in the form the importer maps back** and with the
codes it reads (:mod:`surveillance.importing.codes`):

* Patient — identifier typed ``MR`` (v2-0203) in :data:`MRN_SYSTEM`, official
  name, ``gender``, ``birthDate``, ``deceasedDateTime``.
* Condition — the primary cancer (a SNOMED CT / ICD-10-CM code that
  ``surveillance.scoring.histology.site_from_coding`` maps to exactly the
  patient's ``primary_site``; the histology text in the mCODE histology
  extension); bone metastasis SNOMED 94222008 with a vertebral-body ``bodySite``
  (TG263 codes) for a lesion first seen before its first assessment and for an
  open "bone metastasis" Cancer Locomo condition; brain metastasis 94225005.
* Observation — ECOG 89247-1 and Karnofsky 89243-0 (``valueInteger``); labs by
  LOINC with UCUM units (the canonical unit of ``surveillance.labs``); each
  lesion assessment as ``sins-assessment`` in the product's code system
  :data:`~surveillance.importing.codes.SPINE_CS` with one component per SINS
  component and ``bilsky-escc``, the lesion's level (and span) in ``bodySite``.
* MedicationAdministration — bone-modifying agents (RxNorm 77655 zoledronic
  acid; denosumab and pamidronate by ingredient name: the shared sources give
  no ingredient RxCUI for them) with the dose in mg.
* Procedure — spinal radiotherapy (SNOMED 1217123003, technique in the text,
  dose in the mCODE dose-delivered extension) and spinal surgery (by name),
  to the vertebra.  The importer makes each such Procedure a treatment *and* a
  skeletal-related event (radiation/surgery to bone), so a treatment and the
  SRE recorded for it (same day, type and level) are one Procedure.
* ImagingStudy — DICOM modality and the spinal region in ``series.bodySite``.

Ids: a row imported from FHIR keeps its resource id (``Observation/abc`` ->
``abc``), so a patient exported again after an import gives the same ids and a
re-import changes nothing; any other row gets ``<kind>-<row id>``; the Patient,
when not imported from FHIR, ``p-<SHA-256 of MRN system and MRN>``.  Every
resource also carries ``identifier`` = the product's row (:data:`ROW_SYSTEM`).
References are the entries' ``fullUrl`` (``urn:uuid:`` UUID v5 of the type and id).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from surveillance.importing import codes as c
from surveillance.labs import LABS, LOINC_TO_TEST, LabTest

BASE = "https://cancer-locomo.example.org/fhir"
#: The product's medical record numbers.
MRN_SYSTEM = f"{BASE}/NamingSystem/mrn"
#: The product's fact rows: ``<table>/<row id>`` (the value is stable for the row).
ROW_SYSTEM = f"{BASE}/NamingSystem/row"
UCUM = "http://unitsofmeasure.org"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
MCODE_SD = "http://hl7.org/fhir/us/mcode/StructureDefinition"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

#: primary_site -> a code ``site_from_coding`` maps to that site alone.  SNOMED CT codes are the first
#: single-site entries of ``surveillance.scoring.histology`` (its cited table); gallbladder, myeloma and
#: unknown primary have none there and use ICD-10-CM C23, C90.0, C80.1 (same table's ICD-10 rules).
#: ``tests/importing/test_fhir_roundtrip.py`` checks every entry maps back.
PRIMARY_CODES: dict[str, tuple[str, str]] = {
    "lung_nsclc": (c.SNOMED, "254637007"), "lung_sclc": (c.SNOMED, "254632001"),
    "breast": (c.SNOMED, "254837009"), "prostate": (c.SNOMED, "399068003"), "thyroid": (c.SNOMED, "94098005"),
    "kidney": (c.SNOMED, "93849006"), "liver": (c.SNOMED, "95214007"), "colon": (c.SNOMED, "93761005"),
    "rectum": (c.SNOMED, "254582000"), "stomach": (c.SNOMED, "372014001"), "esophagus": (c.SNOMED, "371984007"),
    "pancreas": (c.SNOMED, "372003004"), "gallbladder": (ICD10CM, "C23"), "bladder": (c.SNOMED, "93689003"),
    "uterus": (c.SNOMED, "702369008"), "cervix": (c.SNOMED, "372024009"), "ovary": (c.SNOMED, "93934004"),
    "head_neck": (c.SNOMED, "271323007"), "myeloma": (ICD10CM, "C90.0"), "lymphoma": (c.SNOMED, "118601006"),
    "melanoma": (c.SNOMED, "93655004"), "soft_tissue_sarcoma": (c.SNOMED, "372010005"),
    "osteosarcoma": (c.SNOMED, "1163405004"), "neuroendocrine": (c.SNOMED, "1290125003"),
    "testis_germ_cell": (c.SNOMED, "94087009"), "unknown_primary": (ICD10CM, "C80.1"),
    "other": (c.SNOMED, "94096009"),
}  # fmt: skip

#: Level -> TG263 vertebral-body code (the first family of ``codes.VERTEBRA_BODY_SNOMED``).
LEVEL_SNOMED: dict[str, str] = {}
for _code, _level in c.VERTEBRA_BODY_SNOMED.items():
    LEVEL_SNOMED.setdefault(_level, _code)

#: Imaging region -> series.bodySite (codes of ``codes.SPINE_REGION_SNOMED``; cervical has no region code
#: there, so it is given by name, which the importer reads).
REGION_SITE: dict[str, dict[str, str]] = {
    "whole_spine": {"system": c.SNOMED, "code": "421060004", "display": "Vertebral column"},
    "thoracic": {"system": c.SNOMED, "code": "35769007", "display": "Bone structure of thoracic vertebra"},
    "lumbar": {"system": c.SNOMED, "code": "73903008", "display": "Bone structure of lumbar vertebra"},
    "sacral": {"system": c.SNOMED, "code": "87141009", "display": "Sacral vertebra structure"},
    "cervical": {"display": "Cervical spine"},
}
MODALITY_DICOM = {"mri": "MR", "ct": "CT", "pet_ct": "PT", "bone_scan": "NM", "xray": "DX"}
RT_CODE = {"system": c.SNOMED, "code": "1217123003", "display": "Radiotherapy course of treatment"}
RT_TEXT = {
    "cebrt": "Conventional external beam radiotherapy (cEBRT)",
    "sbrt": "Stereotactic body radiotherapy (SBRT)",
    "srs": "Stereotactic radiosurgery (SRS)",
}
#: Surgery modality -> text the importer's ``codes.SURGERY_TEXT`` maps back to it (no code in any source).
SURGERY_NAME = {
    "bkp": "Balloon kyphoplasty",
    "pvp": "Percutaneous vertebroplasty",
    "separation": "Separation surgery",
    "en_bloc": "En bloc resection",
    "tes": "Total en bloc spondylectomy",
    "decompression_fixation": "Decompression and fixation",
    "other_spine_surgery": "Other spine surgery (corpectomy, spondylectomy, vertebrectomy or similar)",
}
ZOLEDRONIC_RXCUI = "77655"  # codes.BMA_RXNORM: ingredient
AGENT_NAME = {"denosumab": "denosumab", "zoledronic_acid": "zoledronic acid", "pamidronate": "pamidronate"}
COMPONENTS = ("pain", "lesion_type", "alignment", "collapse", "posterolateral", "bilsky_escc")
_COMPONENT_CODE = {field: code for code, field in c.SPINE_COMPONENTS.items()}
_ID_RX = re.compile(r"^([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")


class ExportError(LookupError):
    """The patient cannot be exported (no such patient)."""


@dataclass
class PatientExport:
    bundle: dict[str, Any]
    #: what the Bundle leaves out -> rows (facts the importer has no mapping for, or that it would change)
    left_out: dict[str, int] = field(default_factory=dict)
    #: rows the importer will make from the Bundle that the patient does not have (what -> rows)
    added: dict[str, int] = field(default_factory=dict)

    def as_bytes(self) -> bytes:
        return (json.dumps(self.bundle, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10]


def _rows(conn, sql: str, pid: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(text(sql), {"pid": pid}).mappings()]


def _concept(system: str, code: str, display: str | None = None, text_: str | None = None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out: dict[str, Any] = {"coding": [coding]}
    if text_:
        out["text"] = text_
    return out


def _level_site(levels: list[str]) -> dict | None:
    codings = [{"system": c.SNOMED, "code": LEVEL_SNOMED[lv], "display": lv} for lv in levels if lv in LEVEL_SNOMED]
    if len(codings) != len(levels) or not codings:
        return None
    return {"coding": codings, "text": "–".join(levels)}


def _span(level: str, end: str | None) -> list[str]:
    from surveillance.state import lesion_levels

    if not end or end == level:
        return [level]
    return [lv.value for lv in lesion_levels(level, end)]


class _Builder:
    def __init__(self, patient: dict[str, Any]) -> None:
        self.patient = patient
        self.entries: list[dict] = []
        self.used: set[tuple[str, str]] = set()
        self.left_out: dict[str, int] = defaultdict(int)
        self.added: dict[str, int] = defaultdict(int)
        self.patient_url = ""

    def rid(self, rtype: str, table: str, prefix: str, row: dict) -> str:
        """The resource id: the FHIR id the row was imported with, else ``<prefix>-<row id>``."""
        sid, system = row.get("source_id"), row.get("source_system")
        if system == "fhir" and sid:
            m = _ID_RX.match(sid)
            if m and m.group(1) == rtype and (rtype, m.group(2)) not in self.used:
                return m.group(2)
        candidate = f"{prefix}-{row['id']}"
        while (rtype, candidate) in self.used:
            candidate += "x"
        return candidate

    def add(self, resource: dict, table: str | None = None, row_id: Any = None) -> str:
        rtype, rid = resource["resourceType"], resource["id"]
        self.used.add((rtype, rid))
        if table is not None:
            resource["identifier"] = [
                {"system": ROW_SYSTEM, "value": f"{table}/{row_id}"},
                *resource.get("identifier", []),
            ]
        url = "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{BASE}/{rtype}/{rid}"))
        self.entries.append({"fullUrl": url, "resource": resource})
        return url

    def subject(self) -> dict:
        return {"reference": self.patient_url}

    def gap(self, what: str, n: int = 1) -> None:
        if n:
            self.left_out[what] += n


def _patient_resource(p: dict[str, Any]) -> dict:
    system, sid = p.get("source_system"), p.get("source_id")
    m = _ID_RX.match(sid or "") if system == "fhir" else None
    if m and m.group(1) == "Patient":
        rid = m.group(2)
    else:
        rid = "p-" + hashlib.sha256(f"{MRN_SYSTEM}|{p['mrn']}".encode()).hexdigest()[:32]
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": rid,
        "identifier": [
            {
                "use": "usual",
                "type": _concept(V2_0203, "MR", "Medical record number"),
                "system": MRN_SYSTEM,
                "value": p["mrn"],
            }
        ],
        "name": [{"use": "official", "family": p["family_name"], "given": [p["given_name"]]}],
    }
    sex = (p.get("sex") or "").strip().lower()
    gender = {"f": "female", "female": "female", "m": "male", "male": "male", "other": "other"}.get(sex)
    if gender:
        res["gender"] = gender
    if sex and gender != sex:
        p["_sex_changed"] = True
    if p.get("birth_date") is not None:
        res["birthDate"] = _iso(p["birth_date"])
    if p.get("status") == "deceased" and p.get("deceased_on") is not None:
        res["deceasedDateTime"] = _iso(p["deceased_on"])
    return res


def _primary_condition(b: _Builder, p: dict[str, Any]) -> None:
    site, histology = p.get("primary_site"), p.get("primary_histology")
    if not site and not histology:
        return
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "id": f"{b.patient['_rid'][:55]}-primary",
        "clinicalStatus": _concept(CLINICAL, "active"),
        "verificationStatus": _concept(VERIFICATION, "confirmed"),
        "category": [_concept("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item")],
        "subject": b.subject(),
    }
    if site:
        system, code = PRIMARY_CODES[site]
        # no display and no text: the importer would take either as the histology
        res["meta"] = {"profile": [f"{MCODE_SD}/mcode-primary-cancer-condition"]}
        res["code"] = {"coding": [{"system": system, "code": code}]}
        res["note"] = [{"text": f"primary site: {site}"}]
        if histology:
            res["extension"] = [
                {"url": f"{MCODE_SD}/mcode-histology-morphology-behavior", "valueCodeableConcept": {"text": histology}}
            ]
    else:  # histology only: the importer derives the site from the text
        res["code"] = {"text": histology}
    b.add(res, "patient.primary_cancer", p["id"])


def _build(conn, patient_id: int) -> _Builder:
    found = _rows(conn, "SELECT * FROM patient WHERE id = :pid", patient_id)
    if not found:
        raise ExportError(f"no patient with id {patient_id}")
    p = found[0]
    b = _Builder(p)
    pres = _patient_resource(p)
    p["_rid"] = pres["id"]
    b.patient_url = b.add(pres, "patient", p["id"])
    for col, what in (
        ("department", "patient.department"),
        ("hormone_dependent", "patient.hormone_dependent"),
        ("molecular_targeted_therapy", "patient.molecular_targeted_therapy"),
        ("previous_chemotherapy", "patient.previous_chemotherapy"),
        ("fit_for_surgery", "patient.fit_for_surgery"),
        ("zoledronic_regimen", "patient.zoledronic_regimen"),
        ("bma_not_indicated_reason", "patient.bma_not_indicated_reason"),
        ("denosumab_transition_plan", "patient.denosumab_transition_plan"),
        ("assigned_nurse_id", "patient.assigned_nurse"),
    ):
        b.gap(what, int(p.get(col) is not None))
    if p.get("_sex_changed"):
        b.gap(f"patient.sex {p['sex']!r} (written as FHIR gender {pres.get('gender', 'none')!r})")
    if p.get("status") in ("transferred", "on_hold"):
        b.gap(f"patient.status {p['status']}")
    elif p.get("status") == "deceased" and p.get("deceased_on") is None:
        b.gap("patient.status deceased without a date")
    if p.get("status_on") is not None and not (p.get("status") == "deceased" and p["status_on"] == p["deceased_on"]):
        b.gap("patient.status_on")
    _primary_condition(b, p)

    _conditions_and_lesions(b, conn, patient_id)
    _performance(b, conn, patient_id)
    _labs(b, conn, patient_id)
    _bma(b, conn, patient_id)
    _procedures(b, conn, patient_id)
    _imaging(b, conn, patient_id)
    for table in ("neuro_status", "dental_exam"):
        n = conn.execute(text(f"SELECT COUNT(*) FROM {table} WHERE patient_id = :pid"), {"pid": patient_id}).scalar()
        b.gap(table, int(n or 0))
    return b


def _conditions_and_lesions(b: _Builder, conn, pid: int) -> None:
    # Cancer Locomo conditions: an open bone metastasis is a Condition 94222008; the rest has no mapping
    bone_conditions: dict[str, dict] = {}  # onset day -> its Condition (lesions first seen that day join it)
    for row in _rows(conn, "SELECT * FROM locomo_condition WHERE patient_id = :pid ORDER BY onset_on, id", pid):
        if row["condition"] != "bone_metastasis" or row["resolved_on"] is not None:
            b.gap(f"locomo_condition {row['condition']}" + (" (resolved)" if row["resolved_on"] else ""))
            continue
        day = _iso(row["onset_on"])
        if day in bone_conditions:
            b.gap("locomo_condition bone_metastasis (a second one on the same day)")
            continue
        if row["management_plan"] or row["orthopaedic_review_on"]:
            b.gap("locomo_condition management plan / orthopaedic review")
        bone_conditions[day] = _bone_condition(b, row, "locomo_condition", "locomo", day)

    # brain metastases (the only part of metastatic_status the importer reads)
    for row in _rows(conn, "SELECT * FROM metastatic_status WHERE patient_id = :pid ORDER BY recorded_on, id", pid):
        if row["brain_metastases"]:
            day = _iso(row["recorded_on"])
            b.add(
                {
                    "resourceType": "Condition",
                    "id": b.rid("Condition", "metastatic_status", "brain", row),
                    "clinicalStatus": _concept(CLINICAL, "active"),
                    "verificationStatus": _concept(VERIFICATION, "confirmed"),
                    "code": _concept(c.SNOMED, "94225005", "Secondary malignant neoplasm of brain"),
                    "subject": b.subject(),
                    "onsetDateTime": day,
                },
                "metastatic_status",
                row["id"],
            )
        others = [
            k
            for k in (
                "visceral_status",
                "visceral_treatable",
                "visceral_removable",
                "extraspinal_bone_metastases",
                "vertebral_body_metastases",
                "extraspinal_pathological_fracture",
            )
            if row[k] is not None
        ]
        if others or not row["brain_metastases"]:
            b.gap("metastatic_status (all but brain metastases)")

    # spinal lesions and their assessments
    lesions = _rows(conn, "SELECT * FROM spinal_lesion WHERE patient_id = :pid ORDER BY first_seen_on, id", pid)
    assessments: dict[int, list[dict]] = defaultdict(list)
    for row in _rows(conn, "SELECT * FROM lesion_assessment WHERE patient_id = :pid ORDER BY assessed_on, id", pid):
        if any(row[k] is not None for k in COMPONENTS):
            assessments[row["lesion_id"]].append(row)
        else:
            b.gap("lesion_assessment without any component")
    active_levels: set[str] = set()
    for lesion in lesions:
        if not lesion["active"]:
            b.gap("spinal_lesion (inactive)")
            b.gap("lesion_assessment (of a lesion left out)", len(assessments.get(lesion["id"], [])))
            continue
        if lesion["level"] in active_levels:
            b.gap("spinal_lesion (a second active lesion at the same level)")
            b.gap("lesion_assessment (of a lesion left out)", len(assessments.get(lesion["id"], [])))
            continue
        span = _span(lesion["level"], lesion["level_span_end"])
        site = _level_site(span)
        if site is None:
            b.gap(f"spinal_lesion at {lesion['level']} (no SNOMED CT code)")
            b.gap("lesion_assessment (of a lesion left out)", len(assessments.get(lesion["id"], [])))
            continue
        active_levels.add(lesion["level"])
        if lesion["wbb_zones"] or lesion["wbb_layers"] or lesion["wbb_numbering"]:
            b.gap("spinal_lesion WBB zones/layers")
        done = assessments.get(lesion["id"], [])
        if not done and any(lesion[k] is not None for k in COMPONENTS):
            done = [dict(lesion, assessed_on=lesion["assessed_on"] or lesion["first_seen_on"], _own=True)]
        first_seen = _iso(lesion["first_seen_on"])
        days = [_iso(a["assessed_on"]) for a in done]
        if not days or days[0] != first_seen:
            # first seen before any assessment: a bone-metastasis Condition dated then
            if len(span) > 1:
                b.gap("spinal_lesion span (first seen before its first assessment: levels as one lesion)")
            cond = bone_conditions.get(first_seen)
            single = _level_site([lesion["level"]])
            if cond is None:
                cond = _bone_condition(b, _base_source(lesion), "spinal_lesion", "lesion", first_seen)
                bone_conditions[first_seen] = cond
                b.added["locomo_condition bone_metastasis (a bone-metastasis Condition is one)"] += 1
            cond.setdefault("bodySite", []).append(single)
        seen_days: set[str] = set()
        for i, a in enumerate(done):
            day = _iso(a["assessed_on"])
            if day in seen_days:
                b.gap("lesion_assessment (a second one of the lesion on the same day)")
                continue
            seen_days.add(day)
            own = a.get("_own")
            row = lesion if own else a
            res = {
                "resourceType": "Observation",
                "id": b.rid("Observation", "spinal_lesion", "sins", lesion)
                if i == 0
                else b.rid("Observation", "lesion_assessment", "sinsa", a),
                "status": "final",
                "category": [_concept(OBS_CATEGORY, "imaging", "Imaging")],
                "code": _concept(c.SPINE_CS, "sins-assessment", "SINS / ESCC assessment"),
                "subject": b.subject(),
                "effectiveDateTime": day,
                "bodySite": site if i == 0 else _level_site([lesion["level"]]),
                "component": [
                    {
                        "code": _concept(c.SPINE_CS, _COMPONENT_CODE[k]),
                        "valueCodeableConcept": _concept(c.SPINE_CS, str(a[k])),
                    }
                    for k in COMPONENTS
                    if a[k] is not None
                ],
            }
            b.add(res, "spinal_lesion" if (own or i == 0) else "lesion_assessment", row["id"])


def _bone_condition(b: _Builder, row: dict, table: str, prefix: str, day: str | None) -> dict:
    res = {
        "resourceType": "Condition",
        "id": b.rid("Condition", table, prefix, row),
        "meta": {"profile": [f"{MCODE_SD}/mcode-secondary-cancer-condition"]},
        "clinicalStatus": _concept(CLINICAL, "active"),
        "verificationStatus": _concept(VERIFICATION, "confirmed"),
        "code": _concept(c.SNOMED, "94222008", "Secondary malignant neoplasm of bone"),
        "subject": b.subject(),
        "onsetDateTime": day,
    }
    b.add(res, table, row["id"])
    return res


def _performance(b: _Builder, conn, pid: int) -> None:
    for row in _rows(conn, "SELECT * FROM performance_status WHERE patient_id = :pid ORDER BY recorded_on, id", pid):
        for col, loinc, display, prefix in (
            ("ecog", c.ECOG_LOINC, "ECOG performance status", "ecog"),
            ("kps", c.KPS_LOINC, "Karnofsky performance status", "kps"),
        ):
            if row[col] is None:
                continue
            b.add(
                {
                    "resourceType": "Observation",
                    "id": b.rid("Observation", "performance_status", prefix, row),
                    "status": "final",
                    "category": [_concept(OBS_CATEGORY, "survey", "Survey")],
                    "code": _concept(c.LOINC, loinc, display),
                    "subject": b.subject(),
                    "effectiveDateTime": _iso(row["recorded_on"]),
                    "valueInteger": int(row[col]),
                },
                "performance_status",
                row["id"],
            )


def _labs(b: _Builder, conn, pid: int) -> None:
    for row in _rows(conn, "SELECT * FROM lab_result WHERE patient_id = :pid ORDER BY collected_on, id", pid):
        definition = LABS[LabTest(row["test"])]
        loinc = row["loinc"] if row["loinc"] in LOINC_TO_TEST else definition.loinc[0]
        unit = definition.unit
        ucum = "/uL" if unit == "/µL" else unit
        b.add(
            {
                "resourceType": "Observation",
                "id": b.rid("Observation", "lab_result", "lab", row),
                "status": "final",
                "category": [_concept(OBS_CATEGORY, "laboratory", "Laboratory")],
                "code": _concept(c.LOINC, loinc, definition.label),
                "subject": b.subject(),
                "effectiveDateTime": _iso(row["collected_on"]),
                "valueQuantity": {"value": float(row["value"]), "unit": unit, "system": UCUM, "code": ucum},
            },
            "lab_result",
            row["id"],
        )


def _bma(b: _Builder, conn, pid: int) -> None:
    for row in _rows(conn, "SELECT * FROM bma_administration WHERE patient_id = :pid ORDER BY given_on, id", pid):
        agent = row["agent"]
        if agent == "denosumab" and row["dose_mg"] is None:
            b.gap("bma_administration denosumab without a dose (the importer refuses it)")
            continue
        if agent == "zoledronic_acid":
            medication = _concept(c.RXNORM, ZOLEDRONIC_RXCUI, "zoledronic acid", AGENT_NAME[agent])
        else:
            medication = {"text": AGENT_NAME[agent]}
        res: dict[str, Any] = {
            "resourceType": "MedicationAdministration",
            "id": b.rid("MedicationAdministration", "bma_administration", "bma", row),
            "status": "completed",
            "medicationCodeableConcept": medication,
            "subject": b.subject(),
            "effectiveDateTime": _iso(row["given_on"]),
        }
        if row["dose_mg"] is not None:
            res["dosage"] = {"dose": {"value": float(row["dose_mg"]), "unit": "mg", "system": UCUM, "code": "mg"}}
        b.add(res, "bma_administration", row["id"])


def _procedures(b: _Builder, conn, pid: int) -> None:
    events = _rows(conn, "SELECT * FROM skeletal_event WHERE patient_id = :pid ORDER BY occurred_on, id", pid)
    free: dict[tuple[str, str | None, str | None], list[dict]] = defaultdict(list)
    for e in events:
        free[(e["event_type"], _iso(e["occurred_on"]), e["level"])].append(e)
    for row in _rows(conn, "SELECT * FROM treatment WHERE patient_id = :pid ORDER BY started_on, id", pid):
        kind = row["kind"]
        if kind == "systemic":
            b.gap(f"treatment systemic ({row['modality']})")
            continue
        if kind == "surgery" and row["modality"] not in SURGERY_NAME:
            b.gap(f"treatment surgery {row['modality']} (no name the importer maps back)")
            continue
        if row["level"] is not None and row["level"] not in LEVEL_SNOMED:
            b.gap(f"treatment at {row['level']} (no SNOMED CT code)")
            continue
        start, end = _iso(row["started_on"]), _iso(row["ended_on"])
        sre_type = "radiation_to_bone" if kind == "radiotherapy" else "surgery_to_bone"
        pair = free.get((sre_type, start, row["level"]))
        sre = pair.pop(0) if pair else None
        if sre is None:
            b.added[f"skeletal_event {sre_type} (the importer makes every spinal {kind} one)"] += 1
        if row["emergency"] or (sre and sre["emergency"]):
            b.gap("treatment / skeletal_event emergency flag")
        if row["separation_margin_mm"] is not None:
            b.gap("treatment separation_margin_mm")
        if kind == "radiotherapy":
            code = dict(_concept(RT_CODE["system"], RT_CODE["code"], RT_CODE["display"]), text=RT_TEXT[row["modality"]])
        else:
            code = {"text": SURGERY_NAME[row["modality"]]}
        site = _level_site([row["level"]]) if row["level"] else {"coding": [REGION_SITE["whole_spine"]]}
        res: dict[str, Any] = {
            "resourceType": "Procedure",
            "id": b.rid("Procedure", "treatment", "tx", _base_source(row)),
            "status": "completed",
            "code": code,
            "subject": b.subject(),
            "bodySite": [site],
        }
        if end:
            res["performedPeriod"] = {"start": start, "end": end}
        else:
            res["performedDateTime"] = start
        if kind == "radiotherapy" and (row["dose_gy"] is not None or row["fractions"] is not None):
            sub = []
            if row["dose_gy"] is not None:
                sub.append(
                    {
                        "url": "totalDoseDelivered",
                        "valueQuantity": {"value": float(row["dose_gy"]), "unit": "Gy", "system": UCUM, "code": "Gy"},
                    }
                )
            if row["fractions"] is not None:
                sub.append({"url": "fractionsDelivered", "valueUnsignedInt": int(row["fractions"])})
            res["extension"] = [{"url": f"{MCODE_SD}/mcode-radiotherapy-dose-delivered-to-volume", "extension": sub}]
        b.add(res, "treatment", row["id"])
    for left in free.values():
        for e in left:
            b.gap(f"skeletal_event {e['event_type']}")


def _base_source(row: dict) -> dict:
    """A treatment imported from ``Procedure/x#T12`` is exported as ``Procedure/x`` again."""
    sid = row.get("source_id")
    if row.get("source_system") == "fhir" and sid and "#" in sid:
        return dict(row, source_id=sid.split("#", 1)[0])
    return row


def _imaging(b: _Builder, conn, pid: int) -> None:
    for row in _rows(conn, "SELECT * FROM imaging_study WHERE patient_id = :pid ORDER BY performed_on, id", pid):
        rid = b.rid("ImagingStudy", "imaging_study", "img", row)
        series: dict[str, Any] = {
            "uid": "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{BASE}/ImagingStudy/{rid}/series").int),
            "modality": {"system": DICOM, "code": MODALITY_DICOM[row["modality"]]},
        }
        if row["region"] in REGION_SITE:
            series["bodySite"] = REGION_SITE[row["region"]]
        elif row["region"] == "other" and c.region_from_text(row["findings"]):
            b.gap("imaging_study region 'other' whose findings name a spinal region (read back as that region)")
        res: dict[str, Any] = {
            "resourceType": "ImagingStudy",
            "id": rid,
            "status": "available",
            "modality": [series["modality"]],
            "subject": b.subject(),
            "started": _iso(row["performed_on"]),
            "series": [series],
        }
        if row["findings"]:
            res["description"] = row["findings"]
        b.add(res, "imaging_study", row["id"])


def validate_bundle(bundle: dict) -> None:
    """Raise when ``fhir.resources`` (R4B models, which read R4 JSON) refuses the Bundle or any resource in it."""
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def patient_export(engine: Engine, patient_id: int, *, now: datetime | None = None) -> PatientExport:
    """The patient's Bundle (validated) and what it leaves out."""
    # one snapshot: a fact written while the export reads cannot leave a half-consistent file
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            b = _build(conn, int(patient_id))
    stamp = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    bundle = {
        "resourceType": "Bundle",
        "id": f"export-{b.patient['_rid']}"[:64],
        "meta": {"lastUpdated": stamp.isoformat().replace("+00:00", "Z")},
        "identifier": {"system": f"{BASE}/NamingSystem/export", "value": f"{b.patient['_rid']}/{stamp:%Y%m%dT%H%M%SZ}"},
        "type": "collection",
        "timestamp": stamp.isoformat().replace("+00:00", "Z"),
        "entry": b.entries,
    }
    validate_bundle(bundle)
    return PatientExport(
        bundle, {k: v for k, v in sorted(b.left_out.items()) if v}, {k: v for k, v in sorted(b.added.items()) if v}
    )


def patient_bundle(engine: Engine, patient_id: int, *, now: datetime | None = None) -> dict:
    """One patient as a FHIR R4 ``collection`` Bundle (validated with ``fhir.resources``)."""
    return patient_export(engine, patient_id, now=now).bundle


def patient_id_for_mrn(engine: Engine, mrn: str) -> int:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT id FROM patient WHERE mrn = :mrn"), {"mrn": mrn}).scalar()
    if found is None:
        raise ExportError(f"no patient with MRN {mrn!r}")
    return int(found)


def export_patient_file(engine: Engine, identity, patient_id: int, *, now: datetime) -> tuple[bytes, PatientExport]:
    """The Bundle as JSON bytes with its disclosure recorded (``export.patient_fhir``); no file without the event."""
    from db.engine import write_session
    from surveillance import audit, disclosure
    from surveillance.access import Action, PermissionDenied, in_scope, require

    require(identity, Action.EXPORT)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT assigned_nurse_id, department FROM patient WHERE id = :pid"), {"pid": patient_id}
        ).first()
    if row is None:
        raise ExportError(f"no patient with id {patient_id}")
    # the user's own patients only: a break-glass grant opens the record to read, not to take away
    if not in_scope(identity, assigned_nurse_id=row[0], department=row[1]):
        with write_session(engine) as session:
            audit.record(session, actor=identity.actor, action="export.patient_fhir", patient_id=patient_id,
                         outcome="denied", detail={"reason": "patient outside the user's scope"}, now=now)  # fmt: skip
        raise PermissionDenied("this patient is not in your caseload")
    export = patient_export(engine, patient_id, now=now)
    content = disclosure.export_file(
        engine,
        identity,
        action="export.patient_fhir",
        patient_ids=[patient_id],
        file_format="fhir+json",
        build=export.as_bytes,
        now=now,
        detail={"resources": len(export.bundle["entry"]), "left_out": sum(export.left_out.values())},
    )
    return content, export


__all__ = [
    "MRN_SYSTEM",
    "ROW_SYSTEM",
    "ExportError",
    "PatientExport",
    "export_patient_file",
    "patient_bundle",
    "patient_export",
    "patient_id_for_mrn",
    "validate_bundle",
]
