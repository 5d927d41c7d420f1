"""Trends (department leads): SRE rates and incidence, BMA, imaging and alert response — aggregates only.

No patient identifier reaches this page: every read is a GROUP BY and every
count of 1–4 arrives already hidden (``surveillance.trends``).  One view is
computed at a time so a lead waits only for the question asked.
"""

import pandas as pd
import streamlit as st

from dashboard import charts
from dashboard.components.page import page_guard
from dashboard.data import trends as data
from dashboard.data.common import engine, now
from surveillance import cohort as cohort_extract
from surveillance import disclosure
from surveillance import trends as calc
from surveillance.access import Action
from surveillance.exports import to_csv
from surveillance.scoring.vocab import PrimarySite

identity, tr = page_guard(Action.VIEW_TRENDS)
st.title(tr.t("trends.title"))
st.caption(tr.t("trends.subtitle"))

VIEWS = ("rates", "incidence", "bma", "imaging", "inertia")
SITES = [s.value for s in PrimarySite] + [data.NO_SITE]


def site_label(code: str) -> str:
    return tr.t(f"trends.site.{code}") if code != calc.ALL else tr.t("trends.all_sites")


def group_label(group: str) -> str:
    if group == calc.ALL:
        return tr.t("trends.group_all")
    return tr.t("trends.tier_unknown") if group == "unknown" else tr.t(f"tier.{group}")


def holder_label(holder: str) -> str:
    return tr.t(f"trends.holder_{holder}") if holder in ("unassigned", "other_staff", calc.ALL) else holder


def percent(value) -> str:
    return "" if pd.isna(value) else f"{100 * value:.1f}%"


def number(value, digits: int = 2) -> str:
    return "" if pd.isna(value) else f"{value:,.{digits}f}"


def table_view(key: str, frame: pd.DataFrame) -> None:
    """The plotted aggregates as a table and a CSV file (already suppressed, all text)."""
    with st.expander(tr.t("trends.table", what=tr.t(f"trends.table_{key}")), expanded=False):
        st.dataframe(frame, hide_index=True, width="stretch", key=f"trends_table_{key}")
        st.caption(tr.t("trends.suppression_note", hidden=calc.SUPPRESSED, complementary=calc.COMPLEMENTARY))
    st.download_button(tr.t("app.export_csv"), to_csv(list(frame.columns), frame.itertuples(index=False)),
                       file_name=f"trends_{key}.csv", mime="text/csv", key=f"trends_csv_{key}")


def counts_text(table: calc.CountTable, columns) -> pd.DataFrame:
    shown = calc.show_counts(table.counts, table.suppression)
    return shown[list(columns)].astype(str)


filters = st.columns([2, 2, 1.5, 2])
site = filters[0].selectbox(tr.t("trends.site_filter"), [None, *SITES], key="trends_site",
                            format_func=lambda v: tr.t("trends.any") if v is None else site_label(v))
department = filters[1].selectbox(tr.t("trends.department_filter"), [None, *data.departments(identity)],
                                  key="trends_department",
                                  format_func=lambda v: tr.t("trends.any") if v is None else v)
months = filters[2].selectbox(tr.t("trends.period"), list(data.PERIODS), index=1, key="trends_period",
                              format_func=lambda m: tr.t("trends.period_months", n=m))
definition = filters[3].radio(tr.t("trends.definition"), ["core", "extended"], horizontal=True,
                              key="trends_definition", format_func=lambda v: tr.t(f"trends.definition_{v}"))
view = st.radio(tr.t("trends.view"), list(VIEWS), horizontal=True, key="trends_view",
                format_func=lambda v: tr.t(f"trends.view_{v}"))
moment = now()
today = moment.date()
cohort = tr.t("trends.cohort", site=tr.t("trends.any") if site is None else site_label(site),
              department=tr.t("trends.any") if department is None else department,
              months=months, definition=tr.t(f"trends.definition_{definition}"))
st.caption(cohort)
x_month = tr.t("trends.x_month")
sre_type = {t: tr.t(f"trends.sre.{t}") for t in data.sre_types("extended")}
severity = {s: tr.t(f"severity.{s}") for s in data.SEVERITIES}

if view == "rates":
    trend = data.sre_trend(identity, site=site, department=department, months=months, definition=definition,
                           today=today)
    source = tr.t("trends.source_aggregate") if trend.source == "aggregate" else tr.t("trends.source_facts")
    definition_text = tr.t(f"trends.definition_{definition}_text")
    derived = trend.monthly.derived.drop(index=calc.PERIOD)
    st.subheader(tr.t("trends.rates_heading"))
    st.plotly_chart(charts.sre_rate_chart(derived, types=trend.types, labels={
        "title": tr.t("trends.rate_title"), "x": x_month, "y": tr.t("trends.rate_y"), "type": sre_type,
    }), key="trends_rate_chart")
    st.caption(tr.t("trends.rate_caption", definition=definition_text, source=source))
    st.plotly_chart(charts.emergency_share_chart(derived, labels={
        "title": tr.t("trends.emergency_title"), "x": x_month, "y": tr.t("trends.percent_y"),
        "series": tr.t("trends.emergency_series"),
    }), key="trends_emergency_chart")
    st.caption(tr.t("trends.emergency_caption", definition=definition_text, source=source))
    by_site = trend.by_site.derived
    overall = by_site.loc[calc.ALL, "rate"] if calc.ALL in by_site.index else None
    st.plotly_chart(charts.site_rate_chart(by_site.drop(index=calc.ALL, errors="ignore"), overall=overall, labels={
        "title": tr.t("trends.site_title", months=months), "x": tr.t("trends.rate_y"), "y": tr.t("trends.site_y"),
        "series": tr.t("trends.site_series"), "overall": tr.t("trends.site_overall"), "site": site_label,
    }), key="trends_site_chart")
    st.caption(tr.t("trends.site_caption", definition=definition_text, source=source))

    columns = [*trend.types, "total", "emergency", "non_emergency"]
    table = counts_text(trend.monthly, columns)
    table.columns = [sre_type.get(c) or tr.t(f"trends.col_{c}") for c in columns]
    all_rows = trend.monthly.derived
    table.insert(0, tr.t("trends.col_month"),
                 [tr.t("trends.period_total") if m == calc.PERIOD else m for m in trend.monthly.counts.index])
    table[tr.t("trends.col_patient_years")] = (all_rows["patient_days"] / 365.25).map(lambda v: number(v, 1))
    for t in [*trend.types, "total"]:
        label = tr.t("trends.col_rate_total") if t == "total" else tr.t("trends.col_rate_of", type=sre_type[t])
        table[label] = all_rows[f"rate_{t}"].map(number)
    table[tr.t("trends.col_emergency_share")] = all_rows["emergency_share"].map(percent)
    table_view("rates", table.reset_index(drop=True))

    site_table = counts_text(trend.by_site, ["events"])
    site_table.columns = [tr.t("trends.col_total")]
    site_table.insert(0, tr.t("trends.col_site"), [site_label(s) for s in trend.by_site.counts.index])
    site_table[tr.t("trends.col_patient_years")] = (by_site["patient_days"] / 365.25).map(lambda v: number(v, 1))
    site_table[tr.t("trends.col_rate_total")] = by_site["rate"].map(number)
    site_table[tr.t("trends.col_lower")] = by_site["lower"].map(number)
    site_table[tr.t("trends.col_upper")] = by_site["upper"].map(number)
    table_view("rates_by_site", site_table.reset_index(drop=True))

elif view == "incidence":
    result = data.incidence(identity, site=site, department=department, months=months, definition=definition,
                            today=today)
    curves = result.curves
    groups = [g for g in [calc.ALL, *data.TIERS] if g in set(curves.incidence.get("group", []))]
    labels = {"x": tr.t("trends.x_follow_up"), "month_unit": tr.t("trends.month_unit"), "group": group_label,
              "band": tr.t("trends.band")}
    st.subheader(tr.t("trends.incidence_heading"))
    if not groups:
        st.info(tr.t("trends.too_few"))
    else:
        st.plotly_chart(charts.curve_chart(curves.incidence, groups=groups, full_scale=False, labels=labels | {
            "title": tr.t("trends.incidence_title"), "y": tr.t("trends.incidence_y"),
        }), key="trends_incidence_chart")
        st.caption(tr.t("trends.incidence_caption", definition=tr.t(f"trends.definition_{definition}_text")))
        st.plotly_chart(charts.curve_chart(curves.sre_free, groups=groups, labels=labels | {
            "title": tr.t("trends.sre_free_title"), "y": tr.t("trends.sre_free_y"),
        }), key="trends_sre_free_chart")
        st.caption(tr.t("trends.sre_free_caption"))
    notes = [tr.t("trends.tier_caveat")]
    if curves.withheld:
        notes.append(tr.t("trends.withheld", groups=", ".join(group_label(g) for g in curves.withheld)))
    if result.excluded:
        excluded = calc.SUPPRESSED if result.excluded < calc.SMALL_CELL else f"{result.excluded:,}"
        notes.append(tr.t("trends.excluded", n=excluded))
    st.caption(" ".join(notes))

    at_risk = calc.show_counts(curves.at_risk, curves.at_risk_suppression).astype(str)
    at_risk.columns = [tr.t("trends.col_at_month", month=m) for m in curves.at_risk.columns]
    at_risk.insert(0, tr.t("trends.col_group"), [group_label(g) for g in curves.at_risk.index])
    st.markdown(f"**{tr.t('trends.at_risk_heading')}**")
    st.dataframe(at_risk.reset_index(drop=True), hide_index=True, width="stretch", key="trends_at_risk")
    points = []
    for kind, frame in (("incidence", curves.incidence), ("sre_free", curves.sre_free)):
        for row in frame.itertuples(index=False):
            points.append({tr.t("trends.col_curve"): tr.t(f"trends.curve_{kind}"),
                           tr.t("trends.col_group"): group_label(row.group),
                           tr.t("trends.col_follow_up"): f"{row.time:g}",
                           tr.t("trends.col_estimate"): percent(row.estimate),
                           tr.t("trends.col_lower"): percent(row.lower), tr.t("trends.col_upper"): percent(row.upper)})
    table_view("incidence", pd.DataFrame(points, columns=[
        tr.t("trends.col_curve"), tr.t("trends.col_group"), tr.t("trends.col_follow_up"), tr.t("trends.col_estimate"),
        tr.t("trends.col_lower"), tr.t("trends.col_upper")]))

elif view == "bma":
    table = data.bma(identity, site=site, department=department, months=months, today=today)
    st.subheader(tr.t("trends.bma_heading"))
    st.plotly_chart(charts.bma_chart(table.derived, labels={
        "title": tr.t("trends.bma_title"), "x": x_month, "y": tr.t("trends.percent_y"),
        "coverage": tr.t("trends.bma_coverage"), "on_time": tr.t("trends.bma_on_time"),
    }), key="trends_bma_chart")
    allowed = data.bma_allowed_days()
    st.caption(tr.t("trends.bma_caption", days=calc.BMA_COVER_DAYS, grace=calc.BMA_GRACE_DAYS,
                    denosumab=allowed["denosumab"], q4w=allowed["zoledronic_q4w"], q12w=allowed["zoledronic_q12w"]))
    columns = ["eligible", "covered", "not_covered", "evaluated", "on_time", "late"]
    shown = counts_text(table, columns)
    shown.columns = [tr.t(f"trends.col_{c}") for c in columns]
    shown.insert(0, tr.t("trends.col_month"), list(table.counts.index))
    shown.insert(4, tr.t("trends.col_coverage"), table.derived["coverage"].map(percent).to_list())
    shown[tr.t("trends.col_on_time_share")] = table.derived["on_time_share"].map(percent).to_list()
    table_view("bma", shown.reset_index(drop=True))

elif view == "imaging":
    table = data.imaging(identity, site=site, department=department, today=today)
    buckets = [b[0] for b in calc.OVERDUE_BUCKETS]
    st.subheader(tr.t("trends.imaging_heading"))
    share = table.derived["not_overdue_share"].get(calc.ALL)
    st.metric(tr.t("trends.imaging_metric"), percent(share) if share is not None and not pd.isna(share)
              else calc.SUPPRESSED if calc.ALL in table.counts.index else "—")
    if len(table.counts) > 1:
        st.plotly_chart(charts.imaging_chart(table.counts.mask(table.suppression.hidden), buckets=buckets, labels={
            "title": tr.t("trends.imaging_title"), "x": tr.t("trends.patients_x"), "y": tr.t("trends.tier_y"),
            "tier": group_label, "bucket": {b: tr.t(f"trends.bucket_{b}") for b in buckets},
        }), key="trends_imaging_chart")
    else:
        st.info(tr.t("trends.too_few"))
    st.caption(tr.t("trends.imaging_caption"))
    shown = counts_text(table, [*buckets, "total"])
    shown.columns = [tr.t(f"trends.bucket_{b}") for b in buckets] + [tr.t("trends.col_total")]
    shown.insert(0, tr.t("trends.col_tier"), [group_label(t) for t in table.counts.index])
    shown[tr.t("trends.col_not_overdue")] = table.derived["not_overdue_share"].map(percent).to_list()
    table_view("imaging", shown.reset_index(drop=True))

else:
    response = data.alert_response(identity, site=site, department=department, months=months, now=moment)
    targets = ", ".join(tr.t("trends.target_hours", severity=severity[s], n=h) if h < 48
                        else tr.t("trends.target_days", severity=severity[s], n=h // 24)
                        for s, h in calc.ACTION_TARGET_HOURS.items())
    st.subheader(tr.t("trends.inertia_heading"))
    if not response.counts[["judged", "responded"]].to_numpy().any():
        st.info(tr.t("trends.no_worked_alerts"))
    st.plotly_chart(charts.alert_target_chart(response.derived, labels={
        "title": tr.t("trends.target_title"), "x": tr.t("trends.x_month_opened"), "y": tr.t("trends.percent_y"),
        "severity": severity,
    }), key="trends_target_chart")
    st.caption(tr.t("trends.target_caption", targets=targets))
    st.plotly_chart(charts.alert_time_chart(response.derived, labels={
        "title": tr.t("trends.time_title"), "x": tr.t("trends.x_month_opened"), "y": tr.t("trends.hours_y"),
        "severity": severity, "response": tr.t("trends.response"), "done": tr.t("trends.done"),
    }), key="trends_time_chart")
    st.caption(tr.t("trends.time_caption"))
    columns = ["opened", "responded", "done", "judged", "acted", "not_acted"]
    shown = counts_text(response, columns)
    shown.columns = [tr.t(f"trends.col_{c}") for c in columns]
    index = response.counts.index
    shown.insert(0, tr.t("trends.col_month"), index.get_level_values("month"))
    shown.insert(1, tr.t("trends.col_severity"), [severity[s] for s in index.get_level_values("severity")])
    shown[tr.t("trends.col_acted_share")] = response.derived["acted_share"].map(percent).to_list()
    shown[tr.t("trends.col_median_response")] = response.derived["median_response_hours"].map(
        lambda v: number(v, 0)).to_list()
    shown[tr.t("trends.col_median_done")] = response.derived["median_done_hours"].map(lambda v: number(v, 0)).to_list()
    table_view("inertia", shown.reset_index(drop=True))

    burden = data.alert_burden(identity, site=site, department=department)
    severities = list(data.SEVERITIES)
    st.plotly_chart(charts.burden_chart(burden.counts.mask(burden.suppression.hidden), severities=severities, labels={
        "title": tr.t("trends.burden_title"), "x": tr.t("trends.alerts_x"), "y": tr.t("trends.holder_y"),
        "severity": severity, "holder": holder_label,
    }), key="trends_burden_chart")
    st.caption(tr.t("trends.burden_caption"))
    shown = counts_text(burden, [*severities, "total"])
    shown.columns = [severity[s] for s in severities] + [tr.t("trends.col_total")]
    shown.insert(0, tr.t("trends.col_holder"), [holder_label(h) for h in burden.counts.index])
    table_view("burden", shown.reset_index(drop=True))


st.divider()
st.subheader(tr.t("trends.cohort_title"))
st.caption(tr.t("trends.cohort_hint", hidden=calc.SUPPRESSED, complementary=calc.COMPLEMENTARY))


def _cohort_counts(file_format: str) -> bytes:
    shown = cohort_extract.cohort_counts_shown(
        cohort_extract.cohort_counts(engine(), identity, primary_site=site, department=department))
    table = shown.reset_index()
    return disclosure.export_aggregate(engine(), identity, columns=list(table.columns),
                                       rows=list(table.itertuples(index=False)), file_format=file_format, now=now(),
                                       filters={"primary_site": site, "department": department})


for column, file_format in zip(st.columns(2), disclosure.TABLE_FORMATS, strict=True):
    column.download_button(tr.t(f"app.export_{file_format}"), lambda fmt=file_format: _cohort_counts(fmt),
                           file_name=f"cohort_counts.{file_format}", mime=disclosure.TABLE_FORMATS[file_format],
                           key=f"trends_cohort_{file_format}", on_click="ignore")
