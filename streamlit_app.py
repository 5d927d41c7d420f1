"""Cancer Locomo surveillance — the Streamlit entry point (``streamlit run streamlit_app.py``)."""

from dashboard.app import run

run()
