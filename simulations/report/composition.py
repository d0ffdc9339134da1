"""Tighter composition figures (RDP, PLD) beside basic composition, per privacy unit.

Computed with :func:`privacy.compare_composition` at the run's target δ, only where they say
something: a unit with at least one release that reads data (ε > 0). Record unit: the events of
the client with the largest Σε (the client the record-level statement is about); client unit:
every client-unit event. For pure ε-DP events the RDP and PLD figures are (ε, δ)-DP statements at
the target δ > 0: a different kind of guarantee from the pure ε of basic composition, shown
beside it, never instead of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from privacy import (
    UNIT_CLIENT, UNIT_RECORD, Accountant, CompositionComparison, PrivacyError, PrivacyTotals, compare_composition,
)

__all__ = ["CompositionRow", "composition_rows"]


@dataclass(frozen=True, kw_only=True)
class CompositionRow:
    """The comparison for one unit, or why there is none."""

    unit: str = field(metadata={"help": "record or client"})
    subject: str = field(metadata={"help": "whose events were composed"})
    comparison: CompositionComparison | None = field(metadata={"help": "None when not computed"})
    reason: str = field(default="", metadata={"help": "why no comparison was computed"})


def _compare(
    accountant: Accountant, *, unit: str, client_id: str | None, subject: str, target_delta: float
) -> CompositionRow:
    events = accountant.events_for(unit=unit, client_id=client_id)
    if not any(event.epsilon > 0.0 or event.delta > 0.0 for event in events):
        return CompositionRow(unit=unit, subject=subject, comparison=None, reason="no release that reads data")
    try:
        comparison = compare_composition(events, target_delta=target_delta)
    except PrivacyError as err:  # an event the comparison cannot represent: say so, keep basic
        return CompositionRow(unit=unit, subject=subject, comparison=None, reason=" ".join(str(err).split()))
    return CompositionRow(unit=unit, subject=subject, comparison=comparison)


def composition_rows(accountant: Accountant, totals: PrivacyTotals, *, target_delta: float) -> list[CompositionRow]:
    """One row per unit that has events: record (worst client) and client (server total)."""
    rows: list[CompositionRow] = []
    worst = totals.worst_client
    if worst is not None:
        rows.append(_compare(
            accountant, unit=UNIT_RECORD, client_id=worst, subject="the client with the largest Σε",
            target_delta=target_delta,
        ))
    if totals.client_releases:
        rows.append(_compare(
            accountant, unit=UNIT_CLIENT, client_id=None, subject="server (all client-unit releases)",
            target_delta=target_delta,
        ))
    return rows
