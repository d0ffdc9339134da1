"""The files the report writes into a run directory (beside those of :mod:`federation.layout`).

Owned here, the lowest package that writes them; the sections name their plots with these
constants and :func:`simulations.report.render_report` removes a stale one by this list.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACCURACY_PLOT",
    "CONVERGENCE_PLOT",
    "EPSILON_PER_CLIENT_PLOT",
    "EPSILON_PER_PHASE_PLOT",
    "EPSILON_PER_ROUND_PLOT",
    "HTML_FILE",
    "MARKDOWN_FILE",
    "PLOTS_DIR",
    "PLOT_FILES",
    "SPARSITY_PLOT",
]

MARKDOWN_FILE: Final = "report.md"
HTML_FILE: Final = "report.html"
PLOTS_DIR: Final = "plots"

EPSILON_PER_ROUND_PLOT: Final = "epsilon_per_round.png"
EPSILON_PER_CLIENT_PLOT: Final = "epsilon_per_client.png"
ACCURACY_PLOT: Final = "accuracy.png"
CONVERGENCE_PLOT: Final = "convergence.png"
SPARSITY_PLOT: Final = "sparsity_per_layer.png"
EPSILON_PER_PHASE_PLOT: Final = "epsilon_per_phase.png"
PLOT_FILES: Final = (EPSILON_PER_ROUND_PLOT, EPSILON_PER_CLIENT_PLOT, ACCURACY_PLOT, CONVERGENCE_PLOT, SPARSITY_PLOT,
                     EPSILON_PER_PHASE_PLOT)
"""Every plot a run's report may write under ``plots/``."""
