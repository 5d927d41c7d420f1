"""``python -m surveillance import``: exit status, report, --json, and a kill -9 in the middle of a file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from bench.import_fhir import generate
from tests.importing.helpers import NOW, SAMPLES, counts, rows

ROOT = Path(__file__).parents[2]


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "surveillance", "import", *args],
        cwd=ROOT,
        env=dict(os.environ, DATABASE_URL=db_url),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_exit_status_and_entry_level_report(engine, db_url):
    bad = _cli(db_url, str(SAMPLES / "ctm-service/patient_data_missing_birthdate_invalid_ecog_karnofsky.json"))
    assert bad.returncode == 1
    assert "rejected (nothing written)" in bad.stdout
    assert "error   entry     3  Bundle.entry[3].resource(Observation/mCODEECOGPerformanceStatusExample)" in bad.stdout
    good = _cli(db_url, "--json", str(SAMPLES / "ctm-app/TrialMatching_Patient02.json"))
    assert good.returncode == 0, good.stderr
    [report] = json.loads(good.stdout)
    assert report["status"] == "imported"
    assert report["counts"]["bma_administration"] == 1
    assert rows(engine, "SELECT actor FROM import_batch WHERE status = 'imported'")[0]["actor"].startswith("cli:")


def test_cli_refuses_a_missing_file(db_url):
    proc = _cli(db_url, "/nonexistent/file.json")
    assert proc.returncode == 2
    assert "no such file" in proc.stderr


def test_kill_minus_9_mid_file_leaves_nothing_and_reimport_gives_one_copy(engine, db_url, tmp_path):
    [path] = generate(tmp_path, 1500, 1500, today=NOW.date() - timedelta(days=1))
    proc = subprocess.Popen(
        [sys.executable, "-m", "surveillance", "import", str(path)],
        cwd=ROOT,
        env=dict(os.environ, DATABASE_URL=db_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed_at = None
    for line in proc.stderr:
        # "import bench-0000.json write: 1,500/14,000 (11%)": patients inserted, facts being written, not committed
        if " write: " in line:
            done, total = (int(x.replace(",", "")) for x in line.split(" write: ")[1].split(" ")[0].split("/"))
            if 0 < done < total:
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = line.strip()
                break
    proc.wait(timeout=60)
    assert killed_at is not None, "the import finished before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    assert counts(engine) == dict.fromkeys(counts(engine), 0)
    assert rows(engine, "SELECT COUNT(*) AS n FROM import_batch")[0]["n"] == 0

    again = _cli(db_url, str(path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert counts(engine)["patient"] == 1500
    assert rows(engine, "SELECT COUNT(DISTINCT mrn) AS n FROM patient")[0]["n"] == 1500
