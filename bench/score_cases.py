"""Benchmark: ``python -m surveillance score`` on N generated cases in one call.

    python -m bench.score_cases --cases 10000 [--seed 7] [--json]

Cases are drawn independently per field (random primaries, lesions with random
levels, spans and components, labs around every threshold, and about one in six
inputs unknown), so the memoisation of the instruments is not flattered by
repeated identical patients. The timing is wall-clock for the whole command,
JSON parsing and output included, in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from surveillance.scoring.vocab import (
    Alignment,
    Ambulation,
    BilskyGrade,
    Collapse,
    Frankel,
    LesionType,
    Level,
    Pain,
    Posterolateral,
    PrimarySite,
    VisceralStatus,
)

ROOT = Path(__file__).parents[1]


def maybe(rng: random.Random, value, unknown_rate: float = 0.16):
    return None if rng.random() < unknown_rate else value


def generate_case(rng: random.Random, index: int) -> dict:
    levels = list(Level)
    lesions = []
    for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3])):
        start = rng.randrange(len(levels) - 1)
        lesion = {
            "level": levels[start].value,
            "pain": maybe(rng, rng.choice(list(Pain)).value),
            "lesion_type": maybe(rng, rng.choice(list(LesionType)).value),
            "alignment": maybe(rng, rng.choice(list(Alignment)).value),
            "collapse": maybe(rng, rng.choice(list(Collapse)).value),
            "posterolateral": maybe(rng, rng.choice(list(Posterolateral)).value),
            "bilsky_escc": maybe(rng, rng.choice(list(BilskyGrade)).value),
        }
        if rng.random() < 0.15:
            lesion["level_span"] = [levels[start].value, levels[start + 1].value]
        lesions.append(lesion)
    return {
        "id": f"B{index:06d}",
        "primary_site": maybe(rng, rng.choice(list(PrimarySite)).value, 0.05),
        "hormone_dependent": maybe(rng, rng.random() < 0.7),
        "molecular_targeted_therapy": maybe(rng, rng.random() < 0.3),
        "ecog": maybe(rng, rng.randint(0, 4)),
        "kps": maybe(rng, rng.randrange(10, 101, 10)),
        "ambulatory_status": maybe(rng, rng.choice(list(Ambulation)).value),
        "albumin_g_dl": maybe(rng, round(rng.uniform(2.5, 4.8), 2)),
        "crp_mg_dl": maybe(rng, round(rng.uniform(0.0, 3.0), 2)),
        "ldh_u_l": maybe(rng, rng.randint(120, 600)),
        "platelets_per_ul": maybe(rng, rng.randint(50, 450) * 1000),
        "calcium_mg_dl": maybe(rng, round(rng.uniform(8.0, 11.5), 2)),
        "total_bilirubin_mg_dl": maybe(rng, round(rng.uniform(0.2, 2.5), 2)),
        "previous_chemotherapy": maybe(rng, rng.random() < 0.5),
        "visceral_metastases": {
            "status": maybe(rng, rng.choice(list(VisceralStatus)).value),
            "treatable": maybe(rng, rng.random() < 0.5),
            "removable": maybe(rng, rng.random() < 0.3),
        },
        "brain_metastases": maybe(rng, rng.random() < 0.1),
        "extraspinal_bone_metastases": maybe(rng, rng.randint(0, 6)),
        "vertebral_body_metastases": maybe(rng, max(1, len(lesions))),
        "spinal_involvement_single_contiguous_lesion": maybe(rng, rng.random() < 0.2),
        "extraspinal_pathological_fracture": maybe(rng, rng.random() < 0.1),
        "frankel_grade": maybe(rng, rng.choice(list(Frankel)).value),
        "fit_for_surgery": maybe(rng, rng.random() < 0.7),
        "spinal_lesions": lesions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    cases = [generate_case(rng, i) for i in range(args.cases)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cases.json"
        path.write_text(json.dumps(cases))
        out = Path(tmp) / "results.json"
        start = time.perf_counter()
        with out.open("w") as handle:
            proc = subprocess.run(
                [sys.executable, "-m", "surveillance", "score", str(path)],
                cwd=ROOT,
                stdout=handle,
                stderr=subprocess.PIPE,
                text=True,
            )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        scored = len(json.loads(out.read_text()))
        size_mb = out.stat().st_size / 1e6
    figures = {
        "cases": scored,
        "score_s": round(elapsed, 2),
        "cases_per_s": round(scored / elapsed),
        "output_mb": round(size_mb, 1),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"scored {scored} cases in {elapsed:.2f} s ({scored / elapsed:,.0f} cases/s); output {size_mb:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
