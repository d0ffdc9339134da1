"""Open a run's privacy ledger for reading only, with one-line errors.

``privacy.Ledger(path)`` creates the file when it is absent, so the report checks that the file
exists first: on an existing file the constructor only reads and checks it (no lock, no write).
The report never calls :meth:`privacy.Ledger.append` or :meth:`privacy.Ledger.repair`, and opens
the release journal read-only.
"""

from __future__ import annotations

import math
from pathlib import Path

from federation.config import Config
from federation.layout import LEDGER_FILE, REFERENCE_DIR
from privacy import (
    ENFORCE_RDP, GAUSSIAN_TOPK, Accountant, Ledger, LedgerError, PrivacyTotals, ReleaseAsk, ReleaseJournal, TornLedgerError,
)
from simulations.report.errors import ReportError

__all__ = ["interrupted_rounds", "ledger_accountant", "open_ledger", "reference_totals", "training_totals"]


def open_ledger(path: Path) -> Ledger:
    """The ledger at ``path``, read and checked; the file is never created or modified.

    Raises
    ------
    ReportError
        If the file is missing, torn (a run killed while appending; the message gives the repair
        command) or corrupted.
    """
    if not path.is_file():
        what = "is a folder, not a file" if path.exists() else "not found"
        raise ReportError(
            f"{path} {what}: the report needs the run's privacy ledger; pass the run directory of a"
            f" search (it holds {LEDGER_FILE} from the first charged round on)."
        )
    try:
        return Ledger(path)
    except TornLedgerError as err:
        raise ReportError(
            f"{path} ends with an incomplete write at line {err.line_number} (the run was killed while"
            f" appending): repair it with python -c 'from privacy import Ledger; Ledger.repair(\"{path}\")'"
            " (it moves the torn bytes to a side file and keeps every complete batch), then render again."
        ) from err
    except LedgerError as err:
        raise ReportError(
            f"{path} is not a valid privacy ledger ({err}); restore it from a backup, the report cannot"
            " state a guarantee from it."
        ) from err


def ledger_accountant(ledger: Ledger, config: Config | None = None) -> Accountant:
    """An accountant that only counts ``ledger`` (no budgets: the report charges nothing).

    With the run's ``config``, it composes as the run enforced its budget: under
    ``budget-accountant=rdp`` (Gaussian votes) its totals carry the RDP figure at ``δ = delta``.
    """
    if config is not None and config.budget_accountant == ENFORCE_RDP and config.mechanism == GAUSSIAN_TOPK:
        return Accountant(ledger, record_epsilon_budget=math.inf, client_epsilon_budget=math.inf,
                          delta_budget=config.delta, enforce=ENFORCE_RDP)
    return Accountant(ledger, record_epsilon_budget=math.inf, client_epsilon_budget=math.inf)


def training_totals(ledger: Ledger | None, config: Config) -> PrivacyTotals | None:
    """The totals of ``ledger-train.jsonl`` as the run composed them: RDP at ``train-delta``
    (:func:`federation.pipeline.training_charge`), basic beside; ``None`` without that ledger."""
    if ledger is None:
        return None
    return Accountant(ledger, record_epsilon_budget=math.inf, client_epsilon_budget=math.inf,
                      delta_budget=config.train_delta, enforce=ENFORCE_RDP).totals()


def reference_totals(run_dir: Path) -> PrivacyTotals | None:
    """The totals of the non-private reference search's ledger (``reference/ledger.jsonl``); ``None`` if it has none."""
    path = run_dir / REFERENCE_DIR / LEDGER_FILE
    if not path.exists():
        return None
    return Accountant(open_ledger(path), record_epsilon_budget=math.inf, client_epsilon_budget=math.inf).totals()


def interrupted_rounds(path: Path) -> tuple[ReleaseAsk, ...]:
    """Round attempts the release journal at ``path`` says were charged in full after an interruption.

    Read-only (a torn last line is ignored, not moved). A run without a journal has none.

    Raises
    ------
    ReportError
        If the journal is corrupted.
    """
    if not path.is_file():
        return ()
    try:
        return tuple(ReleaseJournal(path, read_only=True).settled())
    except LedgerError as err:
        raise ReportError(f"{path} is not a valid release journal ({err}); restore it from a backup.") from err
