"""One benchmark step per process (called by ``python -m bench``); prints one JSON line.

    python -m bench.steps generate URL N
    python -m bench.steps full URL
    python -m bench.steps incremental URL CHANGED RUNS
    python -m bench.steps queries URL
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import text

from db import queries
from db.engine import get_engine, write_session
from db.schema import upgrade
from surveillance.prepare import open_rule_mask

NOW = datetime.now(timezone.utc)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, from /proc (kB)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                total += sum(_tree_rss_kb(int(child)) for child in children.read().split())
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass  # a process that ended while it was being read
    return total


class TreePeak:
    """The peak of this process's and its worker processes' summed RSS, sampled every 20 ms.

    ``ru_maxrss`` is one process's peak; a full run with worker processes uses several at
    once, so its memory is their sum.
    """

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, _tree_rss_kb(os.getpid()))
            self._stop.wait(0.02)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _tree_rss_kb(os.getpid()))


def step_generate(url: str, patients: int) -> dict:
    from surveillance.demo import generate_demo

    engine = get_engine(url)
    upgrade(engine)
    start = time.perf_counter()
    generate_demo(engine, patients=patients, seed=7, today=NOW.date())
    return {"seconds": time.perf_counter() - start}


def step_full(url: str) -> dict:
    from surveillance.calendar import clinical_day
    from surveillance.pipeline import recompute
    from surveillance.trend_tables import refresh_trend_tables

    engine = get_engine(url)
    # The recompute proper (scores, snapshots, alerts, the run record), then the leads' trend
    # tables that the daily full run rebuilds after it, timed on their own.
    with TreePeak() as tree:
        result = recompute(engine, full=True, now=NOW, trigger="bench", refresh_trends=False)
    recompute_peak = max(tree.peak_kb / 1024, _peak_rss_mb())  # all its processes together
    start = time.perf_counter()
    refresh_trend_tables(engine, clinical_day(NOW), now=NOW)
    return {
        "seconds": result.seconds,
        "recompute_peak_rss_mb": recompute_peak,
        "trend_refresh_s": time.perf_counter() - start,
        "alerts_opened": result.alerts_opened,
        "written": result.snapshots_written,
        "planned": result.planned,
        "phases_s": {k: round(v, 2) for k, v in result.phases.items()},
    }


def _change_patients(engine, ids: list[int], day: date) -> None:
    """1,000 clinical changes as the service would write them: facts, patient_state, queue."""
    from db import models as m
    from surveillance.state import refresh_patient_state

    rng = random.Random(len(ids))
    with write_session(engine) as session:
        for pid in ids:
            session.add(m.PerformanceStatus(patient_id=pid, recorded_on=day, ecog=rng.randint(0, 4)))
            session.add(m.LabResult(patient_id=pid, collected_on=day, test="albumin", value=round(rng.uniform(2.5, 4.5), 1),
                                    unit="g/dL"))
            session.add(m.ImagingStudy(patient_id=pid, performed_on=day, modality="mri", region="whole_spine"))
        session.flush()
        refresh_patient_state(session, ids)
        session.add_all(m.RecomputeQueue(patient_id=pid) for pid in ids)


def step_incremental(url: str, changed: int, runs: int) -> dict:
    from surveillance.pipeline import recompute

    engine = get_engine(url)
    with engine.connect() as conn:
        all_ids = [r[0] for r in conn.execute(text("SELECT id FROM patient"))]
    rng = random.Random(11)
    timings = []
    for run in range(runs):
        ids = rng.sample(all_ids, min(changed, len(all_ids)))
        _change_patients(engine, ids, NOW.date())
        start = time.perf_counter()
        result = recompute(engine, full=False, now=NOW + timedelta(minutes=run + 1), trigger="bench")
        timings.append((time.perf_counter() - start) * 1000)
        assert result.patients >= len(ids), result
    return {"median_ms": statistics.median(timings), "runs_ms": [round(t) for t in timings]}


def _median_ms(fn, repeat: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def step_queries(url: str) -> dict:
    engine = get_engine(url)
    with engine.connect() as conn:
        nurse = conn.execute(text("SELECT id FROM app_user WHERE role = 'nurse' ORDER BY id LIMIT 1")).scalar()
        filters = {
            "none": {},
            "nurse": {"nurse_id": nurse},
            "tier": {"tier": "high"},
            "primary_site": {"primary_site": "kidney"},
            "alert_type": {"rule_id": "escc-high-grade"},
            "nurse+tier+alert": {"nurse_id": nurse, "tier": "intermediate", "rule_id": "bma-dose-overdue"},
        }
        # As the caseload page asks: with the alert type's bit in the stored open-rule masks.
        caseload = {
            name: _median_ms(lambda f=f: queries.caseload(conn, open_rule_mask=open_rule_mask(conn, f.get("rule_id")), **f))
            for name, f in filters.items()
        }
        worst = max(caseload, key=caseload.get)
        overdue = _median_ms(lambda: queries.overdue_imaging(conn, today=NOW.date()))
        since = (NOW.date().replace(day=1) - timedelta(days=5 * 365)).replace(day=1)
        trend = _median_ms(lambda: queries.sre_monthly_trend(conn, since=since))
        rows = len(queries.caseload(conn))
    return {
        "caseload_ms": statistics.median(caseload.values()),
        "caseload_by_filter_ms": {k: round(v, 2) for k, v in caseload.items()},
        "caseload_worst_filter": worst,
        "caseload_worst_ms": caseload[worst],
        "caseload_rows": rows,
        "overdue_ms": overdue,
        "sre_trend_ms": trend,
    }


def step_filters(url: str) -> dict:
    """The caseload under every filter and pair the page offers, as the page asks (each the median of 3).

    Every primary site, alert type and tier alone; every tier with every alert type; every site with
    every alert type and with every tier; a nurse alone and with each of those single filters.
    """
    engine = get_engine(url)
    with engine.connect() as conn:
        nurse = conn.execute(text("SELECT id FROM app_user WHERE role = 'nurse' ORDER BY id LIMIT 1")).scalar()
        sites = [r[0] for r in conn.execute(text("SELECT DISTINCT primary_site FROM patient ORDER BY 1")) if r[0]]
        rules = [r[0] for r in conn.execute(text("SELECT DISTINCT rule_id FROM alert ORDER BY 1"))]
        tiers = [r[0] for r in conn.execute(text("SELECT DISTINCT tier FROM risk_snapshot ORDER BY 1"))]
        single = [{"primary_site": x} for x in sites] + [{"rule_id": x} for x in rules] + [{"tier": x} for x in tiers]
        combos = [{}, {"nurse_id": nurse}, *single, *[dict(f, nurse_id=nurse) for f in single]]
        combos += [{"tier": t, "rule_id": r} for t in tiers for r in rules]
        combos += [{"primary_site": p, "rule_id": r} for p in sites for r in rules]
        combos += [{"primary_site": p, "tier": t} for p in sites for t in tiers]
        timed = []
        for f in combos:
            mask = open_rule_mask(conn, f.get("rule_id"))
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                queries.caseload(conn, open_rule_mask=mask, **f)
                runs.append((time.perf_counter() - start) * 1000)
            timed.append((statistics.median(runs), f))
    timed.sort(key=lambda t: -t[0])
    ms = [t[0] for t in timed]
    return {
        "filters": len(ms),
        "median_ms": statistics.median(ms),
        "p95_ms": ms[len(ms) // 20],
        "max_ms": ms[0],
        "over_20ms": sum(m > 20 for m in ms),
        "slowest": [[round(m, 1), f] for m, f in timed[:5]],
    }


def main(argv: list[str]) -> int:
    step, url, *rest = argv
    if step == "generate":
        result = step_generate(url, int(rest[0]))
    elif step == "full":
        result = step_full(url)
    elif step == "incremental":
        result = step_incremental(url, int(rest[0]), int(rest[1]))
    elif step == "queries":
        result = step_queries(url)
    elif step == "filters":
        result = step_filters(url)
    else:
        raise SystemExit(f"unknown step {step}")
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
