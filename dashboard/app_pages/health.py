"""System health (admin): recent recompute runs, missed and failed runs, data freshness, the lease."""

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
cols = st.columns(5)
cols[0].metric(tr.t("health.last_success"), tr.datetime(run.finished_at) if run.finished_at else "—")
age = (now() - run.finished_at).total_seconds() / 60 if run.finished_at else None
cols[1].metric(tr.t("health.age_minutes"), tr.number(age) if age is not None else "—")
cols[2].metric(tr.t("health.queued"), tr.number(counts["queued"]))
cols[3].metric(tr.t("health.missed"), tr.number(counts["missed"]))
cols[4].metric(tr.t("health.failed"), tr.number(counts["failed"]))
st.caption(tr.t("health.coverage", snapshots=tr.number(counts["snapshots"]), patients=tr.number(counts["patients"]),
                alerts=tr.number(counts["active_alerts"])))
for lease in counts["leases"]:
    st.caption(tr.t("health.lease", owner=lease["owner"] or "—", until=str(lease["until"] or "—")))

runs = data.runs(identity)
if runs.empty:
    st.info(tr.t("health.no_runs"))
    st.stop()
figure = run_duration_chart(runs, labels={
    "full": tr.t("health.kind_full"), "incremental": tr.t("health.kind_incremental"),
    "bad": tr.t("health.failed_or_missed"), "title": tr.t("health.chart_title"),
    "x": tr.t("health.x_started"), "y": tr.t("health.y_seconds"),
})
st.plotly_chart(figure, width="stretch")
shown = runs[["id", "kind", "trigger", "status", "started_at", "seconds", "patients", "snapshots_written",
              "alerts_opened", "alerts_resolved", "owner", "message"]]
st.dataframe(shown, hide_index=True, width="stretch")
st.download_button(tr.t("app.export_csv"), to_csv(list(shown.columns), shown.itertuples(index=False)),
                   file_name="runs.csv", mime="text/csv")
