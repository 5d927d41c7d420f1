"""The board's case card as PDF: what it says (read back with an independent extractor), Japanese, the disclosure.

Expectations are read from the database here (the MRN, the board-candidate
alert's reasons, the pipeline's stored bands) and from the instruments'
citations, not from the PDF builder.
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text

from dashboard.i18n import Translator
from surveillance.scoring.registry import REGISTRY
from tests.dashboard.conftest import login, new_app, page
from tests.dashboard.test_exports import _button, _click, _keep_managers
from tests.pdf_text import pdf_lines

pytestmark = pytest.mark.db


def _flat(value: str) -> str:
    return re.sub(r"\s+", "", value)


def _first_candidate(engine, department: str):
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT p.id, p.mrn, a.evidence, s.tomita_band, s.tokuhashi_band, s.katagiri_band, s.sins_worst_category "
            "FROM patient p JOIN alert a ON a.patient_id = p.id JOIN risk_snapshot s ON s.patient_id = p.id "
            "WHERE a.rule_id = 'board-candidate' AND a.status IN ('open', 'acknowledged', 'snoozed') "
            "AND p.status = 'active' AND p.department = :d ORDER BY s.priority DESC, p.id DESC"), {"d": department}
        ).first()


def _pdf_events(engine):
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT actor, patient_id, detail FROM audit_event WHERE action = 'export.board_case_pdf'")).all()


def _download(app_db, monkeypatch, lang: str = "en") -> bytes:
    managers = _keep_managers(monkeypatch)
    at = login(new_app(), app_db["engine"], "doc1")
    at.session_state["lang"] = lang
    page(at, "board")
    assert not at.exception, at.exception
    assert _pdf_events(app_db["engine"]) == [], "opening the card discloses no file"
    return _click(managers, _button(at, "board_download_pdf"))


def test_the_pdf_card_names_the_patient_the_question_scores_bands_and_sources_and_is_a_disclosure(app_db, monkeypatch):
    engine = app_db["engine"]
    candidate = _first_candidate(engine, "oncology")
    assert candidate is not None, "the fixture has a board candidate in doc1's department"
    content = _download(app_db, monkeypatch)
    assert content.startswith(b"%PDF-") and content.rstrip().endswith(b"%%EOF")
    whole = _flat("".join(pdf_lines(content)))
    assert "\ufffd" not in whole, "every glyph maps back to text"
    assert candidate.mrn in whole
    reasons = json.loads(candidate.evidence)["reasons"]
    assert reasons and _flat(reasons) in whole, "the board's question (why the patient is on the board)"
    for band in (candidate.tomita_band, candidate.tokuhashi_band, candidate.katagiri_band):
        if band:
            assert _flat(band) in whole
    for instrument in REGISTRY:
        if instrument.id in ("sins", "tomita", "tokuhashi", "katagiri"):
            assert _flat(instrument.citation) in whole, instrument.id
    (event,) = _pdf_events(engine)
    assert event.actor == "doc1" and event.patient_id == candidate.id
    assert json.loads(event.detail)["format"] == "pdf"


def test_the_pdf_card_in_japanese_renders_japanese_text(app_db, monkeypatch):
    content = _download(app_db, monkeypatch, "ja")
    lines = pdf_lines(content)
    ja = Translator("ja")
    whole = _flat("".join(lines))
    assert "\ufffd" not in whole
    for key in ("board.card_title", "board.scores", "board.lesions", "board.alerts"):
        assert _flat(ja.t(key)) in whole, key
