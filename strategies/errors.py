"""Typed errors of the ``strategies`` package.

:class:`StrategyError` is a ``ValueError`` (bad settings or an inconsistent call sequence).
:class:`SearchStopped` is not an error of the caller: it says the search must end now, keeping
the last ticket (a budget that a round would exceed, too few nodes, too few replies). Messages
follow the house phrasing ``"<name> must be <constraint>. Found <value>."``.
"""

from __future__ import annotations

__all__ = ["SearchStopped", "StrategyError"]


class StrategyError(ValueError):
    """Invalid settings or input to the search strategy, or hooks called out of order."""


class SearchStopped(Exception):
    """The search must stop cleanly before the given round; the last ticket is kept.

    Parameters
    ----------
    reason
        Human-readable reason (for example the accountant's refusal message).
    server_round
        The round that was refused or could not complete.
    """

    def __init__(self, reason: str, *, server_round: int) -> None:
        self.reason = reason
        self.server_round = server_round
        super().__init__(f"search stopped before completing round {server_round}: {reason}")
