"""Shared helpers of the import tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

SAMPLES = Path(__file__).parents[1] / "fixtures" / "fhir-samples"  # the copy of /work/shared/fhir-samples
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
FACT_TABLES = (
    "patient",
    "spinal_lesion",
    "lesion_assessment",
    "imaging_study",
    "performance_status",
    "neuro_status",
    "lab_result",
    "metastatic_status",
    "bma_administration",
    "treatment",
    "skeletal_event",
    "locomo_condition",
)


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in FACT_TABLES}


def rows(engine, sql: str, **params) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def bundle(*resources: dict, kind: str = "collection") -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}).encode()


def patient(pid: str = "p1", mrn: str = "T-0001", birth: str = "1960-05-01") -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "value": mrn,
            }
        ],
        "name": [{"family": "Test", "given": ["Pat"]}],
        "gender": "female",
        "birthDate": birth,
    }


def ecog(oid: str, value: int, day: str = "2026-10-01", pid: str = "p1") -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "89247-1"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day,
        "valueInteger": value,
    }
