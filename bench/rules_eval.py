"""``python -m bench.rules_eval --database-url URL``: time the rule engine's ``evaluate`` alone.

Reads every patient of the database in the full recompute's batches (the same
queries, scorer and :class:`~surveillance.rules.Frame` as
:mod:`surveillance.pipeline`), then times only
:func:`surveillance.rules.evaluate` over all the batches, ``--repeat`` times,
and prints the median (and every run) as one JSON line.  Reading and scoring
are done once, before the clock starts; nothing is written.

``--profile`` adds a cProfile of one more pass (the top functions by cumulative
time) on stderr.  ``--today`` fixes the evaluation date (default: the clinic's
date now), so two runs on the same database are comparable.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from datetime import UTC, date, datetime


def _frames(url: str, batch_size: int):
    """The Frames a full recompute would evaluate, batch by batch."""
    from db import bulk
    from db.engine import get_engine
    from db.readers import DbapiReader
    from surveillance.batch import BatchScorer
    from surveillance.prepare import Selection, _frame, read_batch

    engine = get_engine(url)
    scorer = BatchScorer()
    frames = []
    last = 0
    while True:
        with engine.connect() as conn:
            ids = [
                r[0]
                for r in bulk.fetchall(
                    conn, "SELECT id FROM patient WHERE id > ? ORDER BY id LIMIT ?", (last, batch_size)
                )
            ]
            if not ids:
                break
            lo, hi = ids[0], ids[-1]
            batch = read_batch(DbapiReader(conn), Selection(lo=lo, hi=hi))
            conn.rollback()
        frames.append(_frame(batch, scorer.score(batch.patients, batch.lesions)))
        last = hi
    return frames


def main(argv: list[str] | None = None) -> None:
    from surveillance.calendar import clinical_day
    from surveillance.pipeline import FULL_BATCH
    from surveillance.rules import evaluate, load_rules

    parser = argparse.ArgumentParser(prog="python -m bench.rules_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL")
    parser.add_argument("--batch-size", type=int, default=FULL_BATCH, help="patients per Frame (the full run's batch)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the median is reported")
    parser.add_argument("--today", type=date.fromisoformat, default=None, help="evaluation date (YYYY-MM-DD)")
    parser.add_argument("--profile", action="store_true", help="cProfile one more pass (stderr)")
    args = parser.parse_args(argv)

    today = args.today or clinical_day(datetime.now(UTC))
    ruleset = load_rules()
    frames = _frames(args.database_url, args.batch_size)
    patients = sum(f.n for f in frames)
    if frames:
        evaluate(frames[0], ruleset, today)  # warm-up (imports, caches)
    runs = []
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        for frame in frames:
            evaluate(frame, ruleset, today)
        runs.append(time.perf_counter() - start)
    median = statistics.median(runs)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for frame in frames:
            evaluate(frame, ruleset, today)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
        print(text.getvalue(), file=sys.stderr)
    print(
        json.dumps(
            {
                "patients": patients,
                "batches": len(frames),
                "today": today.isoformat(),
                "evaluate_s": round(median, 3),
                "evaluate_s_per_100k": round(median * 100_000 / patients, 3) if patients else None,
                "runs_s": [round(r, 3) for r in runs],
            }
        )
    )


if __name__ == "__main__":
    main()
