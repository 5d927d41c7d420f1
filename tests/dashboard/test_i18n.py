"""Every label exists in English and Japanese; dates and numbers follow the locale."""

import ast
import re
from datetime import date
from pathlib import Path

from dashboard.i18n import Translator, catalogue

ROOT = Path(__file__).parents[2]


def test_both_languages_have_the_same_keys():
    en, ja = catalogue("en"), catalogue("ja")
    assert set(en) == set(ja), sorted(set(en) ^ set(ja))
    for key in en:  # the same placeholders, so a Japanese label never raises on format()
        assert set(re.findall(r"{(\w+)}", en[key])) == set(re.findall(r"{(\w+)}", ja[key])), key


def test_every_literal_label_used_in_the_dashboard_exists():
    used = set()
    for path in (ROOT / "dashboard").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "t"
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                used.add(node.args[0].value)
    missing = sorted(k for k in used if k not in catalogue("en"))
    assert missing == []


def test_locale_formats():
    assert Translator("ja").date(date(2026, 11, 27)) == "2026年11月27日"
    assert Translator("en").date(date(2026, 11, 7)) == "7 Nov 2026"
    assert Translator("en").number(1234567) == "1,234,567"
    assert Translator("ja").t("nav.caseload") != Translator("en").t("nav.caseload")


def test_alert_titles_in_english_are_the_rule_files_own_and_translate_in_japanese():
    from dashboard.components.page import reasons_text, rule_title
    from surveillance.rules import load_rules

    en = catalogue("en")
    for rule in load_rules().rules:  # a rule not listed keeps its stored (English) title
        if f"rules.{rule.id}" in en:
            assert en[f"rules.{rule.id}"] == rule.title, f"{rule.id}: update dashboard/locales/*/rules.toml"
    ja = Translator("ja")
    assert rule_title(ja, "imaging-overdue", "Spine imaging overdue") == "脊椎画像検査の期限切れ"
    assert rule_title(ja, "no-such-rule", "Stored title") == "Stored title"
    assert reasons_text(ja, "Spine imaging overdue; Something else") == "脊椎画像検査の期限切れ; Something else"
    assert reasons_text(Translator("en"), "") == "—"
