"""Typed errors of the privacy package.

Every error derives from :class:`PrivacyError`, itself a ``ValueError`` so that callers that
only know "bad value" still catch it. Messages follow the house phrasing
``"<name> must be <constraint>. Found <value>."``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BudgetExceededError",
    "LedgerError",
    "PrivacyError",
    "TornLedgerError",
]


class PrivacyError(ValueError):
    """A privacy parameter, input or state is invalid."""


class BudgetExceededError(PrivacyError):
    """Charging the requested events would take a privacy unit over its budget.

    Parameters
    ----------
    unit
        Privacy unit whose budget would be exceeded (``"record"`` or ``"client"``).
    client_id
        Client whose record-level budget would be exceeded, ``None`` for the client unit.
    quantity
        ``"epsilon"`` or ``"delta"``.
    spent
        Amount already charged to that unit (and client).
    requested
        Amount the refused events would add.
    budget
        The budget that would be exceeded.
    """

    def __init__(
        self,
        *,
        unit: str,
        client_id: str | None,
        quantity: str,
        spent: float,
        requested: float,
        budget: float,
    ) -> None:
        self.unit = unit
        self.client_id = client_id
        self.quantity = quantity
        self.spent = spent
        self.requested = requested
        self.budget = budget
        who = f"client {client_id!r}" if client_id is not None else "the server (client unit)"
        self.message = (
            f"{unit}-level {quantity} budget of {who} would be exceeded: spent {spent:.6g}"
            f" + requested {requested:.6g} > budget {budget:.6g}."
        )
        super().__init__(self.message)


class LedgerError(PrivacyError):
    """The privacy ledger is unreadable, inconsistent or was modified concurrently."""


class TornLedgerError(LedgerError):
    """The ledger ends with an incomplete write (the process was killed while appending).

    Parameters
    ----------
    path
        The ledger file.
    line_number
        One-based number of the first line of the incomplete batch.
    message
        Human-readable description including how to repair.
    """

    def __init__(self, *, path: Path, line_number: int, message: str) -> None:
        self.path = path
        self.line_number = line_number
        super().__init__(message)
