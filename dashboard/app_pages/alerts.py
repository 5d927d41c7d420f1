"""Alerts: every active alert in scope by severity and age, escalation state and who holds it."""

import pandas as pd
import streamlit as st

from dashboard.charts import alert_age_chart
from dashboard.components.alerts import alert_actions
from dashboard.components.page import page_guard, rule_title
from dashboard.data import caseload as data
from dashboard.data.common import now
from surveillance.access import Action
from surveillance.exports import to_csv

identity, tr = page_guard(Action.VIEW_ALERTS)
st.title(tr.t("alerts.title"))
st.caption(tr.t("alerts.subtitle"))
cols = st.columns(2)
severity = cols[0].selectbox(tr.t("alerts.severity_filter"), [None, "critical", "high", "routine", "info"],
                             format_func=lambda v: tr.t("caseload.any") if v is None else tr.t(f"severity.{v}"), key="a_sev")
status = cols[1].selectbox(tr.t("alerts.status_filter"), [None, "open", "acknowledged", "snoozed"],
                           format_func=lambda v: tr.t("caseload.any") if v is None else tr.t(f"alerts.status_{v}"), key="a_status")
frame = data.alert_list(identity, severity=severity, status=status)
if frame.empty:
    st.info(tr.t("app.no_rows"))
    st.stop()
opened = pd.to_datetime(frame["opened_at"], utc=True)
frame["age_days"] = ((pd.Timestamp(now()) - opened).dt.total_seconds() / 86400).round(1)
st.plotly_chart(alert_age_chart(frame, labels={
    "x": tr.t("alerts.age_days"), "y": tr.t("caseload.open_alerts"), "title": tr.t("alerts.by_severity"),
    "severity": {s: tr.t(f"severity.{s}") for s in ("critical", "high", "routine", "info")},
}), width="stretch")
shown = pd.DataFrame({
    tr.t("alerts.col_mrn"): frame["mrn"],
    tr.t("alerts.col_name"): frame["name"],
    tr.t("alerts.col_title"): [rule_title(tr, r, t) for r, t in zip(frame["rule_id"], frame["title"], strict=True)],
    tr.t("alerts.col_severity"): frame["severity"].map(lambda v: tr.t(f"severity.{v}")),
    tr.t("alerts.col_status"): frame["status"].map(lambda v: tr.t(f"alerts.status_{v}")),
    tr.t("alerts.age_days"): frame["age_days"],
    tr.t("alerts.col_escalated"): frame["escalated_at"].map(lambda v: tr.datetime(pd.Timestamp(v).to_pydatetime()) if v else ""),
    tr.t("alerts.holder"): frame["holder"].fillna("—"),
})
st.caption(tr.t("alerts.select_hint"))
event = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                     key="alerts_table")
st.download_button(tr.t("app.export_csv"), to_csv(list(shown.columns), shown.itertuples(index=False)),
                   file_name="alerts.csv", mime="text/csv", key="alerts_csv")
if event and event.selection.rows:
    selected = frame.iloc[event.selection.rows[0]]
    patient_id = int(selected["patient_id"])
    st.divider()
    header = st.columns([4, 1])
    header[0].subheader(f"{selected['name']} · {selected['mrn']}")
    if header[1].button(tr.t("caseload.open_patient"), key="alerts_open_patient"):
        st.session_state["patient_id"] = patient_id
        st.switch_page("dashboard/app_pages/patient.py")
    alert_actions(identity, patient_id, key="alerts")
