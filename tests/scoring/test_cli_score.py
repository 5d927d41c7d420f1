"""`python -m surveillance score` as shared/case-format.md specifies it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "tests" / "cases" / "scoring-examples.json"


def run(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "surveillance", "score", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cases_document_gives_a_list_in_order_with_ids_echoed():
    proc = run(str(EXAMPLES))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    expected_ids = [c["id"] for c in json.loads(EXAMPLES.read_text())["cases"]]
    assert [r["id"] for r in results] == expected_ids


def test_single_case_gives_one_object():
    case = {"id": "one", "primary_site": "prostate", "spinal_lesions": [{"level": "L3", "bilsky_escc": "0"}]}
    proc = run("-", stdin=json.dumps(case))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert isinstance(result, dict) and result["id"] == "one"
    # Pain, lesion type, alignment, collapse and posterolateral unknown at L3 (mobile, 2):
    # 2 + {0,1,3} + {0,1,2} + {0,2,4} + {0,1,2,3} + {0,1,3} -> 2..17 all reachable.
    assert result["sins"][0]["possible_totals"] == list(range(2, 18))
    assert result["sins"][0]["total"] is None


def test_plain_list_gives_a_list():
    cases = [{"primary_site": "breast", "spinal_lesions": []}, {"primary_site": "kidney", "spinal_lesions": []}]
    proc = run("-", stdin=json.dumps(cases))
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 2


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        (
            {"id": "bad-pain", "primary_site": "breast", "spinal_lesions": [{"level": "T4", "pain": "sharp"}]},
            ["bad-pain", "spinal_lesions[0].pain", "mechanical", "non_mechanical", "none"],
        ),
        ({"id": "bad-site", "primary_site": "lungs", "spinal_lesions": []}, ["bad-site", "primary_site", "lung_nsclc"]),
        ({"id": "bad-ecog", "ecog": "2", "spinal_lesions": []}, ["bad-ecog", "ecog"]),
        ({"id": "bad-level", "spinal_lesions": [{"level": "Coccyx"}]}, ["bad-level", "level", "S5"]),
        ({"id": "no-lesions", "primary_site": "breast"}, ["no-lesions", "spinal_lesions", "required"]),
    ],
)
def test_invalid_case_exits_2_with_nothing_on_stdout(case, needles):
    good = {"id": "good", "primary_site": "breast", "spinal_lesions": []}
    proc = run("-", stdin=json.dumps({"cases": [{"id": "good", "input": good}, {"id": case["id"], "input": case}]}))
    assert proc.returncode == 2
    assert proc.stdout == ""
    for needle in needles:
        assert needle in proc.stderr


def test_unreadable_inputs_exit_2():
    assert run("/nonexistent/cases.json").returncode == 2
    proc = run("-", stdin="{not json")
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr and proc.stdout == ""
