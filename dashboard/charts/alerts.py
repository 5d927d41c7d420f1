"""Alert charts."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

SEVERITY_COLOURS = {"critical": "#c62828", "high": "#ef6c00", "routine": "#1565c0", "info": "#757575"}
AGE_BINS = [0, 1, 3, 7, 14, 30, 90, float("inf")]
AGE_LABELS = ["<1", "1–3", "3–7", "7–14", "14–30", "30–90", "≥90"]


def alert_age_chart(frame: pd.DataFrame, *, labels: dict) -> go.Figure:
    """Stacked bars: open alerts per age bucket (days), one colour per severity."""
    buckets = pd.cut(frame["age_days"], bins=AGE_BINS, labels=AGE_LABELS, right=False)
    counts = frame.assign(bucket=buckets).groupby(["bucket", "severity"], observed=False).size().unstack(fill_value=0)
    figure = go.Figure()
    for severity, colour in SEVERITY_COLOURS.items():
        if severity in counts.columns:
            figure.add_bar(x=list(counts.index.astype(str)), y=counts[severity].tolist(), marker_color=colour,
                           name=labels["severity"][severity])
    figure.update_layout(
        barmode="stack", title=labels["title"], xaxis_title=labels["x"], yaxis_title=labels["y"],
        legend_title_text="", height=320, margin=dict(l=40, r=10, t=50, b=40),
    )
    return figure
