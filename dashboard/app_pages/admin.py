"""Users and audit (admin): manage accounts, read and verify the audit trail. No clinical data."""

import json
from datetime import datetime, time, timedelta, timezone

import pandas as pd
import streamlit as st

from dashboard.components.page import page_guard
from dashboard.data import admin as data
from dashboard.data.common import engine, now, today
from surveillance.access import Action, Role
from surveillance.exports import to_csv
from surveillance.service import ServiceError, audit_view
from surveillance.users import add_user, set_active, set_role

identity, tr = page_guard(Action.MANAGE_USERS)
st.title(tr.t("admin.title"))
users_tab, audit_tab = st.tabs([tr.t("admin.users"), tr.t("admin.audit")])

def _when(value) -> str:
    if value is None or value == "" or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    return tr.datetime(value)


def _detail(value) -> str:
    """An audit event's detail (JSON) as "key: value; …"; "—" when there is none."""
    try:
        detail = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)
    if not detail:
        return "—"
    if not isinstance(detail, dict):
        return str(detail)
    return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in detail.items())


with users_tab:
    users = data.users(identity)
    if not users.empty:
        st.dataframe(pd.DataFrame({
            tr.t("admin.username"): users["username"],
            tr.t("admin.display_name"): users["display_name"].fillna("—"),
            tr.t("admin.role"): users["role"].map(lambda r: tr.t(f"role.{r}")),
            tr.t("admin.department"): users["department"].fillna("—"),
            tr.t("admin.active"): users["active"].map(lambda v: tr.t(f"admin.active_{str(bool(v)).lower()}")),
            tr.t("admin.col_failed_logins"): users["failed_logins"],
            tr.t("admin.col_locked_until"): users["locked_until"].map(_when),
            tr.t("admin.col_created"): users["created_at"].map(_when),
        }), hide_index=True, width="stretch")
    with st.form("add_user"):
        st.subheader(tr.t("admin.add_user"))
        cols = st.columns(4)
        username = cols[0].text_input(tr.t("admin.username"))
        display = cols[1].text_input(tr.t("admin.display_name"))
        role = cols[2].selectbox(tr.t("admin.role"), [r.value for r in Role], format_func=lambda r: tr.t(f"role.{r}"))
        department = cols[3].text_input(tr.t("admin.department"))
        password = st.text_input(tr.t("admin.password"), type="password")
        if st.form_submit_button(tr.t("admin.add_user")):
            try:
                add_user(engine(), actor=identity.actor, username=username.strip(), role=role, password=password,
                         display_name=display or None, department=department or None, now=now())
            except ServiceError as err:
                st.error(str(err))
            else:
                st.success(tr.t("app.saved"))
    if not users.empty:
        with st.form("change_user"):
            st.subheader(tr.t("admin.change_user"))
            cols = st.columns(3)
            who = cols[0].selectbox(tr.t("admin.username"), users["username"].tolist())
            new_role = cols[1].selectbox(tr.t("admin.role"), [None, *[r.value for r in Role]],
                                         format_func=lambda r: "—" if r is None else tr.t(f"role.{r}"))
            activity = cols[2].selectbox(tr.t("admin.active"), [None, True, False],
                                         format_func=lambda v: "—" if v is None else tr.t(f"admin.active_{str(v).lower()}"))
            if st.form_submit_button(tr.t("admin.apply")):
                try:
                    if new_role:
                        set_role(engine(), actor=identity.actor, username=who, role=new_role, now=now())
                    if activity is not None:
                        set_active(engine(), actor=identity.actor, username=who, active=activity, now=now())
                except ServiceError as err:
                    st.error(str(err))
                else:
                    st.success(tr.t("app.saved"))

with audit_tab:
    cols = st.columns(5)
    today = today()
    since = cols[0].date_input(tr.t("admin.since"), value=today - timedelta(days=7), max_value=today)
    until = cols[1].date_input(tr.t("admin.until"), value=today, max_value=today)
    actor = cols[2].text_input(tr.t("admin.actor"))
    action = cols[3].text_input(tr.t("admin.action"))
    patient = cols[4].number_input(tr.t("admin.patient_id"), min_value=0, value=0, step=1)
    more = st.columns(3)
    outcome = more[0].selectbox(tr.t("admin.col_outcome"), [None, *data.AUDIT_OUTCOMES],
                                format_func=lambda o: "—" if o is None else o)
    sort = more[1].selectbox(tr.t("admin.sort_by"), data.AUDIT_SORTS,
                             format_func=lambda c: tr.t(f"admin.sort_{c}"))
    descending = more[2].selectbox(tr.t("admin.order"), [True, False],
                                   format_func=lambda d: tr.t("admin.descending" if d else "admin.ascending"))
    emergency_only = st.checkbox(tr.t("break_glass.filter"), key="audit_break_glass_only")
    events = data.audit_events(
        identity, since=datetime.combine(since, time.min, tzinfo=timezone.utc),
        until=datetime.combine(until + timedelta(days=1), time.min, tzinfo=timezone.utc),
        actor=actor.strip() or None, action=action.strip() or None, patient_id=int(patient) or None,
        break_glass_only=emergency_only, outcome=outcome, sort=sort, descending=descending,
    )
    st.caption(tr.t("admin.events", n=tr.number(len(events))))
    if len(events) >= data.AUDIT_LIMIT:
        st.warning(tr.t("admin.events_capped", n=tr.number(data.AUDIT_LIMIT)))
    if not events.empty:
        st.dataframe(pd.DataFrame({
            tr.t("admin.col_event"): events["id"],
            tr.t("admin.col_when"): events["occurred_at"].map(_when),
            tr.t("admin.actor"): events["actor"],
            tr.t("admin.col_action"): events["action"],
            tr.t("admin.col_outcome"): events["outcome"],
            tr.t("admin.col_patient"): events["patient_id"].map(lambda v: "—" if pd.isna(v) else str(int(v))),
            tr.t("admin.col_target"): events["target"].fillna("—"),
            tr.t("admin.col_detail"): events["detail"].map(_detail),
        }), hide_index=True, width="stretch")
    if not events.empty and st.download_button(tr.t("app.export_csv"),
                                               to_csv(list(events.columns), events.itertuples(index=False)),
                                               file_name="audit.csv", mime="text/csv"):
        audit_view(engine(), identity, patient_id=None, what="export.audit", now=now(), detail={"rows": len(events)})
    if st.button(tr.t("admin.verify")):
        report = data.verify_audit(identity)
        if report.ok:
            st.success(tr.t("admin.chain_ok", n=tr.number(report.events)))
        else:
            st.error(tr.t("admin.chain_bad", id=report.first_bad_id, at=_when(report.first_bad_at),
                          problem=report.problem))
