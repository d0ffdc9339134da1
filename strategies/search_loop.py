"""The search loop: rounds of a search strategy on a grid until the schedule ends or the search
is stopped (budget, nodes, or a round that keeps missing its minimum of replies).

:func:`run_search` is the one loop. :class:`SearchStart` gives a strategy Flower's ``start()``
entry point by calling it, so Flower's template loop (which would send the returned ticket as
the next round's weights) never runs a search. The loop is typed against :class:`SearchRunner`,
not against a strategy class: the strategies import this module, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Protocol, TypeVar

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result
from flwr.supercore.logger import log

from kernels import Ticket
from strategies.errors import SearchStopped, StrategyError
from strategies.payload import ticket_record
from strategies.schedule import DensitySchedule

__all__ = ["RoundCallback", "SearchOutcome", "SearchRunner", "SearchStart", "run_search"]


class SearchRunner(Protocol):
    """What the loop needs of a search strategy (:class:`strategies.PrivacyGate`,
    :class:`strategies.PatternSearch`)."""

    @property
    def ticket(self) -> Ticket | None: ...

    @property
    def completed_round(self) -> int: ...

    @property
    def schedule(self) -> DensitySchedule: ...

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]: ...

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord]: ...


S = TypeVar("S", bound=SearchRunner)
RoundCallback = Callable[[int, MetricRecord, S], None]


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
    strategy: S,
    grid: Grid,
    *,
    arrays: ArrayRecord,
    num_rounds: int | None = None,
    timeout: float | None = None,
    config: ConfigRecord | None = None,
    max_attempts: int = 2,
    on_round: RoundCallback[S] | None = None,
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


class SearchStart:
    """Mixin: Flower's ``Strategy.start`` entry point, running :func:`run_search` (the one loop)."""

    def start(
        self: SearchRunner,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Run :func:`run_search`; ``Result.arrays`` is the last ticket's record.

        ``initial_arrays`` are the public weights sent every round; they never change.
        """
        if evaluate_fn is not None:
            raise StrategyError("evaluate_fn must be None: evaluate the ticket after the search. Found a function.")
        outcome = run_search(self, grid, arrays=initial_arrays, num_rounds=num_rounds, timeout=timeout,
                             config=train_config)
        result = Result()
        if outcome.ticket is not None:
            result.arrays = ticket_record(outcome.ticket)
        result.train_metrics_clientapp.update(outcome.metrics)
        return result
