"""Pure Plotly figure builders: DataFrames in, figures out, no Streamlit (unit-testable).

Every chart has titled axes with units and a legend; labels are passed in
already translated so the builders stay language-neutral.
"""

from dashboard.charts.alerts import alert_age_chart
from dashboard.charts.health import run_duration_chart
from dashboard.charts.timeline import patient_timeline_chart
from dashboard.charts.trends import (
    alert_target_chart,
    alert_time_chart,
    bma_chart,
    burden_chart,
    curve_chart,
    emergency_share_chart,
    imaging_chart,
    site_rate_chart,
    sre_rate_chart,
)

__all__ = [
    "alert_age_chart",
    "run_duration_chart",
    "patient_timeline_chart",
    # trends
    "alert_target_chart",
    "alert_time_chart",
    "bma_chart",
    "burden_chart",
    "curve_chart",
    "emergency_share_chart",
    "imaging_chart",
    "site_rate_chart",
    "sre_rate_chart",
]
