"""Experiment runners, the ``dppt`` command line, reports, plots and benchmarks."""
