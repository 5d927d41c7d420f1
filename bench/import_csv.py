"""``python -m bench.import_csv --rows N [--database-url URL] [--json]``: CSV template import throughput.

``--database-url`` names a PostgreSQL database that is emptied first (``DROP SCHEMA public``).

Generates (seeded, fictional) a ``patient`` template file of N/10 patients and
a ``lab_result`` template file of N rows (albumin in g/L and calcium in mmol/L,
so every row is unit-converted), imports both into an empty migrated database
(SQLite in a temporary directory by default) with ``import_file`` — parse, the
writer's validation, one transaction per file, state refresh and re-scoring of
the imported patients — and reports the wall time of each, and of a second
import of the lab file (``unchanged``).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path


def files(rows: int, today: date, seed: int = 7) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    patients = max(1, rows // 10)
    p = ["mrn,family_name,given_name,birth_date,sex,department,primary_site,status"]
    for i in range(patients):
        born = today - timedelta(days=365 * rng.randint(40, 85))
        p.append(f"B{i:07d},Bench{i},Test,{born.isoformat()},female,oncology,breast,active")
    labs = ["mrn,collected_on,test,value,unit"]
    for k in range(rows):
        day = today - timedelta(days=rng.randint(1, 700))
        if k % 2:
            labs.append(f"B{k % patients:07d},{day.isoformat()},albumin,{rng.uniform(25, 45):.1f},g/L")
        else:
            labs.append(f"B{k % patients:07d},{day.isoformat()},calcium,{rng.uniform(2.0, 2.8):.2f},mmol/L")
    return ("\r\n".join(p) + "\r\n").encode(), ("\r\n".join(labs) + "\r\n").encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--database-url")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from db.engine import get_engine
    from db.schema import upgrade
    from surveillance.importing import import_file
    from surveillance.importing.csv_templates import parse

    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        if args.database_url:  # emptied first, as bench.import_fhir does: give a database of its own
            from bench.__main__ import _reset_postgres

            _reset_postgres(url)
        engine = get_engine(url)
        upgrade(engine)
        patients, labs = files(args.rows, now.date())
        figures: dict[str, object] = {"rows": args.rows, "patients": max(1, args.rows // 10),
                                      "database": engine.dialect.name, "lab_file_mb": round(len(labs) / 1e6, 2)}
        t = time.perf_counter()
        parsed = parse("labs.csv", labs)
        figures["parse_s"] = round(time.perf_counter() - t, 2)
        assert len(parsed.records) == args.rows and not parsed.issues
        t = time.perf_counter()
        first = import_file(engine, patients, name="patients.csv", actor="bench", now=now)
        figures["patients_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        result = import_file(engine, labs, name="labs.csv", actor="bench", now=now)
        figures["labs_s"] = round(time.perf_counter() - t, 2)
        figures["labs_rows_per_s"] = round(args.rows / max(figures["labs_s"], 1e-9))
        t = time.perf_counter()
        again = import_file(engine, labs, name="labs.csv", actor="bench", now=now)
        figures["reimport_s"] = round(time.perf_counter() - t, 2)
        figures["status"] = [first.status, result.status, again.status]
        engine.dispose()
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>16}: {value}")
    return 0 if figures["status"] == ["imported", "imported", "unchanged"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
