"""``python -m bench --patients N [--json] [--database-url URL]``: the engine's figures.

Generates a demo database of N patients, then measures, each in a fresh child
process so its peak RSS is its own:

* ``generate_s`` — demo generation (facts, patient_state, users);
* ``full_recompute_s`` / ``full_recompute_peak_rss_mb`` — the first full
  recompute (every snapshot and alert written), and ``full_recompute_rerun_s`` /
  ``full_recompute_rerun_peak_rss_mb`` for a second, steady-state one — the
  daily run, where most patients' firings and alerts are as stored.  Peak RSS
  is the sum over the run's processes (the writer and its worker processes),
  sampled every 20 ms; ``trend_refresh_s`` — the leads' trend tables
  the daily full run rebuilds after the recompute, timed on their own;
* ``incremental_1k_ms`` — median of 5 incremental runs, each after changing
  1,000 random patients (a new ECOG, lab and imaging record each);
* ``caseload_ms`` — median top-200 caseload query over several filters
  (none, a nurse, a tier, a primary site, an alert type), the slowest filter
  reported too; ``overdue_ms`` — the overdue-imaging list; ``sre_trend_ms`` —
  the monthly SRE trend;
* ``caseload_filters`` — the caseload under every filter and pair of filters the
  page offers (every site, alert type and tier alone and in pairs, a nurse with
  each): how many, the median, 95th percentile and slowest, how many over 20 ms.

SQLite by default (a file in a temporary directory); ``--database-url`` for
PostgreSQL (the database is emptied first).  Timings are wall clock on this
machine; see docs/performance.md for recorded figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _child(step: str, url: str, *extra: str) -> dict:
    """Run one step in a fresh child process (it reports its own peak RSS); return its JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.steps", step, url, *extra], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONHASHSEED="0"),
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench step {step} failed with exit status {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Measure generation, recompute and queries.")
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--database-url", help="PostgreSQL URL (emptied first); default: SQLite in a temp dir")
    parser.add_argument("--keep", help="SQLite file to keep instead of a temporary one")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.database_url:
            url = args.database_url
            _reset_postgres(url)
        else:
            path = Path(args.keep) if args.keep else Path(tmp) / "bench.db"
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            url = f"sqlite:///{path}"
        log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
        log(f"bench: {args.patients:,} patients on {url.split(':')[0]}")
        generate = _child("generate", url, str(args.patients))
        log(f"  generate: {generate['seconds']:.1f} s (peak RSS {generate['peak_rss_mb']:.0f} MB)")
        full = _child("full", url)
        log(f"  full recompute: {full['seconds']:.1f} s (peak RSS {full['recompute_peak_rss_mb']:.0f} MB), "
            f"{full['alerts_opened']:,} alerts; then trend tables {full['trend_refresh_s']:.1f} s "
            f"(peak RSS {full['peak_rss_mb']:.0f} MB)")
        rerun = _child("full", url)
        log(f"  full recompute, rerun: {rerun['seconds']:.1f} s (peak RSS {rerun['recompute_peak_rss_mb']:.0f} MB), "
            f"{rerun['planned']:,} patients planned, {rerun['written']:,} snapshots written")
        log(f"    phases, first run: {full['phases_s']}")
        log(f"    phases, rerun: {rerun['phases_s']}")
        incremental = _child("incremental", url, "1000", "5")
        log(f"  incremental 1k: median {incremental['median_ms']:.0f} ms (runs {incremental['runs_ms']})")
        queries = _child("queries", url)
        log(f"  caseload top-200: median {queries['caseload_ms']:.1f} ms (slowest filter "
            f"{queries['caseload_worst_filter']} {queries['caseload_worst_ms']:.1f} ms); "
            f"overdue {queries['overdue_ms']:.1f} ms; SRE trend {queries['sre_trend_ms']:.1f} ms")
        filters = _child("filters", url)
        log(f"  caseload, {filters['filters']:,} filter combinations: median {filters['median_ms']:.1f} ms, "
            f"p95 {filters['p95_ms']:.1f} ms, slowest {filters['max_ms']:.1f} ms, {filters['over_20ms']} over 20 ms; "
            f"slowest: {filters['slowest']}")
        figures = {
            "patients": args.patients,
            "backend": url.split(":")[0].split("+")[0],
            "generate_s": round(generate["seconds"], 2),
            "generate_peak_rss_mb": round(generate["peak_rss_mb"]),
            "full_recompute_s": round(full["seconds"], 2),
            "full_recompute_peak_rss_mb": round(full["recompute_peak_rss_mb"]),
            "trend_refresh_peak_rss_mb": round(full["peak_rss_mb"]),
            "full_recompute_rerun_s": round(rerun["seconds"], 2),
            "full_recompute_rerun_peak_rss_mb": round(rerun["recompute_peak_rss_mb"]),
            "trend_refresh_s": round(full["trend_refresh_s"], 2),
            "alerts_opened": full["alerts_opened"],
            "incremental_1k_ms": round(incremental["median_ms"], 1),
            "caseload_ms": round(queries["caseload_ms"], 2),
            "caseload_worst_ms": round(queries["caseload_worst_ms"], 2),
            "overdue_ms": round(queries["overdue_ms"], 2),
            "sre_trend_ms": round(queries["sre_trend_ms"], 2),
            "incremental_1k_runs_ms": incremental["runs_ms"],
            "caseload_filters": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in filters.items()},
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        }
    if args.json:
        print(json.dumps(figures))
    else:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
