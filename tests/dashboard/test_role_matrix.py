"""Role × page: each role is offered exactly its pages, every other page refuses it, and a lead sees no identifier.

The expected mapping is the product's (README "What it does"), written out
here rather than read from ``dashboard.app.PAGES``: the router and the page
guards must both agree with it.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from surveillance.access import Role
from tests.dashboard.conftest import login, new_app
from tests.dashboard.support import EN, PAGES_DIR, audit_count, everything, identifiers, identity

pytestmark = pytest.mark.db

PAGES = (
    "caseload",
    "patient",
    "alerts",
    "board",
    "trends",
    "health",
    "admin",
    "import_data",
    "calculator",
    "reference",
)
EXPECTED = {
    Role.NURSE: {"caseload", "patient", "alerts", "calculator", "reference"},
    Role.PHYSICIAN: {"caseload", "patient", "alerts", "board", "calculator", "reference"},
    Role.LEAD: {"trends", "calculator", "reference"},
    Role.ADMIN: {"health", "admin", "import_data", "calculator", "reference"},
}
USERNAME = {Role.NURSE: "nurse1", Role.PHYSICIAN: "doc1", Role.LEAD: "lead1", Role.ADMIN: "admin1"}
TITLE = {
    "caseload": "caseload.title",
    "patient": "patient.title",
    "alerts": "alerts.title",
    "board": "board.title",
    "trends": "trends.title",
    "health": "health.title",
    "admin": "admin.title",
    "import_data": "import.title",
    "calculator": "calculator.title",
    "reference": "reference.title",
}
#: The action each page's guard checks (and names in the audit event when it refuses).
GUARD = {
    "caseload": "view_caseload",
    "patient": "view_patient",
    "alerts": "view_alerts",
    "board": "view_board",
    "trends": "view_trends",
    "health": "view_health",
    "admin": "manage_users",
    "import_data": "import",
    "calculator": "use_calculator",
    "reference": "view_reference",
}


def _offered(at: AppTest, name: str) -> bool:
    """Whether the signed-in navigation registered the page (switching to any other page is refused)."""
    try:
        at.switch_page(f"dashboard/app_pages/{name}.py")
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("role", list(Role))
def test_navigation_offers_exactly_the_roles_pages_and_each_opens(app_db, role):
    at = login(new_app(), app_db["engine"], USERNAME[role])
    at.run()
    assert not at.exception, at.exception
    assert {name for name in PAGES if _offered(at, name)} == EXPECTED[role]
    for name in sorted(EXPECTED[role]):
        at.switch_page(f"dashboard/app_pages/{name}.py").run()
        assert not at.exception, (name, at.exception)
        assert EN.t("app.denied") not in [e.value for e in at.error], name
        assert EN.t(TITLE[name]) in [t.value for t in at.title], name


@pytest.mark.parametrize("role", list(Role))
def test_every_other_page_run_directly_refuses_the_role_and_is_audited(app_db, role):
    engine = app_db["engine"]
    who = identity(engine, USERNAME[role])
    forbidden = [name for name in PAGES if name not in EXPECTED[role]]
    assert forbidden
    for name in forbidden:
        # A real signed-in session: the page re-reads the identity from it (an "identity" key is not trusted).
        at = login(AppTest.from_file(str(PAGES_DIR / f"{name}.py"), default_timeout=60), engine, USERNAME[role])
        at.run()
        assert not at.exception, (name, at.exception)
        assert [e.value for e in at.error] == [EN.t("app.denied")], name
        assert not at.title and not at.dataframe and not at.table and not at.get("plotly_chart"), name
        assert not at.get("download_button"), name
        assert audit_count(engine, actor=who.username, action=f"denied.page.{GUARD[name]}") == 1, name


def test_every_page_refuses_a_session_without_an_identity():
    for name in PAGES:
        at = AppTest.from_file(str(PAGES_DIR / f"{name}.py"), default_timeout=60).run()
        assert not at.exception, (name, at.exception)
        assert [e.value for e in at.error] == [EN.t("app.denied")], name
        assert not at.title and not at.dataframe and not at.table, name


def test_a_lead_sees_no_patient_identifier_on_any_of_her_pages(app_db):
    engine = app_db["engine"]
    forbidden = identifiers(engine)
    assert len(forbidden) == 3 * len(app_db["patients"])
    at = login(new_app(), engine, "lead1")
    at.run()
    for name in sorted(EXPECTED[Role.LEAD]):
        at.switch_page(f"dashboard/app_pages/{name}.py").run()
        assert not at.exception, (name, at.exception)
        shown = everything(at)
        assert EN.t(TITLE[name]) in shown, name
        leaks = sorted(value for value in forbidden if value in shown)
        assert not leaks, (name, leaks[:5])
