"""Cancer board: the queue of board candidates in scope, the case card, and the board's recorded decision."""

import re

import pandas as pd
import streamlit as st

from dashboard.components.exports import file_download
from dashboard.components.page import page_guard
from dashboard.components.score_panel import locomo_panel, score_panel
from dashboard.data import board as data
from dashboard.data.board_pdf import case_card_pdf
from dashboard.data.common import after_write, engine, now, today
from surveillance import disclosure, service
from surveillance.access import Action, PermissionDenied
from surveillance.service import ServiceError

identity, tr = page_guard(Action.VIEW_BOARD)

# Printing the page prints the case card only: the queue, the widgets and Streamlit's chrome are hidden.
st.html(
    "<style>@media print {"
    "[data-testid='stSidebar'], [data-testid='stHeader'], [data-testid='stToolbar'], "
    "[data-testid='stDecoration'], [data-testid='stStatusWidget'], [data-testid='stSidebarCollapsedControl'], "
    ".st-key-board_queue, .st-key-board_actions, .st-key-board_notice, "
    "[data-testid='stForm'], [data-testid='stButton'], [data-testid='stDownloadButton'], "
    "[data-testid='stTextArea'], [data-testid='stDateInput'], [data-testid='stAlert'] {display: none !important;}"
    ".st-key-board_card [data-testid='stAlert'] {display: block !important;}"
    "[data-testid='stMain'], [data-testid='stMainBlockContainer'] {padding: 0 !important; margin: 0 !important;}"
    "[data-testid='stExpander'] details {border: none;}"
    ".st-key-board_card {break-inside: auto;}"
    "table {page-break-inside: auto;} tr {break-inside: avoid;}"
    "}</style>"
)

today = today()
TABLE_KEY = "board_table"

with st.container(key="board_notice"):
    notice = st.session_state.pop("board_notice", None)
    if notice:
        st.success(tr.t("board.recorded", name=notice["name"], mrn=notice["mrn"], closed=notice["closed"]))
        if notice.get("still_queued"):
            st.warning(tr.t("board.still_queued"))

with st.container(key="board_queue"):
    st.title(tr.t("board.title"))
    st.caption(tr.t("board.subtitle"))
    queue = data.board_queue(identity)
    if queue.empty:
        st.info(tr.t("board.empty"))
        st.stop()
    if len(queue) >= data.QUEUE_LIMIT:
        st.caption(tr.t("board.capped", limit=tr.number(data.QUEUE_LIMIT)))
    else:
        st.caption(tr.t("board.count", count=tr.number(len(queue))))
    # The scores a board weighs first; when and the alert's status last (they scroll into view if the screen is narrow).
    shown = pd.DataFrame({
        tr.t("board.col_mrn"): queue["mrn"],
        tr.t("board.col_name"): queue["name"],
        tr.t("board.col_priority"): queue["priority"],
        tr.t("board.col_why"): queue["reasons"],
        tr.t("board.col_sins_worst"): queue["sins_worst"].map(  # "8, 9 or 11": numbers, "or" in the user's language
            lambda v: v.replace(" or ", f" {tr.t('board.or')} ") if v else "—"),
        tr.t("board.col_bilsky_worst"): queue["bilsky_worst"].map(lambda v: str(v) if v else "—"),
        tr.t("board.col_katagiri"): queue["katagiri_band"].map(
            lambda v: data.label_or(tr, f"caseload.katagiri_{v}", v) if v else "—"),
        tr.t("board.col_tes"): queue["tes_screen"].map(lambda v: data.label_or(tr, f"board.tes_{v}", v) if v else "—"),
        tr.t("board.col_tier"): queue["tier"].map(lambda v: tr.t(f"tier.{v}") if v else "—"),
        tr.t("board.col_since"): queue["since"].map(tr.date),
        tr.t("board.col_alert_status"): queue["alert_status"].map(lambda v: tr.t(f"alerts.status_{v}")),
    })
    widths = {"board.col_mrn": 85, "board.col_name": 120, "board.col_priority": 65, "board.col_why": 245,
              "board.col_sins_worst": 95, "board.col_bilsky_worst": 90, "board.col_katagiri": 110,
              "board.col_tes": 95, "board.col_tier": 70, "board.col_since": 115, "board.col_alert_status": 90}
    st.caption(tr.t("board.select_hint"))
    event = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                         key=TABLE_KEY,
                         column_config={tr.t(k): st.column_config.Column(width=w) for k, w in widths.items()})
    st.divider()

ids = [int(v) for v in queue["patient_id"]]
rows = event.selection.rows if event else []
if rows and rows[0] < len(ids):
    st.session_state["board_patient"] = ids[rows[0]]
elif st.session_state.get("board_patient") not in ids:
    st.session_state["board_patient"] = ids[0]
patient_id = st.session_state["board_patient"]

card = data.case_card(identity, patient_id)
if card is None:  # left the scope between the queue read and now
    st.error(tr.t("app.denied"))
    st.stop()
service.audit_view(engine(), identity, patient_id=patient_id, what="view.board_case", now=now())

patient = card["patient"]
result = card["result"]
name = f"{patient['family_name']} {patient['given_name']}"


def _table(rows: list[dict], columns: dict[str, str], empty: str) -> None:
    if not rows:
        st.caption(empty)
        return
    frame = pd.DataFrame(rows)[list(columns)].astype(str)
    frame.columns = [tr.t(label) for label in columns.values()]
    st.table(frame, hide_index=True)


with st.container(key="board_card"):
    st.header(tr.t("board.card_heading", name=data.md_escape(name), mrn=data.md_escape(patient["mrn"])))
    st.markdown(f"**{tr.t('board.why')}:** {data.md_escape(card['reasons'] or '—')} · "
                f"{tr.t('board.since', when=tr.date(card['since']))}")

    st.subheader(tr.t("board.demographics"))
    facts = data.demographics(card, tr, today)
    st.table(pd.DataFrame({tr.t("board.col_value"): [v for _, v in facts]}, index=[k for k, _ in facts]))

    st.subheader(tr.t("board.scores"))
    if card["score_error"]:
        st.error(tr.t("board.score_error", error=card["score_error"]))
    else:
        score_panel(result, tr)

    st.subheader(tr.t("board.lesions"))
    _table(data.lesion_rows(card, tr), {
        "level": "board.col_level", "pain": "board.col_pain", "lesion_type": "board.col_lesion_type",
        "alignment": "board.col_alignment", "collapse": "board.col_collapse",
        "posterolateral": "board.col_posterolateral", "bilsky": "board.col_bilsky", "sins": "board.col_sins",
        "category": "board.col_category", "first_seen": "board.col_first_seen", "assessed": "board.col_assessed",
    }, tr.t("board.no_lesions"))

    st.subheader(tr.t("board.imaging"))
    _table(data.imaging_rows(card, tr), {"date": "board.col_date", "modality": "board.col_modality",
                                         "region": "board.col_region", "findings": "board.col_findings"},
           tr.t("board.no_imaging"))

    st.subheader(tr.t("board.bma"))
    bma = data.bma_summary(card, tr)
    st.table(pd.DataFrame({tr.t("board.col_value"): list(bma.values())},
                          index=[tr.t(f"board.bma_{k}") for k in bma]))

    locomo_panel(int(card["snapshot"].get("locomo_types") or card["state"].get("locomo_types") or 0), tr)
    conditions = data.active_conditions(card, tr)
    if conditions:
        _table(conditions, {"condition": "board.col_condition", "onset": "board.col_onset", "plan": "board.col_plan",
                            "review": "board.col_review"}, "")

    st.subheader(tr.t("board.contra"))
    st.info(tr.t("board.contra_note"))
    _table([{"item": tr.t(f"board.contra_{i['item']}"), "record": tr.t(f"board.contra_{i['item']}_values", **i["values"]),
             "concern": tr.t(f"board.concern_{i['status']}")}
            for i in data.surgery_screen(card, joiner=tr.t("board.or"))],
           {"item": "board.col_item", "record": "board.col_record", "concern": "board.col_concern"}, tr.t("app.no_rows"))

    st.subheader(tr.t("board.alerts"))
    _table(data.alert_rows(card, tr),
           {"title": "board.col_alert", "severity": "board.col_severity", "status": "board.col_status",
            "opened": "board.col_opened", "rule": "board.col_rule", "evidence": "board.col_evidence"},
           tr.t("board.no_alerts"))

    if card["history"]:
        st.subheader(tr.t("board.history"))
        _table([{"date": tr.date(h["decided_on"]), "decision": h["decision"], "by": h["decided_by"]}
                for h in card["history"]],
               {"date": "board.col_date", "decision": "board.col_decision", "by": "board.col_by"}, "")


def _audit_export() -> None:
    service.audit_view(engine(), identity, patient_id=patient_id, what="export.board_case_html", now=now())


with st.container(key="board_actions"):
    st.divider()
    st.subheader(tr.t("board.print"))
    st.caption(tr.t("board.print_hint"))
    document = data.case_card_html(card, tr, printed_at=now(), printed_by=identity.display_name)
    safe_mrn = re.sub(r"[^A-Za-z0-9_-]", "_", str(patient["mrn"]))[:40] or "patient"
    st.download_button(tr.t("board.download_html"), document.encode("utf-8"), file_name=f"case-card-{safe_mrn}.html",
                       mime="text/html", key="board_download", on_click=_audit_export)
    file_download(tr.t("board.download_pdf"), lambda: disclosure.export_file(
        engine(), identity, action="export.board_case_pdf", patient_ids=[patient_id], file_format="pdf",
        build=lambda: case_card_pdf(card, tr, printed_at=now(), printed_by=identity.display_name), now=now()),
        file_name=f"case-card-{safe_mrn}.pdf", mime="application/pdf", key="board_download_pdf")

    st.subheader(tr.t("board.decision_title"))
    with st.form(f"board_decision_{patient_id}"):
        decision = st.text_area(tr.t("board.decision"), key=f"board_decision_text_{patient_id}", max_chars=4000,
                                help=tr.t("board.decision_help"))
        decided_on = st.date_input(tr.t("board.decided_on"), value=today, max_value=today,
                                   key=f"board_decided_on_{patient_id}", format="YYYY-MM-DD")
        submitted = st.form_submit_button(tr.t("board.record"), type="primary")
    if submitted:
        if not (decision or "").strip():
            st.error(tr.t("board.decision_required"))
        elif decided_on is None or decided_on > today:
            st.error(tr.t("board.date_future"))
        else:
            try:
                service.record_board_decision(engine(), identity, patient_id, decision=decision.strip(),
                                              decided_on=decided_on, reason=card["reasons"][:256] or None, now=now())
            except (ServiceError, PermissionDenied) as err:
                st.error(str(err))
            else:
                after_write()
                closed = sum(1 for a in card["alerts"] if a["rule_id"] in service.BOARD_ANSWERS)
                still = patient_id in set(data.board_queue(identity)["patient_id"])
                st.session_state["board_notice"] = {"name": data.md_escape(name), "mrn": data.md_escape(patient["mrn"]),
                                                    "closed": closed, "still_queued": still}
                st.session_state.pop("board_patient", None)
                st.session_state.pop(TABLE_KEY, None)
                st.rerun()
