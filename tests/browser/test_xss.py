"""Stored XSS (security notes test 16): hostile text in a name, a reason and an alert is shown as text, never run.

Chromium against ``streamlit run``; a ``dialog`` listener on every page records
any ``alert()`` that fires, and each page must show the stored text literally
where it is drawn as text (the header, banners, alert lines and expanders;
dataframes draw on a canvas, so there only the absence of a dialog is checked).
Plus a static scan: no ``unsafe_allow_html=True`` anywhere, and ``st.html`` /
``components.html`` only with a literal string.
"""

from __future__ import annotations

import ast
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from db import models as m
from db.engine import dispose_engines, get_engine, write_session
from surveillance import service
from surveillance.access import Identity, Role
from surveillance.pipeline import recompute
from tests import factories
from tests.browser.conftest import sign_in, start_app, stop_app

pytestmark = pytest.mark.browser
NOW = datetime.now(timezone.utc)
TIMEOUT = 60_000
IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(1)</script>"
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def app(tmp_path_factory, browser):
    url = f"sqlite:///{tmp_path_factory.mktemp('xss') / 'xss.db'}"
    from db.schema import upgrade

    engine = get_engine(url)
    upgrade(engine)
    users = factories.add_users(engine)
    nurse = Identity(users["nurse1"], "nurse1", "Nurse1", Role.NURSE, "oncology")
    pid = service.create_patient(engine, nurse, mrn="XSS-1", family_name=IMG, given_name=SCRIPT,
                                 birth_date=date(1960, 1, 1), department="oncology", primary_site="breast",
                                 now=NOW - timedelta(days=400)).patient_id
    recompute(engine, full=True, now=NOW)
    with write_session(engine) as session:
        session.add(m.Alert(patient_id=pid, rule_id="site-custom-note", rule_version="1", severity="high",
                            title=f"Check {SCRIPT}", evidence=json.dumps({"note": IMG}), evidence_key="xss",
                            source=f"ward note {IMG}", opened_at=NOW))
    proc, base = start_app(url)
    yield {"url": base, "engine": engine, "pid": pid}
    stop_app(proc)
    dispose_engines()


def _page(browser, dialogs: list):
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return page


def _settle(page) -> None:
    page.wait_for_timeout(1500)  # give any injected handler (onerror fires on load) time to run


def _open_by_search(page, mrn: str) -> None:
    # A reload would end the session (sign-in lives in the server session): navigate in the app.
    page.get_by_role("link", name="Patient").click()
    page.get_by_label("Search by MRN or name").fill(mrn)
    page.get_by_label("Search by MRN or name").press("Enter")


def test_hostile_name_alert_and_reason_are_shown_as_text_and_never_run(app, browser):
    dialogs: list[str] = []
    page = _page(browser, dialogs)
    sign_in(page, app["url"], "nurse1", factories.PASSWORD)
    page.get_by_role("heading", name="Caseload").wait_for(timeout=TIMEOUT)
    _settle(page)

    _open_by_search(page, "XSS-1")
    page.get_by_test_id("stBaseButton-primary").filter(has_text="Open").click()
    # The name, literally, in the header; the alert's stored title, literally, in the alert line.
    page.get_by_role("heading", name=f"{IMG} {SCRIPT}").wait_for(timeout=TIMEOUT)
    page.get_by_text(f"Check {SCRIPT}").first.wait_for(timeout=TIMEOUT)
    _settle(page)
    assert page.locator("img[src='x']").count() == 0

    page.get_by_role("link", name="Alerts").click()
    page.get_by_role("heading", name="Alerts").wait_for(timeout=TIMEOUT)
    _settle(page)
    page.close()

    # Another nurse breaks the glass with a hostile reason; the banner shows it as text.
    reason = f"Covering the ward {IMG} {SCRIPT}"
    page = _page(browser, dialogs)
    sign_in(page, app["url"], "nurse2", factories.PASSWORD)
    page.get_by_role("heading", name="Caseload").wait_for(timeout=TIMEOUT)
    _open_by_search(page, "XSS-1")
    page.get_by_role("button", name="Emergency access").click()
    page.get_by_role("textbox", name="Reason for emergency access").fill(reason)
    page.get_by_role("button", name="Open with emergency access").click()
    page.get_by_text(reason, exact=False).first.wait_for(timeout=TIMEOUT)
    page.get_by_role("heading", name=f"{IMG} {SCRIPT}").wait_for(timeout=TIMEOUT)
    _settle(page)
    assert page.locator("img[src='x']").count() == 0
    page.close()

    # The admin's audit trail lists the grant with the reason in its detail.
    page = _page(browser, dialogs)
    sign_in(page, app["url"], "admin1", factories.PASSWORD)
    page.get_by_role("link", name="Users and audit").click()
    page.get_by_role("heading", name="Users and audit").wait_for(timeout=TIMEOUT)
    _settle(page)
    page.close()

    assert dialogs == [], f"script ran: {dialogs}"


def _literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) or (
        isinstance(node, ast.JoinedStr) and not any(isinstance(v, ast.FormattedValue) for v in node.values))


def test_no_html_escape_hatch_takes_data():
    """AST scan of the UI: no unsafe_allow_html=True; st.html / components.html only with literal strings."""
    problems = []
    for path in sorted((ROOT / "dashboard").rglob("*.py")) + [ROOT / "streamlit_app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            for kw in node.keywords:
                if kw.arg == "unsafe_allow_html" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    problems.append(f"{where} unsafe_allow_html")
            name = ast.unparse(node.func)
            if name.endswith(("st.html", "components.html", "components.v1.html")) or name == "html":
                args = list(node.args) + [kw.value for kw in node.keywords if kw.arg in ("body", "html")]
                if not args or not all(_literal(a) for a in args):
                    problems.append(f"{where} {name} with a non-literal argument")
    assert problems == []
