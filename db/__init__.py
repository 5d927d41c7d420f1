"""The patient store: models, engine, queries and migrations.

The bottom layer: it imports nothing from the rest of the project.
"""
