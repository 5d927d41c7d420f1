"""CI=true turns a skip into a failure (checked in a child pytest run)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _run_child(tmp_path, ci):
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_skips.py").write_text("import pytest\n\ndef test_x():\n    pytest.skip('no service')\n")
    env = dict(os.environ, CI=ci)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )


def test_skip_is_a_failure_in_ci(tmp_path):
    proc = _run_child(tmp_path, "true")
    assert proc.returncode == 1, proc.stdout
    assert "1 failed" in proc.stdout


def test_skip_is_a_skip_outside_ci(tmp_path):
    proc = _run_child(tmp_path, "")
    assert proc.returncode == 0, proc.stdout
    assert "1 skipped" in proc.stdout
