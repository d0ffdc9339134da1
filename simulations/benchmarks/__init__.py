"""Benchmarks: scripts that print and record their figures under ``results/`` (never timed unit tests)."""
