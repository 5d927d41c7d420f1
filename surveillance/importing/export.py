"""One patient as a FHIR R4 ``collection`` Bundle that the product's own importer reads back.

:func:`patient_bundle` ``(engine, patient_id, *, now=None) -> dict`` builds the
Bundle; :func:`patient_export` also says which stored facts the Bundle leaves
out (``left_out``: what -> rows) and which rows the importer would add
(``added``) — both empty for every demo patient (``tests/importing/test_fhir_roundtrip.py``).
The CLI (``python -m surveillance export patient --mrn MRN``) and the patient
page's download go through :func:`export_patient_file`, which records the
disclosure (:func:`surveillance.disclosure.export_file`).

Every resource is written **in the form the importer maps back**: standard codes
where a shared source gives one, else the product's own code system
(:data:`~surveillance.importing.codes.SURVEILLANCE_CS`) and extensions
(``codes.EXT``/name), which the importer reads only where they appear
(``docs/import-format.md``, "The product's codes and extensions"):

* Patient — identifier typed ``MR`` (v2-0203) in :data:`MRN_SYSTEM`, official
  name, ``gender``, ``birthDate``, ``deceasedDateTime``; the rest of the patient
  row (department, flags, status and its date, registration day, BMA regimen and
  plans, the assigned nurse's user name) as extensions.
* Condition — the primary cancer (a SNOMED CT / ICD-10-CM code that
  ``surveillance.scoring.histology.site_from_coding`` maps to exactly the
  patient's ``primary_site``; the histology text in the mCODE histology
  extension); each Cancer Locomo condition (bone metastasis SNOMED 94222008,
  the others in the product's code system; resolution as ``abatementDateTime``);
  brain metastases alone 94225005; pathological fracture, cord compression and
  hypercalcaemia SREs (fhir-data §4's model; product codes: the notes verify no
  standard code).
* Observation — ECOG 89247-1 and Karnofsky 89243-0 (``valueInteger``; a record
  with both is the ECOG Observation with a Karnofsky component); labs by LOINC
  with UCUM units; each lesion assessment as ``sins-assessment`` in
  :data:`~surveillance.importing.codes.SPINE_CS` (the lesion's first one with
  its span, first-seen day, WBB and active flag; ``derivedFrom`` its imaging
  study); ``neuro-status`` and ``metastatic-status`` in the product's code system.
* MedicationAdministration — bone-modifying agents (RxNorm 77655 zoledronic
  acid; denosumab and pamidronate by ingredient name) with the dose in mg;
  systemic therapy (mCODE cancer-related medication administration, the class
  in the product's code system).
* Procedure — spinal radiotherapy (SNOMED 1217123003, technique in the text,
  dose in the mCODE dose-delivered extension) and spinal surgery (by name and
  the product's code), to the vertebra, with the SRE recorded for it (same day,
  type and level) or the extension saying there is none; SREs without a
  treatment; dental examinations; cancer-board cases.
* ImagingStudy — DICOM modality and the spinal region in ``series.bodySite``,
  the product's region in an extension.

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
ROW_SYSTEM = c.ROW_SYSTEM
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
    "mist": "Minimally invasive spine stabilization (MISt)",
}
#: Systemic therapy classes (``surveillance.service.TREATMENTS["systemic"]``): the product stores the class,
#: not the drug, so the medication is the class in the product's code system.
SYSTEMIC_NAME = {
    "chemotherapy": "Chemotherapy",
    "targeted": "Molecular targeted therapy",
    "hormone": "Hormone therapy",
    "immunotherapy": "Immunotherapy",
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
        self.urls: dict[tuple[str, Any], str] = {}  # (table, row id) -> fullUrl

    def rid(self, rtype: str, table: str, prefix: str, row: dict) -> str:
        """The resource id: the FHIR id the row was imported with, else ``<prefix>-<row id>``.

        A row imported from one part of a resource (``Procedure/x#T12``, ``Condition/x#locomo``) is
        exported as that resource's id again.
        """
        sid, system = row.get("source_id"), row.get("source_system")
        if system == "fhir" and sid:
            m = _ID_RX.match(sid.split("#", 1)[0])
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
        if table is not None:
            self.urls.setdefault((table, row_id), url)
        return url

    def subject(self) -> dict:
        return {"reference": self.patient_url}

    def gap(self, what: str, n: int = 1) -> None:
        if n:
            self.left_out[what] += n


def _ext(name: str, kind: str, value: Any) -> dict:
    """One of the product's extensions (``codes.EXT``/name) with ``value<kind>``."""
    if kind == "Boolean":
        value = bool(value)
    elif kind in ("Date",):
        value = _iso(value)
    elif kind in ("Integer",):
        value = int(value)
    return {"url": c.ext_url(name), f"value{kind}": value}


def _own(code: str, display: str | None = None) -> dict:
    """A concept in the product's code system (``codes.SURVEILLANCE_CS``)."""
    return _concept(c.SURVEILLANCE_CS, code, display)


def _patient_resource(p: dict[str, Any], conn) -> dict:
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
    sex = p.get("sex")
    gender = {"f": "female", "female": "female", "m": "male", "male": "male", "other": "other"}.get(
        (sex or "").strip().lower()
    )
    if gender:
        res["gender"] = gender
    if p.get("birth_date") is not None:
        res["birthDate"] = _iso(p["birth_date"])
    if p.get("status") == "deceased" and p.get("deceased_on") is not None:
        res["deceasedDateTime"] = _iso(p["deceased_on"])
    extensions = []
    nurse = None
    if p.get("assigned_nurse_id") is not None:
        nurse = conn.execute(
            text("SELECT username FROM app_user WHERE id = :id"), {"id": p["assigned_nurse_id"]}
        ).scalar()
    values = dict(p, assigned_nurse=nurse)
    if p.get("status") == "deceased" and p.get("deceased_on") is None:
        values["status"] = None  # the importer needs the date of death: left out below
    for name, (column, kind) in c.PATIENT_EXTENSIONS.items():
        if name != "sex" and values.get(column) is not None:
            extensions.append(_ext(name, kind, values[column]))
    if sex and gender != sex:
        extensions.append(_ext("sex", "String", sex))  # written otherwise than the FHIR gender
    if extensions:
        res["extension"] = extensions
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
    else:  # histology only, the site unknown: the product's extension keeps it unknown
        res["code"] = {"text": histology}
        res["extension"] = [_ext("primary-site-unknown", "Boolean", True)]
    b.add(res, "patient.primary_cancer", p["id"])


def _build(conn, patient_id: int) -> _Builder:
    found = _rows(conn, "SELECT * FROM patient WHERE id = :pid", patient_id)
    if not found:
        raise ExportError(f"no patient with id {patient_id}")
    p = found[0]
    b = _Builder(p)
    pres = _patient_resource(p, conn)
    p["_rid"] = pres["id"]
    b.patient_url = b.add(pres, "patient", p["id"])
    if p.get("status") == "deceased" and p.get("deceased_on") is None:
        b.gap("patient.status deceased without a date")
    _primary_condition(b, p)

    _imaging(b, conn, patient_id)  # before the assessments, which name the study they were made on
    _locomo(b, conn, patient_id)
    _metastatic(b, conn, patient_id)
    _lesions(b, conn, patient_id)
    _performance(b, conn, patient_id)
    _neuro(b, conn, patient_id)
    _labs(b, conn, patient_id)
    _bma(b, conn, patient_id)
    _procedures(b, conn, patient_id)
    _dental(b, conn, patient_id)
    _board(b, conn, patient_id)
    return b


def _condition(b: _Builder, rid: str, code: dict, onset: Any, resolved: Any = None) -> dict:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": _concept(CLINICAL, "resolved" if resolved is not None else "active"),
        "verificationStatus": _concept(VERIFICATION, "confirmed"),
        "code": code,
        "subject": b.subject(),
        "onsetDateTime": _iso(onset),
    }
    if resolved is not None:
        res["abatementDateTime"] = _iso(resolved)
    return res


def _locomo(b: _Builder, conn, pid: int) -> None:
    """Cancer Locomo conditions: a bone metastasis as SNOMED 94222008 (mCODE secondary cancer), the others
    in the product's code system; resolution as ``abatementDateTime``, plan and review as extensions."""
    for row in _rows(conn, "SELECT * FROM locomo_condition WHERE patient_id = :pid ORDER BY onset_on, id", pid):
        condition = row["condition"]
        if condition == "bone_metastasis":
            code = _concept(c.SNOMED, "94222008", "Secondary malignant neoplasm of bone")
        else:
            code = _own(condition, condition.replace("_", " ").capitalize())
        res = _condition(b, b.rid("Condition", "locomo_condition", "locomo", row), code, row["onset_on"],
                         row["resolved_on"])  # fmt: skip
        if condition == "bone_metastasis":
            res["meta"] = {"profile": [f"{MCODE_SD}/mcode-secondary-cancer-condition"]}
        extensions = []
        if row["management_plan"]:
            extensions.append(_ext("management-plan", "String", row["management_plan"]))
        if row["orthopaedic_review_on"] is not None:
            extensions.append(_ext("orthopaedic-review", "Date", row["orthopaedic_review_on"]))
        if extensions:
            res["extension"] = extensions
        b.add(res, "locomo_condition", row["id"])


def _metastatic(b: _Builder, conn, pid: int) -> None:
    """A record of brain metastases alone is SNOMED 94225005; any other record is the product's
    ``metastatic-status`` Observation with one component per known value (an unknown stays absent)."""
    for row in _rows(conn, "SELECT * FROM metastatic_status WHERE patient_id = :pid ORDER BY recorded_on, id", pid):
        known = {col: row[col] for col, _kind in c.METASTATIC_COMPONENTS.values() if row[col] is not None}
        if known == {"brain_metastases": known.get("brain_metastases")} and known.get("brain_metastases"):
            res = _condition(b, b.rid("Condition", "metastatic_status", "brain", row),
                             _concept(c.SNOMED, "94225005", "Secondary malignant neoplasm of brain"),
                             row["recorded_on"])  # fmt: skip
            b.add(res, "metastatic_status", row["id"])
            continue
        b.add(
            {
                "resourceType": "Observation",
                "id": b.rid("Observation", "metastatic_status", "meta", row),
                "status": "final",
                "category": [_concept(OBS_CATEGORY, "exam", "Exam")],
                "code": _own(c.METASTATIC_STATUS_CODE, "Metastatic status"),
                "subject": b.subject(),
                "effectiveDateTime": _iso(row["recorded_on"]),
                **({"component": _components(c.METASTATIC_COMPONENTS, row)} if known else {}),
            },
            "metastatic_status",
            row["id"],
        )


def _components(spec: dict[str, tuple[str, str]], row: dict) -> list[dict]:
    out = []
    for code, (column, kind) in spec.items():
        value = row[column]
        if value is None:
            continue
        if kind == "CodeableConcept":
            out.append({"code": _own(code), "valueCodeableConcept": _own(str(value))})
        elif kind == "Boolean":
            out.append({"code": _own(code), "valueBoolean": bool(value)})
        else:
            out.append({"code": _own(code), "valueInteger": int(value)})
    return out


def _lesions(b: _Builder, conn, pid: int) -> None:
    """Each lesion is its SINS/ESCC Observations (the first one: the lesion's span, first-seen day, WBB and,
    when inactive, the inactive flag; one without components for a lesion never assessed)."""
    lesions = _rows(conn, "SELECT * FROM spinal_lesion WHERE patient_id = :pid ORDER BY first_seen_on, id", pid)
    assessments: dict[int, list[dict]] = defaultdict(list)
    for row in _rows(conn, "SELECT * FROM lesion_assessment WHERE patient_id = :pid ORDER BY assessed_on, id", pid):
        if any(row[k] is not None for k in COMPONENTS):
            assessments[row["lesion_id"]].append(row)
        else:
            b.gap("lesion_assessment without any component")
    taken: set[tuple[str, bool]] = set()
    for lesion in lesions:
        active = bool(lesion["active"])
        if (lesion["level"], active) in taken:
            b.gap(f"spinal_lesion (a second {'active' if active else 'inactive'} lesion at the same level)")
            b.gap("lesion_assessment (of a lesion left out)", len(assessments.get(lesion["id"], [])))
            continue
        span = _span(lesion["level"], lesion["level_span_end"])
        site = _level_site(span)
        if site is None:
            b.gap(f"spinal_lesion at {lesion['level']} (no SNOMED CT code)")
            b.gap("lesion_assessment (of a lesion left out)", len(assessments.get(lesion["id"], [])))
            continue
        taken.add((lesion["level"], active))
        done = assessments.get(lesion["id"], [])
        if not done and any(lesion[k] is not None for k in COMPONENTS):
            done = [dict(lesion, assessed_on=lesion["assessed_on"] or lesion["first_seen_on"], _own=True)]
            b.added["lesion_assessment (the lesion's own assessment, recorded without one)"] += 1
        if not done:
            done = [dict(lesion, assessed_on=lesion["first_seen_on"], _own=True, _none=True)]
        seen_days: set[str] = set()
        for i, a in enumerate(done):
            day = _iso(a["assessed_on"])
            if day in seen_days:
                b.gap("lesion_assessment (a second one of the lesion on the same day)")
                continue
            seen_days.add(day)
            own = a.get("_own")
            row = lesion if own else a
            extensions = []
            if i == 0:
                extensions.append(_ext("lesion-first-seen", "Date", lesion["first_seen_on"]))
                for name in ("wbb_zones", "wbb_layers", "wbb_numbering"):
                    if lesion[name]:
                        extensions.append(_ext(name.replace("_", "-"), "String", lesion[name]))
            if not active:
                extensions.append(_ext("lesion-active", "Boolean", False))
            res: dict[str, Any] = {
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
            }
            if extensions:
                res["extension"] = extensions
            if not a.get("_none"):
                res["component"] = [
                    {
                        "code": _concept(c.SPINE_CS, _COMPONENT_CODE[k]),
                        "valueCodeableConcept": _concept(c.SPINE_CS, str(a[k])),
                    }
                    for k in COMPONENTS
                    if a[k] is not None
                ]
            study = b.urls.get(("imaging_study", a.get("imaging_study_id"))) if not own else None
            if study:
                res["derivedFrom"] = [{"reference": study}]
            elif not own and a.get("imaging_study_id") is not None:
                b.gap("lesion_assessment link to an imaging study left out")
            b.add(res, "spinal_lesion" if (own or i == 0) else "lesion_assessment", row["id"])


def _performance(b: _Builder, conn, pid: int) -> None:
    """ECOG 89247-1 and Karnofsky 89243-0; a record holding both is one ECOG Observation with the Karnofsky
    score as a component (so it is one record again)."""
    for row in _rows(conn, "SELECT * FROM performance_status WHERE patient_id = :pid ORDER BY recorded_on, id", pid):
        both = row["ecog"] is not None and row["kps"] is not None
        for col, loinc, display, prefix in (
            ("ecog", c.ECOG_LOINC, "ECOG performance status", "ecog"),
            ("kps", c.KPS_LOINC, "Karnofsky performance status", "kps"),
        ):
            if row[col] is None or (both and col == "kps"):
                continue
            res: dict[str, Any] = {
                "resourceType": "Observation",
                "id": b.rid("Observation", "performance_status", prefix, row),
                "status": "final",
                "category": [_concept(OBS_CATEGORY, "survey", "Survey")],
                "code": _concept(c.LOINC, loinc, display),
                "subject": b.subject(),
                "effectiveDateTime": _iso(row["recorded_on"]),
                "valueInteger": int(row[col]),
            }
            if both:
                res["component"] = [
                    {"code": _concept(c.LOINC, c.KPS_LOINC, "Karnofsky performance status"),
                     "valueInteger": int(row["kps"])}
                ]  # fmt: skip
            b.add(res, "performance_status", row["id"])


def _neuro(b: _Builder, conn, pid: int) -> None:
    for row in _rows(conn, "SELECT * FROM neuro_status WHERE patient_id = :pid ORDER BY recorded_on, id", pid):
        b.add(
            {
                "resourceType": "Observation",
                "id": b.rid("Observation", "neuro_status", "neuro", row),
                "status": "final",
                "category": [_concept(OBS_CATEGORY, "exam", "Exam")],
                "code": _own(c.NEURO_STATUS_CODE, "Neurological status"),
                "subject": b.subject(),
                "effectiveDateTime": _iso(row["recorded_on"]),
                "component": _components(c.NEURO_COMPONENTS, row),
            },
            "neuro_status",
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
    """Treatments and skeletal-related events.

    A spinal radiotherapy or surgery is one Procedure with the SRE recorded for it (same day, type and
    level); one without that SRE says so (extension ``skeletal-related-event`` false).  Systemic therapy is
    an mCODE cancer-related MedicationAdministration.  Any other SRE is a Condition (fracture, cord
    compression, hypercalcaemia: fhir-data §4's model) or a Procedure (radiation or surgery to bone without
    its treatment, a change of antineoplastic therapy), coded in the product's code system.
    """
    from surveillance.scoring.sre import SRE_LABELS, SreType

    events = _rows(conn, "SELECT * FROM skeletal_event WHERE patient_id = :pid ORDER BY occurred_on, id", pid)
    free: dict[tuple[str, str | None, str | None], list[dict]] = defaultdict(list)
    for e in events:
        free[(e["event_type"], _iso(e["occurred_on"]), e["level"])].append(e)
    for row in _rows(conn, "SELECT * FROM treatment WHERE patient_id = :pid ORDER BY started_on, id", pid):
        kind = row["kind"]
        start, end = _iso(row["started_on"]), _iso(row["ended_on"])
        flags = []
        if row["emergency"]:
            flags.append(_ext("emergency", "Boolean", True))
        if kind == "systemic":
            res = {
                "resourceType": "MedicationAdministration",
                "id": b.rid("MedicationAdministration", "treatment", "sys", row),
                "meta": {"profile": [f"{MCODE_SD}/mcode-cancer-related-medication-administration"]},
                "status": "completed" if end else "in-progress",
                "medicationCodeableConcept": _own(row["modality"], SYSTEMIC_NAME.get(row["modality"])),
                "subject": b.subject(),
                "effectivePeriod": {"start": start, **({"end": end} if end else {})},
            }
            if flags:
                res["extension"] = flags
            b.add(res, "treatment", row["id"])
            continue
        if row["level"] is not None and row["level"] not in LEVEL_SNOMED:
            b.gap(f"treatment at {row['level']} (no SNOMED CT code)")
            continue
        sre_type = "radiation_to_bone" if kind == "radiotherapy" else "surgery_to_bone"
        pair = free.get((sre_type, start, row["level"]))
        sre = pair.pop(0) if pair else None
        if sre is None:
            flags.append(_ext("skeletal-related-event", "Boolean", False))
        elif sre["emergency"]:
            flags.append(_ext("sre-emergency", "Boolean", True))
        if row["separation_margin_mm"] is not None:
            flags.append(
                {
                    "url": c.ext_url("separation-margin"),
                    "valueQuantity": {"value": float(row["separation_margin_mm"]), "unit": "mm", "system": UCUM,
                                      "code": "mm"},  # fmt: skip
                }
            )
        if kind == "radiotherapy":
            code = dict(_concept(RT_CODE["system"], RT_CODE["code"], RT_CODE["display"]), text=RT_TEXT[row["modality"]])
        else:
            name = SURGERY_NAME[row["modality"]]
            code = {"coding": [{"system": c.SURVEILLANCE_CS, "code": row["modality"], "display": name}], "text": name}
        site = _level_site([row["level"]]) if row["level"] else {"coding": [REGION_SITE["whole_spine"]]}
        res: dict[str, Any] = {
            "resourceType": "Procedure",
            "id": b.rid("Procedure", "treatment", "tx", row),
            "status": "completed",
            "code": code,
            "subject": b.subject(),
            "bodySite": [site],
        }
        if end:
            res["performedPeriod"] = {"start": start, "end": end}
        else:
            res["performedDateTime"] = start
        extensions = []
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
            extensions.append({"url": f"{MCODE_SD}/mcode-radiotherapy-dose-delivered-to-volume", "extension": sub})
        if extensions or flags:
            res["extension"] = extensions + flags
        b.add(res, "treatment", row["id"])
    for left in free.values():
        for e in left:
            event = e["event_type"]
            display = SRE_LABELS.get(SreType(event), event)
            flags = [_ext("skeletal-related-event", "Boolean", True)]
            if e["emergency"]:
                flags.append(_ext("emergency", "Boolean", True))
            site = [_level_site([e["level"]])] if e["level"] in LEVEL_SNOMED else []
            if e["level"] is not None and not site:
                b.gap(f"skeletal_event at {e['level']} (no SNOMED CT code)")
                continue
            if event in c.SRE_AS_CONDITION:
                res = _condition(b, b.rid("Condition", "skeletal_event", "sre", e), _own(event, display),
                                 e["occurred_on"])  # fmt: skip
            else:
                res = {
                    "resourceType": "Procedure",
                    "id": b.rid("Procedure", "skeletal_event", "sre", e),
                    "status": "completed",
                    "code": _own(event, display),
                    "subject": b.subject(),
                    "performedDateTime": _iso(e["occurred_on"]),
                }
            if site:
                res["bodySite"] = site
            res["extension"] = flags
            b.add(res, "skeletal_event", e["id"])


def _dental(b: _Builder, conn, pid: int) -> None:
    for row in _rows(conn, "SELECT * FROM dental_exam WHERE patient_id = :pid ORDER BY examined_on, id", pid):
        res: dict[str, Any] = {
            "resourceType": "Procedure",
            "id": b.rid("Procedure", "dental_exam", "dental", row),
            "status": "completed",
            "code": _own(c.DENTAL_EXAM_CODE, "Dental examination"),
            "subject": b.subject(),
            "performedDateTime": _iso(row["examined_on"]),
            "extension": [_ext("onj-suspected", "Boolean", bool(row["onj_suspected"]))],
        }
        if row["findings"]:
            res["note"] = [{"text": row["findings"]}]
        b.add(res, "dental_exam", row["id"])


def _board(b: _Builder, conn, pid: int) -> None:
    """A cancer-board case: queued (in progress) or decided (completed, the decision as the outcome)."""
    for row in _rows(conn, "SELECT * FROM board_case WHERE patient_id = :pid ORDER BY queued_on, id", pid):
        res: dict[str, Any] = {
            "resourceType": "Procedure",
            "id": f"board-{row['id']}",
            "status": "completed" if row["decided_on"] is not None else "in-progress",
            "code": _own(c.BOARD_REVIEW_CODE, "Cancer board review"),
            "subject": b.subject(),
            "performedPeriod": {"start": _iso(row["queued_on"]),
                                **({"end": _iso(row["decided_on"])} if row["decided_on"] is not None else {})},
            "reasonCode": [{"text": row["reason"]}],
        }  # fmt: skip
        if row["decision"]:
            res["outcome"] = {"text": row["decision"]}
        if row["decided_by"]:
            res["extension"] = [_ext("decided-by", "String", row["decided_by"])]
        b.add(res, "board_case", row["id"])


def _imaging(b: _Builder, conn, pid: int) -> None:
    for row in _rows(conn, "SELECT * FROM imaging_study WHERE patient_id = :pid ORDER BY performed_on, id", pid):
        rid = b.rid("ImagingStudy", "imaging_study", "img", row)
        series: dict[str, Any] = {
            "uid": "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{BASE}/ImagingStudy/{rid}/series").int),
            "modality": {"system": DICOM, "code": MODALITY_DICOM[row["modality"]]},
        }
        if row["region"] in REGION_SITE:
            series["bodySite"] = REGION_SITE[row["region"]]
        res: dict[str, Any] = {
            "resourceType": "ImagingStudy",
            "id": rid,
            "status": "available",
            "modality": [series["modality"]],
            "subject": b.subject(),
            "started": _iso(row["performed_on"]),
            "series": [series],
            # the region as the product recorded it ("other" is not a body site, and findings may name one)
            "extension": [_ext("imaging-region", "Code", row["region"])],
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
