"""The calculator (worked examples typed into the form) and the reference page (registry and rule file)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.i18n import Translator
from surveillance.access import Role
from surveillance.rules.schema import DEFAULT_RULES_PATH
from surveillance.scoring import REGISTRY
from surveillance.scoring.vocab import PrimarySite
from tests.dashboard.conftest import login, new_app, page

pytestmark = pytest.mark.db

ROOT = Path(__file__).parents[2]
EXAMPLES = json.loads((ROOT / "tests" / "cases" / "scoring-examples.json").read_text(encoding="utf-8"))
EN = Translator("en")

SELECTS = ("sex", "hormone_dependent", "molecular_targeted_therapy", "previous_chemotherapy", "ecog", "kps",
           "ambulatory_status", "frankel_grade", "fit_for_surgery", "brain_metastases",
           "spinal_involvement_single_contiguous_lesion", "extraspinal_pathological_fracture")
NUMBERS = ("age", "extraspinal_bone_metastases", "vertebral_body_metastases", "albumin_g_dl", "crp_mg_dl", "ldh_u_l",
           "platelets_per_ul", "calcium_mg_dl", "total_bilirubin_mg_dl")
LESION_SELECTS = {"pain": "pain", "lesion_type": "lesion_type", "alignment": "alignment", "collapse": "collapse",
                  "posterolateral": "posterolateral", "bilsky_escc": "bilsky"}


def example(case_id: str) -> dict:
    return next(c for c in EXAMPLES["cases"] if c["id"] == case_id)


def open_page(app_db, name: str, username: str = "nurse1") -> AppTest:
    """Sign in and open the page through the role's navigation."""
    at = login(new_app(), app_db["engine"], username)
    page(at, name)
    assert not at.exception, at.exception
    return at


def open_directly(app_db, name: str, role: Role) -> AppTest:
    """Run the page file on its own with an identity of ``role`` (its own guard decides)."""
    at = AppTest.from_file(str(ROOT / "dashboard" / "app_pages" / f"{name}.py"), default_timeout=60)
    username = {Role.LEAD: "lead1", Role.ADMIN: "admin1", Role.NURSE: "nurse1", Role.PHYSICIAN: "doc1"}[role]
    login(at, app_db["engine"], username)
    at.run()
    assert not at.exception, at.exception
    return at


def enter_case(at: AppTest, case: dict, *, by_histology: bool = False) -> AppTest:
    """Type a case-format input into the calculator through its widgets, as a user would."""
    if by_histology:
        at.radio(key="calc_primary_mode").set_value("text").run()
        at.text_input(key="calc_primary_histology").input(case["primary_histology"])
    else:
        at.selectbox(key="calc_primary_site").set_value(case["primary_site"])
    for field in SELECTS:
        at.selectbox(key=f"calc_{field}").set_value(case.get(field))
    for field in NUMBERS:
        at.number_input(key=f"calc_{field}").set_value(case.get(field))
    visceral = case.get("visceral_metastases") or {}
    for part in ("status", "treatable", "removable"):
        at.selectbox(key=f"calc_visceral_{part}").set_value(visceral.get(part))
    for _ in case["spinal_lesions"]:
        at.button(key="calc_add_lesion").click().run()
    for i, lesion in enumerate(case["spinal_lesions"]):
        at.selectbox(key=f"calc_l{i}_level").set_value(lesion["level"])
        span = lesion.get("level_span")
        at.selectbox(key=f"calc_l{i}_span").set_value(span[-1] if span and span[-1] != lesion["level"] else None)
        for field, key in LESION_SELECTS.items():
            at.selectbox(key=f"calc_l{i}_{key}").set_value(lesion.get(field))
    return at.run()


def result_json(at: AppTest) -> dict:
    assert len(at.json) == 1, [e.value for e in at.error]
    return json.loads(at.json[0].value)


def page_text(at: AppTest) -> str:
    parts = [e.value for e in (*at.markdown, *at.caption, *at.error, *at.success)]
    parts += [e.label for e in at.expander]
    parts += [frame.value.to_string() for frame in (*at.dataframe, *at.table)]
    return "\n".join(map(str, parts))


def assert_matches_expected(result: dict, expected: dict) -> None:
    for system in ("tomita", "revised_tokuhashi", "bauer", "modified_bauer", "nesms", "new_katagiri"):
        for key in ("total", "possible_totals", "band"):
            assert result[system][key] == expected[system][key], (system, key)
    assert len(result["sins"]) == len(expected["sins"])
    for got, want in zip(result["sins"], expected["sins"], strict=True):
        for key in ("level", "total", "possible_totals", "category"):
            assert got[key] == want[key], ("sins", key)
    for got, want in zip(result["noms"], expected["noms"], strict=True):
        for key in ("level", "recommendation", "candidates", "flags"):
            assert got[key] == want[key], ("noms", key)


# ---------------------------------------------------------------------------
# Calculator
# ---------------------------------------------------------------------------


def test_worked_example_v42_typed_into_the_calculator(app_db):
    vignette = example("V42")
    at = enter_case(open_page(app_db, "calculator"), vignette["input"])
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    result = result_json(at)
    assert result["sins"][0]["possible_totals"] == [6, 8]
    assert result["sins"][0]["level_span"] == ["T2", "T3"]
    assert_matches_expected(result, vignette["expected"])
    # The score panel shows the ambiguity as a range, not a single number.
    six_or_eight = EN.t("scores.or_list", head="6", last="8")
    assert six_or_eight in page_text(at)
    labels = [b.label for b in at.get("download_button")]
    assert EN.t("calculator.download_result") in labels and EN.t("calculator.download_case") in labels


def test_histology_text_is_normalised_and_scored_the_same(app_db):
    vignette = example("V42")
    at = enter_case(open_page(app_db, "calculator", "doc1"), vignette["input"], by_histology=True)
    assert not at.exception, at.exception
    assert any("breast" in s.value for s in at.success), "the mapping of the histology text is shown"
    result = result_json(at)
    assert result["histology_resolution"]["source"] == "text"
    assert_matches_expected(result, vignette["expected"])


def test_an_unmappable_histology_shows_the_nearest_codes(app_db):
    at = open_directly(app_db, "calculator", Role.LEAD)
    at.radio(key="calc_primary_mode").set_value("text").run()
    at.text_input(key="calc_primary_histology").input("brest carcinoma").run()
    assert not at.exception
    messages = " ".join(e.value for e in at.error)
    assert "brest" in messages and "breast" in messages  # the refusal, with the nearest code
    assert len(at.json) == 0


def test_an_invalid_value_shows_the_engines_error_next_to_the_form(app_db):
    at = open_page(app_db, "calculator", "admin1")
    at.number_input(key="calc_albumin_g_dl").set_value(40.0).run()  # g/L typed into a g/dL field
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 2, errors  # under the field, and above the result
    assert all("albumin_g_dl" in e and "g/L" in e for e in errors)
    assert len(at.json) == 0, "no result is shown for a case the engine refuses"
    at.number_input(key="calc_albumin_g_dl").set_value(4.0).run()
    assert not at.error and len(at.json) == 1


def test_a_lesion_needs_a_level_and_can_be_removed(app_db):
    at = open_page(app_db, "calculator")
    at.button(key="calc_add_lesion").click().run()
    assert any("spinal_lesions[0].level" in e.value for e in at.error)
    at.selectbox(key="calc_l0_level").set_value("L1").run()
    assert not at.error
    assert result_json(at)["sins"][0]["level"] == "L1"
    at.button(key="calc_l0_remove").click().run()
    assert result_json(at)["sins"] == []


def test_the_calculator_in_japanese(app_db):
    at = login(new_app(), app_db["engine"], "nurse1")
    at.session_state["lang"] = "ja"
    page(at, "calculator")
    assert not at.exception, at.exception
    assert at.title[0].value == Translator("ja").t("calculator.title")


# ---------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------


def _rule_file() -> list[dict]:
    """The rules as written in the shipped file, read independently of ``load_rules``."""
    return tomllib.loads(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))["rule"]


def test_reference_lists_every_instrument_and_the_master_histology_table(app_db):
    at = open_directly(app_db, "reference", Role.LEAD)
    text = page_text(at)
    for instrument in REGISTRY:
        assert f"`{instrument.id}`" in text, instrument.id
        assert instrument.citation in text, instrument.id
        assert instrument.table_version in text, instrument.id
    master = next(t.value for t in at.table if "Bauer lung" in t.value.columns)
    assert set(master["Code"]) == {site.value for site in PrimarySite}
    assert all(len(t.value) <= 10_000 for t in at.table)


def test_reference_lists_every_rule_with_a_verify_badge_where_marked(app_db):
    at = open_page(app_db, "reference", "nurse1")
    markdown = [m.value for m in at.markdown]
    rules = _rule_file()
    assert rules
    badge = EN.t("reference.verify")
    for rule in rules:
        header = [m for m in markdown if m.startswith(f"**`{rule['id']}`**")]
        assert len(header) == 1, rule["id"]
        assert f"v{rule['version']}" in header[0]
        assert (f"-badge[:material/warning: {badge}]" in header[0]) == bool(rule.get("verify")), rule["id"]
    assert any(rule.get("verify") for rule in rules), "the shipped file marks some rules verify=true"
    text = page_text(at)
    for rule in rules:
        assert rule["title"] in text and rule["action"] in text and rule["source"] in text, rule["id"]
    tiers = tomllib.loads(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))["tiers"]
    interval_table = next(t.value for t in at.table if EN.t("reference.col_interval_days") in t.value.columns)
    assert sorted(interval_table[EN.t("reference.col_interval_days")].astype(int)) == sorted(
        tiers[f"{tier}_interval_days"] for tier in ("high", "intermediate", "low", "screening"))


def _mentions(rule: dict, word: str) -> bool:
    fields = [rule["id"], rule["version"], rule["severity"], rule["who"], rule["title"], rule["action"], rule["source"],
              *(f"{k} = {v}" for k, v in (rule.get("params") or {}).items()), "verify" if rule.get("verify") else ""]
    return any(word in str(f).lower() for f in fields)


def _shown_rules(at: AppTest) -> set[str]:
    return {m.value.split("`")[1] for m in at.markdown if m.value.startswith("**`")}


def test_reference_filter(app_db):
    at = open_page(app_db, "reference", "admin1")
    at.text_input(key="ref_filter").input("Katagiri").run()
    assert not at.exception
    labels = " ".join(e.label for e in at.expander)
    assert "`new_katagiri`" in labels and "`wbb`" not in labels
    assert _shown_rules(at) == {r["id"] for r in _rule_file() if _mentions(r, "katagiri")}
    at.text_input(key="ref_filter").input("verify").run()
    verified = {r["id"] for r in _rule_file() if r.get("verify")}
    assert verified <= _shown_rules(at) == {r["id"] for r in _rule_file() if _mentions(r, "verify")}
    at.text_input(key="ref_filter").input("no-such-thing-anywhere").run()
    assert not at.exception and _shown_rules(at) == set()
    assert any(EN.t("reference.no_match") in i.value for i in at.info)
