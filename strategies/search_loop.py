"""The search loop: rounds of :class:`PatternTicketSearch` on a grid until the schedule ends or the
search is stopped (budget, nodes, or a round that keeps missing its minimum of replies)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from logging import INFO, WARNING

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp import Grid
from flwr.supercore.logger import log

from kernels import Ticket
from strategies.errors import SearchStopped, StrategyError
from strategies.pattern_search import PatternTicketSearch

__all__ = ["SearchOutcome", "run_search"]

RoundCallback = Callable[[int, MetricRecord, PatternTicketSearch], None]


@dataclass(frozen=True, kw_only=True)
class SearchOutcome:
    """How a search ended.

    Parameters
    ----------
    ticket
        The last ticket built (kept on a stop), ``None`` if no round completed.
    completed_round
        The last round whose ticket was built.
    stop_reason
        Why the search stopped early, ``None`` when the schedule (or ``num_rounds``) completed.
    metrics
        Metrics of every attempt, keyed by round (the last attempt of a round wins).
    """

    ticket: Ticket | None = field(metadata={"help": "last ticket"})
    completed_round: int = field(metadata={"help": "last completed round"})
    stop_reason: str | None = field(metadata={"help": "why the search stopped early"})
    metrics: Mapping[int, MetricRecord] = field(metadata={"help": "round -> metrics"})

    @property
    def stopped(self) -> bool:
        """Whether the search stopped before its last round."""
        return self.stop_reason is not None


def run_search(
    strategy: PatternTicketSearch,
    grid: Grid,
    *,
    arrays: ArrayRecord,
    num_rounds: int | None = None,
    timeout: float | None = None,
    config: ConfigRecord | None = None,
    max_attempts: int = 2,
    on_round: RoundCallback | None = None,
) -> SearchOutcome:
    """Run the search from ``strategy.completed_round + 1`` (a resumed strategy continues).

    Each round: ``configure_train`` -> ``grid.send_and_receive`` -> ``aggregate_train``. A round
    without enough replies is retried (a new attempt, fresh sample) up to ``max_attempts`` times,
    then the search stops. A :class:`SearchStopped` (budget, nodes) stops it at once. On any stop
    the last ticket is kept. ``on_round(round, metrics, strategy)`` runs after every attempt (for
    metrics and checkpoints, e.g. ``strategy.state_dict()``).

    Parameters
    ----------
    num_rounds
        Last round to run; ``None`` = the schedule's ``total_rounds``.
    """
    last = strategy.schedule.total_rounds if num_rounds is None else num_rounds
    if isinstance(last, bool) or not isinstance(last, int) or not 1 <= last <= strategy.schedule.total_rounds:
        total = strategy.schedule.total_rounds
        raise StrategyError(f"num_rounds must be an int in [1, {total}]. Found {num_rounds!r}.")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise StrategyError(f"max_attempts must be an int >= 1. Found {max_attempts!r}.")
    config = ConfigRecord() if config is None else config
    metrics: dict[int, MetricRecord] = {}
    stop_reason: str | None = None
    server_round = strategy.completed_round + 1
    while server_round <= last and stop_reason is None:
        for _ in range(max_attempts):
            try:
                messages = strategy.configure_train(server_round, arrays, config, grid)
                replies = grid.send_and_receive(messages, timeout=timeout)
                ticket_arrays, round_metrics = strategy.aggregate_train(server_round, replies)
            except SearchStopped as stop:
                stop_reason = stop.reason
                log(WARNING, "search stopped at round %s: %s", server_round, stop.reason)
                break
            metrics[server_round] = round_metrics
            if on_round is not None:
                on_round(server_round, round_metrics, strategy)
            if ticket_arrays is not None:
                break
        else:
            stop_reason = f"round {server_round} got fewer than the minimum replies in {max_attempts} attempts"
            log(WARNING, "search stopped: %s", stop_reason)
        if stop_reason is None:
            log(INFO, "search round %s done", server_round)
            server_round += 1
    return SearchOutcome(
        ticket=strategy.ticket, completed_round=strategy.completed_round, stop_reason=stop_reason, metrics=metrics
    )
