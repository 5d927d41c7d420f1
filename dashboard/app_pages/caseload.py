"""Caseload: my patients by priority, why each is here and what is due; act on the alerts."""

import streamlit as st

from dashboard.components.alerts import alert_actions
from dashboard.components.exports import table_downloads
from dashboard.components.page import page_guard, reasons_text, rule_title, site_label
from dashboard.components.score_panel import or_list
from dashboard.data import caseload as data
from dashboard.data.common import engine, now, today
from surveillance import cohort, disclosure
from surveillance.access import Action, Role
from surveillance.rules.engine import totals_of
from surveillance.scoring.vocab import PrimarySite

identity, tr = page_guard(Action.VIEW_CASELOAD)
st.title(tr.t("caseload.title"))
st.caption(tr.t("caseload.subtitle"))

titles = data.rule_titles()
filters = st.columns(4)
tier = filters[0].selectbox(tr.t("caseload.tier"), [None, "high", "intermediate", "low", "screening"],
                            format_func=lambda v: tr.t("caseload.any") if v is None else tr.t(f"tier.{v}"), key="f_tier")
rule_id = filters[1].selectbox(tr.t("caseload.alert_type"), [None, *titles],
                               format_func=lambda v: tr.t("caseload.any") if v is None else rule_title(tr, v, titles[v]),
                               key="f_rule")
site = filters[2].selectbox(tr.t("caseload.primary_site"), [None, *[s.value for s in PrimarySite]],
                            format_func=lambda v: tr.t("caseload.any") if v is None else site_label(tr, v), key="f_site")
nurse_id = None
if identity.role == Role.PHYSICIAN:
    nurses = {n["id"]: n["display_name"] for n in data.nurses(identity.department)}
    nurse_id = filters[3].selectbox(tr.t("caseload.nurse"), [None, *nurses],
                                    format_func=lambda v: tr.t("caseload.any") if v is None else nurses[v], key="f_nurse")


@st.fragment(run_every="30s")
def worklist() -> None:
    metrics = data.caseload_metrics(identity, today())
    cols = st.columns(4)
    cols[0].metric(tr.t("caseload.patients"), tr.number(metrics["patients"]))
    cols[1].metric(tr.t("caseload.open_alerts"), tr.number(metrics["open_alerts"]))
    cols[2].metric(tr.t("caseload.critical"), tr.number(metrics["critical"]))
    cols[3].metric(tr.t("caseload.overdue_imaging"), tr.number(metrics["overdue"]))
    frame = data.caseload(identity, tier=tier, rule_id=rule_id, primary_site=site, nurse_id=nurse_id)
    if frame.empty:
        st.info(tr.t("caseload.empty"))
        st.session_state.pop("caseload_patient", None)
        return
    # Who, why and what is due first (the reasons cut to the first ones: the selected patient's alerts are
    # listed in full under the table), then the scores; the priority is the order of the rows.
    shown = frame[["mrn", "name", "alert_reasons", "next_imaging_due", "next_bma_due", "tier", "sins_worst_mask",
                   "bilsky_worst", "katagiri_band", "priority"]].copy()
    shown["tier"] = shown["tier"].map(lambda v: tr.t(f"tier.{v}") if v else "—")
    shown["next_imaging_due"] = shown["next_imaging_due"].map(tr.date)
    shown["next_bma_due"] = shown["next_bma_due"].map(tr.date)
    shown["sins_worst_mask"] = shown["sins_worst_mask"].map(lambda m: or_list(totals_of(int(m or 0)), tr) or "—")
    shown["bilsky_worst"] = shown["bilsky_worst"].map(lambda v: str(v) if v else "—")
    shown["katagiri_band"] = shown["katagiri_band"].map(lambda v: tr.t(f"caseload.katagiri_{v}") if v else "—")
    shown["alert_reasons"] = shown["alert_reasons"].map(lambda v: reasons_text(tr, v))
    shown = shown.rename(columns={"sins_worst_mask": "sins_worst"})
    widths = {"mrn": 85, "name": 120, "alert_reasons": 255, "next_imaging_due": 115, "next_bma_due": 115, "tier": 75,
              "sins_worst": 90, "bilsky_worst": 90, "katagiri_band": 110, "priority": 65}
    config = {tr.t(f"caseload.col_{c}"): st.column_config.Column(width=w) for c, w in widths.items()}
    shown.columns = [tr.t(f"caseload.col_{c}") for c in shown.columns]
    event = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                         key="caseload_table", column_config=config)
    table_downloads(identity, tr, action="export.caseload", columns=list(shown.columns),
                    rows=list(shown.itertuples(index=False)), patient_ids=list(frame["patient_id"]),
                    file_stem="caseload", key="caseload")
    selected = event.selection.rows if event else []
    if selected:
        st.session_state["caseload_patient"] = int(frame.iloc[selected[0]]["patient_id"])
    elif st.session_state.get("caseload_patient") not in set(frame["patient_id"]):
        st.session_state["caseload_patient"] = int(frame.iloc[0]["patient_id"])


worklist()

if identity.role == Role.PHYSICIAN:
    with st.expander(tr.t("caseload.cohort_title")):
        st.caption(tr.t("caseload.cohort_hint", limit=tr.number(cohort.COHORT_LIMIT)))
        filters_now = {"tier": tier, "primary_site": site, "nurse_id": nurse_id, "rule_id": rule_id}

        def _cohort_file(file_format: str) -> bytes:
            ids, rows, cut = cohort.cohort_patients(engine(), identity, **filters_now)
            return disclosure.export_file(
                engine(), identity, action="export.cohort", patient_ids=ids, file_format=file_format,
                build=lambda: disclosure.table_bytes(file_format, cohort.COLUMNS, rows, sheet="cohort"), now=now(),
                detail={"rows": len(rows), "cut": cut, "filters": filters_now})

        buttons = st.columns(2)
        for column, file_format in zip(buttons, disclosure.TABLE_FORMATS, strict=True):
            column.download_button(tr.t(f"app.export_{file_format}"), lambda fmt=file_format: _cohort_file(fmt),
                                   file_name=f"cohort.{file_format}", mime=disclosure.TABLE_FORMATS[file_format],
                                   key=f"cohort_{file_format}", on_click="ignore")
patient_id = st.session_state.get("caseload_patient")
if patient_id:
    st.divider()
    frame = data.caseload(identity, tier=tier, rule_id=rule_id, primary_site=site, nurse_id=nurse_id)
    match = frame[frame["patient_id"] == patient_id] if not frame.empty else frame
    if not match.empty:
        row = match.iloc[0]
        header = st.columns([4, 1])
        header[0].subheader(f"{row['name']} · {row['mrn']}")
        if header[1].button(tr.t("caseload.open_patient"), key="open_patient"):
            st.session_state["patient_id"] = patient_id
            st.switch_page("dashboard/app_pages/patient.py")
        alert_actions(identity, patient_id, key="caseload")
