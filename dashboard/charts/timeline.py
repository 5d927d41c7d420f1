"""One patient's timeline: ECOG over time above, dated events in lanes below, on one date axis."""

from __future__ import annotations

from datetime import date

import pandas as pd
import plotly.graph_objects as go

from dashboard.charts.alerts import SEVERITY_COLOURS

#: Event lanes of the lower panel, top to bottom.
LANES = ("imaging", "bma", "sre", "treatment", "alert")
_MARKERS = {
    "imaging": dict(symbol="square", size=10, color="#455a64"),
    "bma": dict(symbol="diamond", size=10, color="#2e7d32"),
    "sre": dict(symbol="x", size=12, color="#6a1b9a"),
}


def _hover(unit: str = "") -> str:
    return "%{x|%Y-%m-%d}: %{customdata}" + unit + "<extra></extra>"


def patient_timeline_chart(events: pd.DataFrame, *, labels: dict, today: date) -> go.Figure:
    """ECOG (line with markers, 0–4) and imaging, BMA doses, SREs, treatments (spans) and alerts (by severity).

    ``events`` has the columns ``kind`` (ecog, imaging, bma, sre, treatment,
    alert), ``start`` and ``end`` (dates; ``end`` only for treatments, empty
    while ongoing — drawn up to ``today``), ``value`` (the ECOG grade),
    ``label`` (hover text) and ``severity`` (alerts).  ``labels`` holds the
    translated texts: ``title``, ``x``, ``ecog_axis``, ``events_axis``, one per
    kind, and ``severity`` (a dict).

    Two stacked panels share one date axis (``xaxis2`` is matched to ``xaxis``).
    The figure is assembled as one plain specification and validated once:
    ``make_subplots`` and per-property updates cost ten times more.
    """
    lane_names = [labels[kind] for kind in LANES]
    empty = events.iloc[0:0]
    by_kind = {kind: part for kind, part in events.groupby("kind", sort=False)}
    upper = dict(xaxis="x", yaxis="y")
    lower = dict(xaxis="x2", yaxis="y2")
    traces: list[dict] = []

    ecog = by_kind.get("ecog", empty).sort_values("start")
    if not ecog.empty:
        traces.append(dict(
            type="scatter", x=list(ecog["start"]), y=list(ecog["value"]), mode="lines+markers", name=labels["ecog"],
            line=dict(color="#1565c0", shape="hv"), marker=dict(size=8), customdata=list(ecog["label"]),
            hovertemplate=_hover(), **upper))

    for kind, marker in _MARKERS.items():
        part = by_kind.get(kind, empty)
        if part.empty:
            continue
        traces.append(dict(
            type="scatter", x=list(part["start"]), y=[labels[kind]] * len(part), mode="markers", name=labels[kind],
            marker=marker, customdata=list(part["label"]), hovertemplate=_hover(), **lower))

    spans = by_kind.get("treatment", empty)
    if not spans.empty:
        xs: list = []
        ys: list = []
        texts: list = []
        for row in spans.itertuples():
            end = row.end if isinstance(row.end, date) else today
            xs += [row.start, max(end, row.start), None]
            ys += [labels["treatment"], labels["treatment"], None]
            texts += [row.label, row.label, None]
        traces.append(dict(
            type="scatter", x=xs, y=ys, mode="lines+markers", name=labels["treatment"], connectgaps=False,
            line=dict(color="#ef6c00", width=10), marker=dict(size=6, color="#ef6c00"), customdata=texts,
            hovertemplate=_hover(), **lower))

    alerts = by_kind.get("alert", empty)
    by_severity = {severity: part for severity, part in alerts.groupby("severity", sort=False)}
    for severity, colour in SEVERITY_COLOURS.items():
        part = by_severity.get(severity, empty)
        if part.empty:
            continue
        traces.append(dict(
            type="scatter", x=list(part["start"]), y=[labels["alert"]] * len(part), mode="markers",
            name=f"{labels['alert']}: {labels['severity'][severity]}",
            marker=dict(symbol="triangle-up", size=12, color=colour, line=dict(width=1, color="#212121")),
            customdata=list(part["label"]), hovertemplate=_hover(), **lower))

    layout = dict(
        title=dict(text=labels["title"]),
        xaxis=dict(type="date", anchor="y", domain=[0.0, 1.0], matches="x2", showticklabels=False),
        yaxis=dict(title=dict(text=labels["ecog_axis"]), range=[-0.3, 4.3], dtick=1, anchor="x",
                   domain=[0.58, 1.0]),
        xaxis2=dict(type="date", anchor="y2", domain=[0.0, 1.0], title=dict(text=labels["x"])),
        yaxis2=dict(title=dict(text=labels["events_axis"]), type="category", categoryorder="array",
                    categoryarray=list(reversed(lane_names)), range=[-0.5, len(lane_names) - 0.5], anchor="x2",
                    domain=[0.0, 0.52]),
        showlegend=True,
        legend=dict(orientation="h", yanchor="top", y=-0.18, x=0, title=dict(text=labels.get("legend", ""))),
        height=480, margin=dict(l=60, r=10, t=50, b=40), hovermode="closest",
    )
    return go.Figure(dict(data=traces, layout=layout))
