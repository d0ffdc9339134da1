"""The privacy-budget report of a dppt run, and the summary of an ε sweep.

Read a run directory alone (no Flower, network or dataset) and write ``report.md``,
``report.html`` (self-contained) and ``plots/*.png``; every ε and δ printed comes from the
run's ledger by basic composition (DESIGN.md 5.4), with RDP/PLD figures beside it.

- :func:`render_report`: the report of one run directory.
- :func:`render_sweep`: table and plot over the runs of an ε sweep.
- :func:`privacy_totals`: the ledger's ε/δ totals (:meth:`privacy.Accountant.totals`), torch-free.
"""

from privacy import PrivacyTotals, RoundTotal
from simulations.report.errors import ReportError
from simulations.report.render import ReportPaths, render_report
from simulations.report.sweep import SweepPaths, SweepRow, render_sweep
from simulations.report.totals import privacy_totals

__all__ = [
    "PrivacyTotals",
    "ReportError",
    "ReportPaths",
    "RoundTotal",
    "SweepPaths",
    "SweepRow",
    "privacy_totals",
    "render_report",
    "render_sweep",
]
