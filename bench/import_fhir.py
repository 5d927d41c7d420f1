"""``python -m bench.import_fhir --patients N [--per-file K] [--database-url URL] [--json]``: FHIR import throughput.

Generates a synthetic FHIR R4 corpus (fictional, seeded): N patients in
transaction Bundles of K patients each (default 1,000).  Each patient has a
Patient, a primary cancer Condition (SNOMED), a bone-metastasis Condition on a
vertebra (SNOMED vertebral-body code), an ECOG Observation, albumin (g/L) and
calcium (mmol/L) Observations (unit conversion), a bone-modifying agent
MedicationAdministration, a SINS/ESCC assessment in the product's code system,
and for every third patient a radiotherapy Procedure to that vertebra — 8–9
resources.  Then it imports every file into an empty migrated database
(SQLite in a temporary directory by default) with ``import_file`` — parse,
``fhir.resources`` validation, one transaction per file, state refresh and the
re-scoring of the imported patients — and reports the wall time, and a second
import of the same files (all ``unchanged``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

PRIMARIES = (("254837009", "Malignant neoplasm of breast"), ("399068003", "Malignant tumor of prostate"),
             ("254637007", "Non-small cell lung cancer"))  # fmt: skip
VERTEBRAE = (("56094003", "T1"), ("77435000", "T8"), ("52120002", "T11"), ("280849005", "T12"),
             ("61032001", "L1"), ("55492004", "L3"), ("21799000", "L5"))  # fmt: skip
SPINE_CS = "https://cancer-locomo.example.org/fhir/CodeSystem/spine-assessment"


def _patient_entries(i: int, rng: random.Random, today: date) -> list[dict]:
    pid = f"bench-{i:07d}"
    ref = {"reference": f"Patient/{pid}"}
    dx = today - timedelta(days=rng.randint(60, 900))
    vb_code, vb_level = rng.choice(VERTEBRAE)
    primary = rng.choice(PRIMARIES)
    sct = "http://snomed.info/sct"
    res: list[dict] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [
                {
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                    "value": f"B{i:07d}",
                }
            ],
            "name": [{"family": f"Bench{i}", "given": ["Test"]}],
            "gender": "female" if primary[0] == "254837009" else "male",
            "birthDate": (today - timedelta(days=365 * rng.randint(40, 85))).isoformat(),
        },
        {
            "resourceType": "Condition",
            "id": f"{pid}-primary",
            "code": {"coding": [{"system": sct, "code": primary[0], "display": primary[1]}]},
            "subject": ref,
            "onsetDateTime": (dx - timedelta(days=400)).isoformat(),
        },
        {
            "resourceType": "Condition",
            "id": f"{pid}-bone",
            "code": {
                "coding": [{"system": sct, "code": "94222008", "display": "Secondary malignant neoplasm of bone"}]
            },
            "bodySite": [{"coding": [{"system": sct, "code": vb_code}]}],
            "subject": ref,
            "onsetDateTime": dx.isoformat(),
        },
        {
            "resourceType": "Observation",
            "id": f"{pid}-ecog",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "89247-1"}]},
            "subject": ref,
            "effectiveDateTime": (dx + timedelta(days=7)).isoformat(),
            "valueInteger": rng.randint(0, 3),
        },
        {
            "resourceType": "Observation",
            "id": f"{pid}-alb",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1751-7"}]},
            "subject": ref,
            "effectiveDateTime": (dx + timedelta(days=7)).isoformat(),
            "valueQuantity": {
                "value": round(rng.uniform(28, 45), 1),
                "unit": "g/L",
                "system": "http://unitsofmeasure.org",
                "code": "g/L",
            },
        },
        {
            "resourceType": "Observation",
            "id": f"{pid}-ca",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
            "subject": ref,
            "effectiveDateTime": (dx + timedelta(days=7)).isoformat(),
            "valueQuantity": {
                "value": round(rng.uniform(2.1, 2.8), 2),
                "unit": "mmol/L",
                "system": "http://unitsofmeasure.org",
                "code": "mmol/L",
            },
        },
        {
            "resourceType": "MedicationAdministration",
            "id": f"{pid}-bma",
            "status": "completed",
            "medicationCodeableConcept": {
                "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1114085"}]
            },
            "subject": ref,
            "effectiveDateTime": (dx + timedelta(days=14)).isoformat(),
            "dosage": {"dose": {"value": 4, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}},
        },
        {
            "resourceType": "Observation",
            "id": f"{pid}-sins",
            "status": "final",
            "code": {"coding": [{"system": SPINE_CS, "code": "sins-assessment"}]},
            "subject": ref,
            "effectiveDateTime": dx.isoformat(),
            "bodySite": {"coding": [{"system": sct, "code": vb_code}], "text": vb_level},
            "component": [
                {
                    "code": {"coding": [{"system": SPINE_CS, "code": name}]},
                    "valueCodeableConcept": {"coding": [{"system": SPINE_CS, "code": rng.choice(values)}]},
                }
                for name, values in (
                    ("pain", ("mechanical", "non_mechanical", "none")),
                    ("lesion-type", ("lytic", "mixed", "blastic")),
                    ("collapse", ("none", "lt50", "gt50")),
                    ("bilsky-escc", ("0", "1a", "1b", "2")),
                )
            ],
        },
    ]
    if i % 3 == 0:
        res.append(
            {
                "resourceType": "Procedure",
                "id": f"{pid}-rt",
                "status": "completed",
                "code": {"coding": [{"system": sct, "code": "33195004", "display": "Teleradiotherapy"}]},
                "subject": ref,
                "performedDateTime": (dx + timedelta(days=10)).isoformat(),
                "bodySite": [{"coding": [{"system": sct, "code": vb_code}]}],
            }
        )
    return [{"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r,
             "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in res]  # fmt: skip


def generate(directory: Path, patients: int, per_file: int, *, seed: int = 7, today: date) -> list[Path]:
    rng = random.Random(seed)
    files = []
    for start in range(0, patients, per_file):
        entries = []
        for i in range(start, min(patients, start + per_file)):
            entries += _patient_entries(i, rng, today)
        path = directory / f"bench-{start // per_file:04d}.json"
        path.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
        files.append(path)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_fhir", description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--per-file", type=int, default=1000)
    parser.add_argument("--database-url")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.patients > 10_000:
        parser.error("at most 10,000 patients on this shared machine")

    from db.engine import get_engine
    from db.schema import upgrade
    from surveillance.importing import import_file

    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        url = args.database_url or f"sqlite:///{tmp_path / 'import.db'}"
        if args.database_url:
            from bench.__main__ import _reset_postgres

            _reset_postgres(url)
        engine = get_engine(url)
        upgrade(engine)
        t0 = time.perf_counter()
        files = generate(tmp_path, args.patients, args.per_file, today=now.date() - timedelta(days=1))
        generate_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in files)

        t0 = time.perf_counter()
        statuses = []
        for f in files:
            result = import_file(engine, f, actor="bench", now=now)
            statuses.append(result.status)
            if result.status != "imported":
                print(json.dumps(result.as_dict(), default=str)[:2000], file=sys.stderr)
                return 1
        import_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        again = [import_file(engine, f, actor="bench", now=now).status for f in files]
        reimport_s = time.perf_counter() - t0

        from sqlalchemy import text

        with engine.connect() as conn:
            counts = {
                t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar()
                for t in ("patient", "spinal_lesion", "lab_result", "bma_administration", "risk_snapshot")
            }
    report = {
        "patients": args.patients,
        "files": len(files),
        "corpus_mb": round(size / 1e6, 1),
        "resources": sum(len(json.loads(f.read_text())["entry"]) for f in []) or None,
        "generate_s": round(generate_s, 1),
        "import_s": round(import_s, 1),
        "patients_per_s": round(args.patients / import_s),
        "reimport_unchanged_s": round(reimport_s, 1),
        "reimport_statuses": sorted(set(again)),
        "rows": counts,
        "backend": url.split(":")[0],
    }
    report.pop("resources")
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
