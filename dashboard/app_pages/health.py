"""System health (admin): recent recompute runs, missed and failed runs, data freshness, the lease."""

import pandas as pd
import streamlit as st

from dashboard.charts import run_duration_chart
from dashboard.components.page import page_guard
from dashboard.data import admin as data
from dashboard.data.common import latest_run, now
from surveillance.access import Action
from surveillance.exports import to_csv

identity, tr = page_guard(Action.VIEW_HEALTH)
st.title(tr.t("health.title"))
counts = data.health_counts(identity)
run = latest_run()
# The date and time of the last success as text: in a metric's large type it was cut ("27 Nov 2…").
st.markdown(f"**{tr.t('health.last_success')}:** {tr.datetime(run.finished_at) if run.finished_at else '—'}")
cols = st.columns(4)
age = (now() - run.finished_at).total_seconds() / 60 if run.finished_at else None
cols[0].metric(tr.t("health.age_minutes"), tr.number(age) if age is not None else "—")
cols[1].metric(tr.t("health.queued"), tr.number(counts["queued"]))
cols[2].metric(tr.t("health.missed"), tr.number(counts["missed"]))
cols[3].metric(tr.t("health.failed"), tr.number(counts["failed"]))
st.caption(tr.t("health.coverage", snapshots=tr.number(counts["snapshots"]), patients=tr.number(counts["patients"]),
                alerts=tr.number(counts["active_alerts"])))
for lease in counts["leases"]:
    if lease["owner"]:
        st.caption(tr.t("health.lease", owner=lease["owner"], until=tr.datetime(lease["until"])))
    else:
        st.caption(tr.t("health.lease_free"))

runs = data.runs(identity)
if runs.empty:
    st.info(tr.t("health.no_runs"))
    st.stop()
figure = run_duration_chart(runs, labels={
    "full": tr.t("health.kind_full"), "incremental": tr.t("health.kind_incremental"),
    "bad": tr.t("health.failed_or_missed"), "title": tr.t("health.chart_title"),
    "x": tr.t("health.x_started"), "y": tr.t("health.y_seconds"),
})
started = pd.to_datetime(runs["started_at"], utc=True)
figure.update_yaxes(rangemode="tozero")  # a duration is never negative
if started.max() - started.min() < pd.Timedelta(hours=1):  # one run (or a burst): an hour around it, not milliseconds
    middle = started.min() + (started.max() - started.min()) / 2
    figure.update_xaxes(range=[middle - pd.Timedelta(minutes=30), middle + pd.Timedelta(minutes=30)])
if tr.lang == "ja":
    figure.update_xaxes(tickformat="%-m月%-d日\n%H:%M")
st.plotly_chart(figure, width="stretch")


def _code(group: str, value) -> str:
    if value is None or value == "" or (isinstance(value, float) and pd.isna(value)):
        return "—"
    try:
        return tr.t(f"health.{group}_{value}")
    except KeyError:
        return str(value).replace("_", " ")


shown = pd.DataFrame({
    tr.t("health.col_id"): runs["id"],
    tr.t("health.col_kind"): runs["kind"].map(lambda v: _code("run_kind", v)),
    tr.t("health.col_trigger"): runs["trigger"].map(lambda v: _code("run_trigger", v)),
    tr.t("health.col_status"): runs["status"].map(lambda v: _code("run_status", v)),
    tr.t("health.col_started"): runs["started_at"].map(tr.datetime),
    tr.t("health.col_seconds"): runs["seconds"],
    tr.t("health.col_patients"): runs["patients"],
    tr.t("health.col_snapshots"): runs["snapshots_written"],
    tr.t("health.col_opened"): runs["alerts_opened"],
    tr.t("health.col_resolved"): runs["alerts_resolved"],
    tr.t("health.col_owner"): runs["owner"].fillna("—"),
    tr.t("health.col_message"): runs["message"].fillna("—"),
})
st.dataframe(shown, hide_index=True, width="stretch")
st.download_button(tr.t("app.export_csv"), to_csv(list(shown.columns), shown.itertuples(index=False)),
                   file_name="runs.csv", mime="text/csv")
