"""The Streamlit dashboard: thin pages over ``dashboard.data`` (reads) and
``surveillance.service`` (clinical writes).  The top layer.
"""
