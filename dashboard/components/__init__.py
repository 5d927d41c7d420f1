"""Render helpers that call ``st.*`` (tables, score panels, alert actions)."""
