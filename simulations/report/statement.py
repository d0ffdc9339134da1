"""The figures behind a run's guarantee, per unit, in words, from its ledger totals (basic composition).

What is private and what is not is said once, by :func:`federation.statement.guarantee_statement`
(the report's first line); these paragraphs quote the ledger's figures under each unit. They name
no client: the ledger is the operator's record (DESIGN.md 5.4b).
"""

from __future__ import annotations

import math

from federation.config import UNIT_BOTH
from federation.layout import PHASE_SEARCH
from privacy import UNIT_CLIENT, UNIT_RECORD, PrivacyTotals
from simulations.report.formatting import format_float

__all__ = ["privacy_statement", "stated_units"]


def stated_units(totals: PrivacyTotals, configured_unit: object) -> tuple[str, ...]:
    """Units the report speaks about: those configured and those the ledger holds events of."""
    units: list[str] = []
    if configured_unit in (UNIT_RECORD, UNIT_BOTH) or totals.record_releases:
        units.append(UNIT_RECORD)
    if configured_unit in (UNIT_CLIENT, UNIT_BOTH) or totals.client_releases:
        units.append(UNIT_CLIENT)
    return tuple(units)


def _scope(totals: PrivacyTotals) -> str:
    if totals.phases in ((), (PHASE_SEARCH,)):
        return "over the whole search"
    return "over every release in the ledger (phases: " + ", ".join(totals.phases) + ")"


def _record(totals: PrivacyTotals) -> str:
    if not totals.record_releases:
        return (
            "Record unit: no record-level release is in the ledger yet, so no client's data has been read"
            " under it (ε = 0)."
        )
    worst = totals.worst_client
    assert worst is not None
    if math.isinf(totals.record_epsilon_max):
        infinite = sum(1 for e in totals.record_epsilon_by_client.values() if math.isinf(e))
        return (
            f"Record unit: this run is NOT private. {infinite} of {len(totals.record_epsilon_by_client)} clients"
            " took part in a release without noise (ε = inf), so their datasets have no record-level guarantee."
        )
    if totals.record_epsilon_max == 0.0 and totals.record_delta_max == 0.0:
        return (
            f"Record unit: every one of the {totals.record_releases} record-level releases was data-free (ε = 0):"
            " the search read no client data."
        )
    return (
        "Each client's dataset is (ε, δ)-DP with respect to one example replaced, "
        f"{_scope(totals)}, with ε = {format_float(totals.record_epsilon_max)} and"
        f" δ = {format_float(totals.record_delta_max)} (basic composition of"
        f" {totals.record_releases_by_client[worst]} releases charged to the client with the largest"
        f" Σε; the mean Σε over the {len(totals.record_epsilon_by_client)} clients charged is"
        f" {format_float(totals.record_epsilon_mean)})."
    )


def _client(totals: PrivacyTotals) -> str:
    if not totals.client_releases:
        return "Client unit: no client-level (central) release is in the ledger yet (ε = 0)."
    if math.isinf(totals.client_epsilon):
        return (
            "Client unit: this run is NOT private. At least one central release added no noise (ε = inf), so the"
            " released tickets carry no client-level guarantee."
        )
    if totals.client_epsilon == 0.0 and totals.client_delta == 0.0:
        return f"Client unit: all {totals.client_releases} client-level releases were data-free (ε = 0)."
    return (
        "The released tickets are (ε, δ)-DP with respect to one client added or removed, "
        f"{_scope(totals)}, with ε = {format_float(totals.client_epsilon)} and"
        f" δ = {format_float(totals.client_delta)} (basic composition of {totals.client_releases} central releases)."
    )


def privacy_statement(totals: PrivacyTotals, *, configured_unit: object) -> list[str]:
    """Paragraphs quoting the ledger's figures per unit (what is not covered is the headline's to say)."""
    paragraphs = [
        _record(totals) if unit == UNIT_RECORD else _client(totals) for unit in stated_units(totals, configured_unit)
    ]
    if not paragraphs:
        paragraphs.append(
            "No release is in the ledger yet and no privacy unit is configured: nothing to state (ε = 0)."
        )
    others = [phase for phase in totals.phases if phase != PHASE_SEARCH]
    if others:
        paragraphs.append(
            f"Releases of the phase(s) {', '.join(others)} are charged in the ledger and included above; any step of"
            " ticket training that the ledger does not record is not covered."
        )
    return paragraphs
