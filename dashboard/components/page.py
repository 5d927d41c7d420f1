"""What every page starts with: the identity, its permission for the page, and labels."""

from __future__ import annotations

from functools import lru_cache

import streamlit as st

from dashboard.data import common
from dashboard.i18n import Translator
from surveillance.access import Action, Identity, allowed
from surveillance.rules import load_rules
from surveillance.service import audit_view
from surveillance.sessions import SessionRecord, refuse_forged, session_identity

LANG_KEY = "lang"
#: The session record ``surveillance.sessions.authenticate`` issued; written only by ``dashboard.app``.
AUTH_KEY = "auth"


def translator() -> Translator:
    return Translator(st.session_state.get(LANG_KEY, "en"))


def page_guard(action: Action) -> tuple[Identity, Translator]:
    """The signed-in identity if it may do ``action``; otherwise an error and ``st.stop()``.

    The identity is re-read from ``app_user`` for the sealed session record
    (``surveillance.sessions.session_identity``); nothing else in the session
    state — an ``identity`` key, a query parameter, a widget — is trusted.  A
    record that is present but forged or altered is refused and audited.  The
    navigation never offers a page a role lacks; the role check here (audited
    when it refuses) covers a page reached some other way.
    """
    tr = translator()
    record = st.session_state.get(AUTH_KEY)
    identity = session_identity(common.engine(), record) if record is not None else None
    if identity is None:
        if record is not None and not (isinstance(record, SessionRecord) and record.sealed()):
            refuse_forged(common.engine(), record, now=common.now())
        st.error(tr.t("app.denied"))
        st.stop()
    if not allowed(identity, action):
        audit_view(common.engine(), identity, patient_id=None, what=f"denied.page.{action.value}", now=common.now())
        st.error(tr.t("app.denied"))
        st.stop()
    return identity, tr


def site_label(tr: Translator, code: str | None) -> str:
    """A primary-site code ("lung_nsclc") as its name in the user's language ("Non-small-cell lung cancer")."""
    if not code:
        return tr.t("app.unknown")
    try:
        return tr.t(f"forms.site.{code}")
    except KeyError:
        return str(code).replace("_", " ")


def rule_title(tr: Translator, rule_id: str | None, fallback: str) -> str:
    """An alert's title in the user's language (``locales/*/rules.toml``); the stored title for a rule not listed."""
    if not rule_id:
        return fallback
    try:
        return tr.t(f"rules.{rule_id}")
    except KeyError:
        return fallback


@lru_cache(maxsize=1)
def _rule_ids_by_title() -> dict[str, str]:
    return {rule.title: rule.id for rule in load_rules().rules}


def reasons_text(tr: Translator, reasons: str | None) -> str:
    """A caseload's "title; title; …" of open alerts, each title in the user's language."""
    ids = _rule_ids_by_title()
    return "; ".join(rule_title(tr, ids.get(part), part) for part in (reasons or "").split("; ") if part) or "—"
