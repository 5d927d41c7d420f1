"""The alert action panel: acknowledge, snooze, escalate, assign, mark done, dismiss."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import streamlit as st

from dashboard.components.page import rule_title, translator
from dashboard.data import caseload as data
from dashboard.data.board import md_escape
from dashboard.data.common import after_write, engine, now, today
from surveillance import service
from surveillance.access import Identity, PermissionDenied
from surveillance.service import ConflictError, ServiceError


def _do(action, *args, **kwargs) -> bool:
    tr = translator()
    try:
        action(engine(), *args, now=now(), **kwargs)
    except ConflictError:
        st.warning(tr.t("app.conflict"))
        after_write()
        return False
    except (ServiceError, PermissionDenied) as err:
        st.error(str(err))
        return False
    after_write()
    st.toast(tr.t("app.saved"))
    return True


def _evidence_value(value, tr) -> str:
    if value is None or value == "":
        return tr.t("app.unknown")
    if isinstance(value, bool):
        return tr.t("scores.yes") if value else tr.t("scores.no")
    if isinstance(value, (list, tuple)):
        return ", ".join(_evidence_value(v, tr) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {_evidence_value(v, tr)}" for k, v in value.items())
    return str(value)


def evidence_markdown(evidence, tr) -> str:
    """What fired the alert, one "**finding**: value" line each (not a JSON blob)."""
    if not isinstance(evidence, dict) or not evidence:
        return tr.t("alerts.no_evidence")
    lines = [f"- **{md_escape(key.replace('_', ' '))}**: {md_escape(_evidence_value(value, tr))}"
             for key, value in evidence.items()]
    return f"{tr.t('alerts.evidence')}:\n\n" + "\n".join(lines)


def alert_actions(identity: Identity, patient_id: int, *, key: str) -> None:
    """The patient's active alerts with their evidence; the action forms are drawn for one chosen alert only."""
    tr = translator()
    alerts = data.patient_alerts(identity, patient_id)
    if alerts.empty:
        st.info(tr.t("alerts.none_for_patient"))
        return
    badges = {"critical": ":red[●]", "high": ":orange[●]", "routine": ":blue[●]", "info": ":gray[●]"}
    for row in alerts.itertuples():
        title = rule_title(tr, row.rule_id, row.title)
        label = f"{badges[row.severity]} **{title}** — {tr.t(f'severity.{row.severity}')} · {tr.t(f'alerts.status_{row.status}')}"
        with st.expander(label, expanded=False):
            st.caption(tr.t("alerts.opened", when=tr.datetime(row.opened_at), rule=row.rule_id, version=row.rule_version))
            st.markdown(evidence_markdown(row.evidence, tr))
            st.caption(tr.t("alerts.source", source=row.source))
    by_id = {int(row.id): row for row in alerts.itertuples()}
    chosen = st.selectbox(tr.t("alerts.act_on"), list(by_id), format_func=lambda i: rule_title(tr, by_id[i].rule_id, by_id[i].title),
                          key=f"{key}-act-on")
    row = by_id[chosen]
    prefix = f"{key}-{row.id}"
    cols = st.columns(6)
    if row.status == "open" and cols[0].button(tr.t("alerts.acknowledge"), key=f"{prefix}-ack", type="primary"):
        if _do(service.acknowledge_alert, identity, row.id, version=row.version):
            st.rerun()
    with cols[1].popover(tr.t("alerts.snooze")):
        with st.form(f"{prefix}-snooze-form"):
            until_day = st.date_input(tr.t("alerts.snooze_until"), value=today() + timedelta(days=7),
                                      min_value=today() + timedelta(days=1),
                                      max_value=today() + timedelta(days=service.MAX_SNOOZE_DAYS))
            reason = st.text_input(tr.t("alerts.reason"), key=f"{prefix}-snooze-reason")
            if st.form_submit_button(tr.t("alerts.snooze")):
                until = datetime.combine(until_day, time(8, 0), tzinfo=timezone.utc)
                if _do(service.snooze_alert, identity, row.id, version=row.version, until=until, reason=reason):
                    st.rerun()
    with cols[2].popover(tr.t("alerts.done")):
        with st.form(f"{prefix}-done-form"):
            taken = st.text_input(tr.t("alerts.action_taken"), key=f"{prefix}-taken")
            if st.form_submit_button(tr.t("alerts.done")):
                if _do(service.complete_alert, identity, row.id, version=row.version, action_taken=taken):
                    st.rerun()
    with cols[3].popover(tr.t("alerts.escalate")):
        with st.form(f"{prefix}-escalate-form"):
            options = {p["id"]: p["display_name"] for p in data.physicians(identity.department)}
            to_user = st.selectbox(tr.t("alerts.escalate_to"), list(options), format_func=options.get) if options else None
            note = st.text_input(tr.t("alerts.note"), key=f"{prefix}-note")
            if st.form_submit_button(tr.t("alerts.escalate")):
                if _do(service.escalate_alert, identity, row.id, version=row.version, to_user_id=to_user, note=note):
                    st.rerun()
    with cols[4].popover(tr.t("alerts.assign")):
        with st.form(f"{prefix}-assign-form"):
            staff = {p["id"]: p["display_name"] for p in (*data.nurses(identity.department),
                                                          *data.physicians(identity.department))}
            to_user = st.selectbox(tr.t("alerts.assign_to"), list(staff), format_func=staff.get) if staff else None
            if st.form_submit_button(tr.t("alerts.assign")):
                if to_user is None:
                    st.error(tr.t("alerts.assign_nobody"))
                elif _do(service.assign_alert, identity, row.id, version=row.version, to_user_id=to_user):
                    st.rerun()
    with cols[5].popover(tr.t("alerts.dismiss")):
        with st.form(f"{prefix}-dismiss-form"):
            reason = st.text_input(tr.t("alerts.reason"), key=f"{prefix}-dismiss-reason")
            if st.form_submit_button(tr.t("alerts.dismiss")):
                if _do(service.dismiss_alert, identity, row.id, version=row.version, reason=reason):
                    st.rerun()
