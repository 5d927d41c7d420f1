"""Scheduler health chart."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def run_duration_chart(runs: pd.DataFrame, *, labels: dict) -> go.Figure:
    """Duration of each successful run over time, and failed or missed runs as crosses on the axis."""
    figure = go.Figure()
    for kind, colour in (("full", "#1565c0"), ("incremental", "#2e7d32")):
        part = runs[(runs["kind"] == kind) & (runs["status"] == "success")]
        figure.add_scatter(x=pd.to_datetime(part["started_at"], utc=True), y=part["seconds"], mode="markers",
                           name=labels[kind], marker_color=colour)
    bad = runs[runs["status"].isin(["failed", "missed"])]
    figure.add_scatter(x=pd.to_datetime(bad["started_at"], utc=True), y=[0] * len(bad), mode="markers",
                       marker_symbol="x", marker_color="#c62828", name=labels["bad"])
    figure.update_layout(title=labels["title"], xaxis_title=labels["x"], yaxis_title=labels["y"], height=320,
                         margin=dict(l=40, r=10, t=50, b=40))
    return figure
