"""The shipped Streamlit configuration keeps the protections docs/security.md relies on (security notes test 35)."""

import tomllib
from pathlib import Path

CONFIG = tomllib.loads((Path(__file__).parents[1] / ".streamlit" / "config.toml").read_text(encoding="utf-8"))


def test_xsrf_protection_is_on():
    # Streamlit issues #5793, #8224: switching it off to "fix" uploads behind a proxy is the common mistake.
    assert CONFIG["server"]["enableXsrfProtection"] is True


def test_no_tracebacks_or_usage_statistics_leave_the_server():
    assert CONFIG["client"]["showErrorDetails"] == "none"
    assert CONFIG["browser"]["gatherUsageStats"] is False
    assert CONFIG["client"]["toolbarMode"] == "viewer"
