"""The ε/δ figures a run quotes, from its ledger alone (basic composition, DESIGN.md 5.4).

The figures are computed by :meth:`privacy.Accountant.totals` (:mod:`privacy.totals` states the
rules), the same method that wrote ``summary.json``'s ``"epsilon"`` section; this module only
opens the ledger read-only.
"""

from __future__ import annotations

import os
from pathlib import Path

from federation.layout import LEDGER_FILE
from privacy import PrivacyTotals
from simulations.report.ledger_reader import ledger_accountant, open_ledger

__all__ = ["privacy_totals"]


def privacy_totals(run_dir: str | os.PathLike[str]) -> PrivacyTotals:
    """The ε/δ figures of a run, from ``run_dir/ledger.jsonl`` only (never modified).

    Parameters
    ----------
    run_dir
        The run directory.

    Returns
    -------
    PrivacyTotals
        Record unit: per-client Σε, Σδ (basic composition), their max and mean over the
        clients charged; client unit: Σε, Σδ; per-round cumulative ε of both units.

    Raises
    ------
    ReportError
        If the ledger is missing, torn or corrupted (one line naming the file and the fix).
    """
    return ledger_accountant(open_ledger(Path(run_dir) / LEDGER_FILE)).totals()
