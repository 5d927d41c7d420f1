"""The router: page config, language, sign-in gate, session checks, navigation by role.

``streamlit_app.py`` calls :func:`run`.  Pages are registered per role with
``st.navigation``, so a page a role does not have cannot be opened at all; each
page checks the role again (``dashboard.components.page``) and every read checks
the patient scope (``dashboard.data``).
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import timedelta
from pathlib import Path

import streamlit as st
from sqlalchemy.exc import DBAPIError

from dashboard.components.page import AUTH_KEY, LANG_KEY, translator
from dashboard.data import common
from dashboard.i18n import LANGUAGES
from db.schema import SchemaOutOfDate
from surveillance.access import Role
from surveillance.sessions import AccountLocked, LoginFailed, SessionRecord, authenticate, check_session, end_session

log = logging.getLogger("dashboard")
PAGES_DIR = Path(__file__).with_name("app_pages")

#: (file, nav label key, icon, roles)
PAGES = [
    ("caseload.py", "nav.caseload", ":material/assignment_ind:", {Role.NURSE, Role.PHYSICIAN}),
    ("patient.py", "nav.patient", ":material/person:", {Role.NURSE, Role.PHYSICIAN}),
    ("alerts.py", "nav.alerts", ":material/notifications_active:", {Role.NURSE, Role.PHYSICIAN}),
    ("board.py", "nav.board", ":material/groups:", {Role.PHYSICIAN}),
    ("trends.py", "nav.trends", ":material/monitoring:", {Role.LEAD}),
    ("health.py", "nav.health", ":material/monitor_heart:", {Role.ADMIN}),
    ("admin.py", "nav.admin", ":material/admin_panel_settings:", {Role.ADMIN}),
    ("import_data.py", "nav.import", ":material/upload_file:", {Role.ADMIN}),
    ("calculator.py", "nav.calculator", ":material/calculate:", {Role.NURSE, Role.PHYSICIAN, Role.LEAD, Role.ADMIN}),
    ("reference.py", "nav.reference", ":material/menu_book:", {Role.NURSE, Role.PHYSICIAN, Role.LEAD, Role.ADMIN}),
]


def _release_scheduler(scheduler) -> None:
    scheduler.shutdown(wait=False)


@st.cache_resource(show_spinner=False, on_release=_release_scheduler)
def _in_process_scheduler():
    """The single-process demo runs the scheduler inside the app (one per server process)."""
    from surveillance.scheduler import start_in_process

    return start_in_process(common.engine())


def _want_in_process_scheduler() -> bool:
    flag = os.environ.get("SURVEILLANCE_INPROCESS_SCHEDULER", "auto").lower()
    if flag in ("0", "false", "no"):
        return False
    return flag in ("1", "true", "yes") or common.demo_mode()


def _login_page() -> None:
    tr = translator()
    st.title(tr.t("app.title"))
    st.caption(tr.t("app.tagline"))
    notice = st.session_state.pop("login_notice", None)
    if notice:
        st.info(tr.t(f"login.{notice}"))
    with st.form("login"):
        st.subheader(tr.t("login.title"))
        username = st.text_input(tr.t("login.username"), key="login_user")
        password = st.text_input(tr.t("login.password"), type="password", key="login_password")
        submitted = st.form_submit_button(tr.t("login.submit"), type="primary")
    if submitted:
        try:
            record = authenticate(common.engine(), username, password, now=common.now())
        except AccountLocked as err:
            st.error(tr.t("login.locked", until=tr.datetime(err.until)))
        except LoginFailed:
            st.error(tr.t("login.failed"))
        else:
            st.session_state[AUTH_KEY] = record
            st.rerun()
    if common.demo_mode():
        from surveillance.demo import DEMO_USERS

        with st.expander(tr.t("login.demo_accounts"), expanded=True):
            st.table([{"username": u.username, "password": u.password, "role": tr.t(f"role.{u.role}")} for u in DEMO_USERS])


def _sidebar(record: SessionRecord) -> None:
    tr = translator()
    with st.sidebar:
        st.caption(tr.t("app.signed_in_as", name=record.display_name, role=tr.t(f"role.{record.role}")))
        if st.button(tr.t("app.sign_out"), key="sign_out"):
            end_session(common.engine(), record, reason="user", now=common.now())
            st.session_state.pop(AUTH_KEY, None)
            st.rerun()


#: The last successful recompute this server process has seen: what the stale-data banner names when
#: the database cannot be read.
_LAST_SEEN_RUN: dict[str, common.RunInfo] = {}


def _freshness_banner() -> None:
    tr = translator()
    run = common.latest_run()
    if run.run_id is not None:
        _LAST_SEEN_RUN["run"] = run
    if run.run_id is None:
        st.warning(tr.t("app.never_run"))
        return
    interval = timedelta(seconds=int(os.environ.get("SCHEDULER_INCREMENTAL_SECONDS", "900")))
    age = common.now() - run.finished_at
    # Older than its interval, with a few minutes' grace for the next run's own duration and start.
    if age > interval + min(interval, timedelta(minutes=5)):
        minutes = int(age.total_seconds() // 60)
        every = int(interval.total_seconds())
        # A demo or test interval under a minute is said in seconds, not as "every 0 min".
        st.warning(tr.t("app.stale", age=f"{minutes // 60} h {minutes % 60} min",
                        interval=f"{every} s" if every < 60 else f"{every // 60} min"))


def _language_switch() -> None:
    current = st.session_state.get(LANG_KEY, "en")
    choice = st.sidebar.selectbox(
        "Language / 言語", list(LANGUAGES), index=list(LANGUAGES).index(current),
        format_func=LANGUAGES.get, key="language_select",
    )
    st.session_state[LANG_KEY] = choice


def _database_error(err: Exception) -> None:
    """A plain message with a reference id (the traceback goes to the server log under that id), and the
    stale-data banner: nothing on screen may pass for current scores or alerts."""
    tr = translator()
    reference = uuid.uuid4().hex[:10]
    log.error("database error, reference %s", reference, exc_info=err)
    st.error(tr.t("app.db_error", ref=reference))
    seen = _LAST_SEEN_RUN.get("run")
    when = tr.datetime(seen.finished_at) if seen is not None and seen.finished_at else tr.t("app.unknown")
    st.warning(tr.t("app.db_stale", when=when))


def run() -> None:
    st.set_page_config(page_title="Cancer Locomo", page_icon=":material/health_and_safety:", layout="wide")
    _language_switch()
    try:
        _run()
    except DBAPIError as err:  # unreachable, locked beyond the timeout, read-only, full, not a database
        _database_error(err)
    except SchemaOutOfDate as err:  # a clear instruction, not Streamlit's generic "This app has encountered an error"
        log.error("database schema out of date", exc_info=err)
        st.error(translator().t("app.schema_out_of_date"))


def _run() -> None:
    if _want_in_process_scheduler():
        _in_process_scheduler()
    record: SessionRecord | None = st.session_state.get(AUTH_KEY)
    if record is not None:
        ended = check_session(common.engine(), record, now=common.now())
        if ended:
            if ended != "forged":  # a forged record was refused and audited as such; it is nobody's sign-out
                end_session(common.engine(), record, reason=ended, now=common.now())
            st.session_state.pop(AUTH_KEY, None)
            st.session_state["login_notice"] = "changed" if ended == "forged" else ended
            record = None
    if record is None:
        st.navigation([st.Page(_login_page, title=translator().t("login.title"), url_path="login")],
                      position="hidden").run()
        return
    st.session_state.pop("identity", None)  # pages re-read the identity from the sealed record and the database
    tr = translator()
    role = Role(record.role)
    pages = [
        st.Page(str(PAGES_DIR / file), title=tr.t(label), icon=icon, url_path=file.removesuffix(".py"))
        for file, label, icon, roles in PAGES
        if role in roles
    ]
    _sidebar(record)
    if common.demo_mode():
        st.sidebar.caption(tr.t("app.demo_banner"))
    _freshness_banner()
    st.navigation(pages).run()
