"""What every page starts with: the identity, its permission for the page, and labels."""

from __future__ import annotations

import streamlit as st

from dashboard.data import common
from dashboard.i18n import Translator
from surveillance.access import Action, Identity, allowed
from surveillance.service import audit_view

LANG_KEY = "lang"


def translator() -> Translator:
    return Translator(st.session_state.get(LANG_KEY, "en"))


def page_guard(action: Action) -> tuple[Identity, Translator]:
    """The signed-in identity if it may do ``action``; otherwise an error and ``st.stop()``.

    The navigation never offers a page a role lacks; this second check (audited
    when it refuses) covers a page reached some other way.
    """
    tr = translator()
    identity: Identity | None = st.session_state.get("identity")
    if identity is None:
        st.error(tr.t("app.denied"))
        st.stop()
    if not allowed(identity, action):
        audit_view(common.engine(), identity, patient_id=None, what=f"denied.page.{action.value}", now=common.now())
        st.error(tr.t("app.denied"))
        st.stop()
    return identity, tr
