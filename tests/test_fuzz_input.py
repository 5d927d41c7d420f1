"""Arbitrary input ends in a clear error, never a traceback (security notes tests 17–20).

* ``python -m surveillance score`` (``shared/case-format.md``): any text, any
  JSON-ish document, any case with plausible keys and wild values → exit 0 with
  JSON on stdout, or exit 2 with ``error: …`` lines on stderr and nothing on
  stdout.  Run in-process for speed (``cli.main``); a few through a real
  subprocess.
* ``surveillance.scoring.parse_case``: a ``CaseError`` naming the field, or a
  parsed case that scores.
* The importers' entry point ``surveillance.importing.parse_bytes``: a parse
  result or a message, for arbitrary bytes, CSV-like text and FHIR-like JSON.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surveillance import cli
from surveillance.scoring import CaseError, parse_case, score_parsed

ROOT = Path(__file__).parents[1]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CASE_KEYS = [
    "id", "primary_site", "primary_histology", "hormone_dependent", "molecular_targeted_therapy", "ecog", "kps",
    "ambulatory_status", "albumin_g_dl", "crp_mg_dl", "ldh_u_l", "platelets_per_ul", "calcium_mg_dl",
    "total_bilirubin_mg_dl", "previous_chemotherapy", "visceral_metastases", "brain_metastases",
    "extraspinal_bone_metastases", "vertebral_body_metastases", "spinal_involvement_single_contiguous_lesion",
    "extraspinal_pathological_fracture", "frankel_grade", "fit_for_surgery", "spinal_lesions", "age", "sex",
    "clinical_note",
]
LESION_KEYS = ["level", "level_span", "pain", "lesion_type", "alignment", "collapse", "posterolateral", "bilsky_escc"]
PLAUSIBLE = ["breast", "T12", "L3", "C1", "mechanical", "lytic", "gt50", "none", "1b", "3", "A", "E", "independent",
             "nodular", "disseminated", "", " ", "NaN", "-1", "1e309"]

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**20), max_value=10**20)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20) | st.sampled_from(PLAUSIBLE))
json_ish = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8) | st.sampled_from(CASE_KEYS), inner, max_size=4),
                        max_leaves=20)
lesion = st.dictionaries(st.sampled_from(LESION_KEYS), json_ish, max_size=8)
visceral = st.dictionaries(st.sampled_from(["status", "treatable", "removable", "other"]), json_ish, max_size=3)
case = st.fixed_dictionaries({}, optional={
    **{key: json_ish for key in CASE_KEYS},
    "spinal_lesions": st.lists(lesion, max_size=3) | json_ish,
    "visceral_metastases": visceral | json_ish,
})
document = case | st.lists(case, max_size=3) | st.fixed_dictionaries(
    {"cases": st.lists(st.fixed_dictionaries({"id": json_ish, "input": case}), max_size=3) | json_ish}) | json_ish


def run_score(text: str) -> tuple[int, str, str]:
    """``python -m surveillance score -`` in this process, with ``text`` on standard input."""
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["score", "-"])
    finally:
        sys.stdin = stdin
    assert gc.isenabled(), "cmd_score must give the garbage collector back to an in-process caller"
    return code, out.getvalue(), err.getvalue()


def assert_clear_outcome(code: int, out: str, err: str) -> None:
    assert "Traceback" not in err and "Traceback" not in out
    if code == 0:
        json.loads(out)  # a complete JSON document
        assert err == ""
    else:
        assert code == 2, (code, err)
        assert out == "", "no partial output on standard output"
        lines = [line for line in err.splitlines() if line]
        assert lines and lines[0].startswith("error: "), err


def _dumps(value) -> str | None:
    try:
        return json.dumps(value, allow_nan=True)
    except (ValueError, RecursionError):
        return None


@FUZZ
@given(document)
def test_score_any_json_document(doc):
    text = _dumps(doc)
    if text is None:
        return
    assert_clear_outcome(*run_score(text))


@FUZZ
@given(st.text(max_size=200))
def test_score_any_text(text):
    assert_clear_outcome(*run_score(text))


@FUZZ
@given(case)
def test_parse_case_names_the_field_or_scores(raw):
    try:
        parsed = parse_case(raw, case_id="fuzz", label="#0")
    except CaseError as err:
        assert str(err).strip()
        return
    result = score_parsed(parsed)
    json.dumps(result)  # the result is JSON, as the command prints it


def test_nan_and_infinity_are_refused_not_scored():
    # JSON from other tools may carry NaN; "unknown is never zero" and NaN is not a number a clinician typed.
    for field, value in (("ecog", "NaN"), ("albumin_g_dl", "Infinity"), ("kps", "-Infinity")):
        code, out, err = run_score('{"spinal_lesions": [], "' + field + '": ' + value + '}')
        assert code == 2 and out == "", (field, err)
        assert field in err


def test_score_through_a_real_subprocess(tmp_path):
    samples = {
        "not-json.json": "{not json",
        "latin1.json": None,
        "wrong-shape.json": '{"cases": 5}',
        "bad-value.json": '{"spinal_lesions": [{"level": "T13"}], "ecog": 7}',
        "deep.json": "[" * 5000 + "]" * 5000,
    }
    for name, text in samples.items():
        path = tmp_path / name
        if text is None:
            path.write_bytes('{"primary_histology": "Café"}'.encode("latin-1"))
        else:
            path.write_text(text, encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "surveillance", "score", str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (name, proc.returncode, proc.stderr[-500:])
        assert proc.stdout == "" and proc.stderr.startswith("error: "), (name, proc.stderr[-500:])
        assert "Traceback" not in proc.stderr, name


# ---------------------------------------------------------------------------
# Importers (surveillance/importing): the pure entry point before the writer
# ---------------------------------------------------------------------------

resource_types = st.sampled_from(["Patient", "Observation", "Condition", "Procedure", "MedicationAdministration",
                                  "ImagingStudy", "DiagnosticReport", "Bundle", "Nope", ""])
fhir_resource = st.fixed_dictionaries({"resourceType": resource_types}, optional={
    "id": json_ish, "identifier": json_ish, "birthDate": json_ish | st.sampled_from(["2030-01-01", "1950-02-30"]),
    "subject": json_ish | st.just({"reference": "Patient/1"}), "code": json_ish, "valueQuantity": json_ish,
    "effectiveDateTime": json_ish, "bodySite": json_ish, "meta": json_ish, "status": json_ish,
})
bundle = st.fixed_dictionaries({"resourceType": st.just("Bundle"),
                                "type": st.sampled_from(["transaction", "batch", "collection", "x"]) | json_ish,
                                "entry": st.lists(st.fixed_dictionaries({"resource": fhir_resource}) | json_ish,
                                                  max_size=5) | json_ish})


def _assert_parse_outcome(result) -> None:
    from surveillance.importing.records import ParseResult

    if isinstance(result, str):
        assert result.strip()
    else:
        assert isinstance(result, ParseResult)
        for issue in result.issues:
            assert str(getattr(issue, "message", issue)).strip()


@FUZZ
@given(bundle | fhir_resource)
def test_fhir_import_parse_never_raises(doc):
    from surveillance.importing import parse_bytes

    text = _dumps(doc)
    if text is None:
        return
    _assert_parse_outcome(parse_bytes("fuzz.json", text.encode("utf-8")))


@FUZZ
@given(st.binary(max_size=400) | st.lists(st.lists(st.text(max_size=12), max_size=6), max_size=6).map(
    lambda rows: "\n".join(",".join(row) for row in rows).encode("utf-8")))
def test_csv_or_arbitrary_bytes_import_parse_never_raises(data):
    from surveillance.importing import parse_bytes

    _assert_parse_outcome(parse_bytes("fuzz.csv", data))


@FUZZ
@given(st.sampled_from(["patients", "imaging", "ecog", "labs", "bma"]), st.lists(
    st.lists(st.text(max_size=12) | st.sampled_from(["2099-01-01", "1900-02-30", "-5", "1e400", "=cmd|'/C calc'!A0"]),
             min_size=1, max_size=8), max_size=5))
def test_csv_templates_with_a_real_header_and_wild_rows_never_raise(kind, rows):
    from surveillance.importing import csv_templates

    try:
        header = csv_templates.template_csv(kind).decode("utf-8-sig").splitlines()[0]
    except (KeyError, ValueError):
        return  # not a template name in this version
    body = "\n".join([header, *(",".join(row) for row in rows)]).encode("utf-8")
    _assert_parse_outcome(csv_templates.parse("fuzz.csv", body))
