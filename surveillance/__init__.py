"""Cancer Locomo surveillance: the engine between the patient store and the dashboard.

``scoring/``, ``rules/`` and ``locomo.py`` are the pure core (no database, no UI,
no clock); the rest of the package reads and writes through ``db``.
"""
