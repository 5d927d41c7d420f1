"""Reproducible benchmarks: they generate data, measure and print figures (never tests)."""
