"""The cancer-board page: the queue in scope, the case card, recording a decision, access and the printable card."""

from __future__ import annotations

import html
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from dashboard.data import board as board_data
from dashboard.data.board import md_escape
from dashboard.i18n import Translator
from surveillance import service
from surveillance.access import Identity, Role
from surveillance.rules.engine import totals_of
from surveillance.service import ValidationError
from tests.dashboard.conftest import NOW, login, new_app, page

pytestmark = pytest.mark.db

BOARD_PAGE = str(Path(__file__).parents[2] / "dashboard" / "app_pages" / "board.py")
EN = Translator("en")
ACTIVE = "('open', 'acknowledged', 'snoozed')"


def _candidates(engine, department: str) -> list[tuple[int, str]]:
    """(patient id, MRN) of active patients of ``department`` with an active board-candidate alert, by priority."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT p.id, p.mrn FROM patient p JOIN alert a ON a.patient_id = p.id "
            "JOIN risk_snapshot s ON s.patient_id = p.id "
            f"WHERE a.rule_id = 'board-candidate' AND a.status IN {ACTIVE} AND p.status = 'active' "
            "AND p.department = :d ORDER BY s.priority DESC, p.id DESC"), {"d": department}).all()
    return [(int(r.id), r.mrn) for r in rows]


def _queue(at: AppTest):
    """The queue table (the first dataframe of the page)."""
    return at.dataframe[0].value


def _open_board(engine, username: str = "doc1") -> AppTest:
    at = login(new_app(), engine, username)
    page(at, "board")
    assert not at.exception, at.exception
    return at


def _all_text(at: AppTest) -> str:
    parts = [e.value for e in (*at.markdown, *at.caption, *at.header, *at.subheader, *at.success, *at.error)]
    parts += [e.label for e in at.expander]
    for frame in (*at.dataframe, *at.table):
        parts.append(frame.value.to_string())
    return "\n".join(map(str, parts))


def test_queue_lists_only_the_departments_board_candidates(app_db):
    engine = app_db["engine"]
    expected = _candidates(engine, "oncology")
    others = {mrn for _, mrn in _candidates(engine, "orthopaedics")}
    assert expected and others, "the fixture must give both departments board candidates"

    at = _open_board(engine)
    queue = _queue(at)
    mrns = list(queue[EN.t("board.col_mrn")])
    assert set(mrns) == {mrn for _, mrn in expected}
    assert not set(mrns) & others
    with engine.connect() as conn:  # every row is in the department, active, with an active board-candidate alert
        for mrn in mrns:
            row = conn.execute(text(
                "SELECT p.department, p.status, (SELECT COUNT(*) FROM alert a WHERE a.patient_id = p.id AND "
                f"a.rule_id = 'board-candidate' AND a.status IN {ACTIVE}) AS n FROM patient p WHERE p.mrn = :m"),
                {"m": mrn}).one()
            assert (row.department, row.status, row.n) == ("oncology", "active", 1)
    priorities = list(queue[EN.t("board.col_priority")])
    assert priorities == sorted(priorities, reverse=True)
    assert all(queue[EN.t("board.col_why")].str.len() > 0), "each row says why the patient is on the board"


def test_case_card_shows_the_scores_and_is_audited(app_db):
    engine = app_db["engine"]
    first_id, first_mrn = _candidates(engine, "oncology")[0]
    at = _open_board(engine)
    assert md_escape(first_mrn) in at.header[0].value

    subheaders = [s.value for s in at.subheader]
    for key in ("board.demographics", "board.scores", "board.lesions", "board.imaging", "board.bma", "board.contra",
                "board.alerts"):
        assert EN.t(key) in subheaders, key
    # The scores on the card are the pipeline's: each system's possible totals equal the stored snapshot's.
    with engine.connect() as conn:
        snap = conn.execute(text("SELECT * FROM risk_snapshot WHERE patient_id = :p"), {"p": first_id}).mappings().one()
    page_text = _all_text(at)
    for system, column in (("tomita", "tomita"), ("revised_tokuhashi", "tokuhashi"), ("new_katagiri", "katagiri")):
        totals = totals_of(int(snap[f"{column}_mask"]))
        shown = (EN.t("scores.not_computable") if not totals else
                 str(totals[0]) if len(totals) == 1 else
                 EN.t("scores.or_list", head=EN.t("scores.list_separator").join(map(str, totals[:-1])),
                      last=totals[-1]))
        assert f"{EN.t(f'scores.name_{system}')} — {shown}" in page_text, system
    worst = totals_of(int(snap["sins_worst_mask"]))
    assert worst and str(worst[-1]) in page_text
    with engine.connect() as conn:
        audited = conn.execute(text(
            "SELECT COUNT(*) FROM audit_event WHERE action = 'view.board_case' AND actor = 'doc1' "
            "AND patient_id = :p"), {"p": first_id}).scalar()
    assert audited >= 1


def test_selecting_a_row_opens_that_patients_card(app_db):
    engine = app_db["engine"]
    second_id, second_mrn = _candidates(engine, "oncology")[1]
    at = _open_board(engine)
    at.session_state["board_table"] = {"selection": {"rows": [1], "columns": []}}
    at.run()
    assert not at.exception
    assert md_escape(second_mrn) in at.header[0].value


def test_another_departments_patient_cannot_be_opened(app_db):
    engine = app_db["engine"]
    oncology_id, oncology_mrn = _candidates(engine, "oncology")[0]
    _, orthopaedics_mrn = _candidates(engine, "orthopaedics")[0]
    at = login(new_app(), engine, "doc2")
    at.session_state["board_patient"] = oncology_id  # a forged selection
    page(at, "board")
    assert not at.exception, at.exception
    assert md_escape(orthopaedics_mrn) in at.header[0].value
    assert oncology_mrn not in _all_text(at)
    doc2 = Identity(app_db["users"]["doc2"], "doc2", "Doc2", Role.PHYSICIAN, "orthopaedics")
    assert board_data.case_card(doc2, oncology_id) is None


def _record(at: AppTest, patient_id: int, decision: str, day=None) -> AppTest:
    at.text_area(key=f"board_decision_text_{patient_id}").input(decision)
    if day is not None:
        at.date_input(key=f"board_decided_on_{patient_id}").set_value(day)
    submit = [b for b in at.button if b.label == EN.t("board.record")]
    assert len(submit) == 1
    return submit[0].click().run()


def test_recording_a_decision_closes_the_alert_and_the_patient_leaves_the_queue(app_db):
    engine = app_db["engine"]
    pid, mrn = _candidates(engine, "oncology")[0]
    at = _open_board(engine)

    _record(at, pid, "   ")  # the decision text is required
    assert EN.t("board.decision_required") in [e.value for e in at.error]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM board_case WHERE patient_id = :p"), {"p": pid}).scalar() == 0

    _record(at, pid, "Separation surgery, then SBRT.")
    assert not at.exception, at.exception
    assert [s.value for s in at.success] and md_escape(mrn) in at.success[0].value
    assert mrn not in set(_queue(at)[EN.t("board.col_mrn")])
    with engine.connect() as conn:
        statuses = conn.execute(text(
            "SELECT status, closed_by FROM alert WHERE patient_id = :p AND rule_id = 'board-candidate'"),
            {"p": pid}).all()
        case = conn.execute(text("SELECT decision, decided_by, decided_on FROM board_case WHERE patient_id = :p"),
                            {"p": pid}).one()
        audit = conn.execute(text("SELECT COUNT(*) FROM audit_event WHERE action = 'board.decide' AND patient_id = :p"),
                             {"p": pid}).scalar()
    assert statuses and all(s.status not in ("open", "acknowledged", "snoozed") for s in statuses)
    assert ("done", "doc1") in {(s.status, s.closed_by) for s in statuses}
    assert case.decision == "Separation surgery, then SBRT." and case.decided_by == "doc1"
    assert str(case.decided_on)[:10] == NOW.date().isoformat()
    assert audit == 1


def test_a_board_date_in_the_future_is_never_recorded(app_db):
    engine = app_db["engine"]
    pid, _ = _candidates(engine, "oncology")[0]
    at = _open_board(engine)
    # The date input is bounded by today: a later date is reset by Streamlit (and refused by the page and the
    # service if it ever arrived), so no future board date reaches the database.
    _record(at, pid, "Discussed.", NOW.date() + timedelta(days=3))
    assert not at.exception
    with engine.connect() as conn:
        days = [str(d)[:10] for d in conn.execute(
            text("SELECT decided_on FROM board_case WHERE patient_id = :p"), {"p": pid}).scalars()]
    assert all(day <= NOW.date().isoformat() for day in days)
    with pytest.raises(ValidationError, match="future"):
        service.record_board_decision(engine, Identity(app_db["users"]["doc1"], "doc1", "Doc1", Role.PHYSICIAN,
                                                       "oncology"), pid, decision="Discussed.",
                                      decided_on=NOW.date() + timedelta(days=3), now=NOW)


def test_a_nurse_has_no_board_page(app_db):
    engine = app_db["engine"]
    at = login(new_app(), engine, "nurse1")
    at.run()
    with pytest.raises(ValueError):
        at.switch_page("dashboard/app_pages/board.py")


def test_the_board_page_run_directly_as_a_nurse_is_denied(app_db):
    engine = app_db["engine"]
    at = login(AppTest.from_file(BOARD_PAGE, default_timeout=60), engine, "nurse1")
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [EN.t("app.denied")]
    assert len(at.dataframe) == 0 and len(at.table) == 0
    with engine.connect() as conn:
        denied = conn.execute(text(
            "SELECT COUNT(*) FROM audit_event WHERE actor = 'nurse1' AND action = 'denied.page.view_board'")).scalar()
    assert denied == 1


def test_the_html_case_card_escapes_every_value(app_db, monkeypatch):
    engine = app_db["engine"]
    pid, mrn = _candidates(engine, "oncology")[0]
    evil = "<script>alert('x')</script>"
    with engine.begin() as conn:
        conn.execute(text("UPDATE patient SET family_name = :n, primary_histology = :h WHERE id = :p"),
                     {"n": evil, "h": '"><img src=x onerror=alert(1)>', "p": pid})

    documents: list[bytes] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        if mimetype == "text/html":
            documents.append(path_or_data)
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    at = _open_board(engine)
    assert md_escape(evil) in at.header[0].value  # escaped for markdown: shown as text, never as markup
    assert documents, "the page offers the case card as an HTML download"
    document = documents[-1].decode("utf-8")
    assert "<script" not in document.lower()
    assert "<img" not in document
    assert html.escape('"><img src=x onerror=alert(1)>', quote=True) in document
    assert html.escape(evil, quote=True) in document
    assert mrn in document
    assert document.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in document
    for key in ("board.scores", "board.lesions", "board.imaging", "board.bma", "board.tes", "board.contra",
                "board.alerts", "board.noms", "board.locomo"):
        assert html.escape(EN.t(key)) in document, key
    with engine.connect() as conn:  # the downloaded card was produced for a view that was audited
        detail = conn.execute(text(
            "SELECT detail FROM audit_event WHERE action = 'view.board_case' AND patient_id = :p"), {"p": pid}).first()
    assert detail is not None and isinstance(json.loads(detail.detail), dict)


def test_the_board_page_in_japanese(app_db):
    engine = app_db["engine"]
    at = login(new_app(), engine, "doc1")
    at.session_state["lang"] = "ja"
    page(at, "board")
    assert not at.exception, at.exception
    ja = Translator("ja")
    assert at.title[0].value == ja.t("board.title")
    assert ja.t("board.col_mrn") in _queue(at).columns
