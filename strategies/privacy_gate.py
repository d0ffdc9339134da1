"""``PrivacyGate``: the accounting wrapper around a search strategy, as Flower adds DP by wrapping
a strategy (``DifferentialPrivacyFixedClippingBase`` holds ``self.strategy`` and delegates).

Each round attempt, around the wrapped strategy's hooks (DESIGN.md 5.4):

1. :meth:`PrivacyGate.configure_train`: settle interrupted rounds, let the strategy sample and
   build its messages, plan the round's events (:func:`strategies.plan_round_events`), refuse the
   round (:class:`SearchStopped`) if any sampled client or the server would exceed its budget,
   write the journal's ask, and only then return the messages (nothing leaves before).
2. :meth:`PrivacyGate.aggregate_train`: the strategy validates the replies (``collect``), the
   clients that replied are charged in one ledger batch, the ask is closed, and only then does
   the strategy use the votes (``conclude``), the central noise drawn here through its
   ``releaser`` hook. Should that charge exceed a budget (the ledger changed since the round was
   planned), the repliers' releases, which happened, are recorded all the same
   (:meth:`privacy.Accountant.record`), the ask is closed and the search stops
   (:class:`SearchStopped`) without using the votes: the ticket does not move, no central noise
   is drawn, and the ledger's totals show the budget exceeded.

NOTE: the record-level releases happen on the clients when they reply, so the server can only
charge them once the replies are in (before using them), and charges only the clients that
answered; the central releases are charged before their noise is drawn (write-ahead,
:mod:`privacy.accountant`). With a :class:`privacy.ReleaseJournal`, a round interrupted before
its charge is recorded in full for every sampled client when the run is opened again
(:meth:`PrivacyGate.settle_interrupted_rounds`): a release is never forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from logging import INFO, WARNING
from typing import Any, Protocol, runtime_checkable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore.logger import log

from kernels import Ticket
from privacy import (
    UNIT_CLIENT,
    UNIT_RECORD,
    Accountant,
    BudgetExceededError,
    PrivacyEvent,
    ReleaseAsk,
    ReleaseJournal,
    make_rng,
    signal_to_noise,
)
from strategies.aggregation import DomainRelease, release_domain
from strategies.domains import VoteDomain, domain_epsilon, plan_round_events
from strategies.errors import SearchStopped, StrategyError
from strategies.rounds import Releaser, RoundPlan, RoundVotes
from strategies.schedule import DensitySchedule
from strategies.search_loop import SearchRunner, SearchStart
from strategies.settings import PrivacySettings

__all__ = ["GatedSearch", "PrivacyGate"]


@runtime_checkable
class GatedSearch(SearchRunner, Protocol):
    """What the gate needs of the search it wraps (:class:`strategies.PatternSearch`): the loop's
    hooks, and the staged round (``pending`` plan, ``collect`` then ``conclude``) it accounts for."""

    @property
    def privacy(self) -> PrivacySettings: ...
    @property
    def pending(self) -> RoundPlan | None: ...
    def skip_attempts(self, server_round: int, used: Iterable[int]) -> None: ...
    def collect(self, server_round: int, replies: Iterable[Message]) -> RoundVotes: ...
    def conclude(
        self, votes: RoundVotes, *, releaser: Releaser | None = None, epsilon_spent: Mapping[str, float] | None = None
    ) -> tuple[ArrayRecord | None, dict[str, int | float]]: ...
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]: ...
    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None: ...
    def summary(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state(self, state: Mapping[str, Any]) -> None: ...


class PrivacyGate(SearchStart, Strategy):
    """Plan, check, journal, charge and settle the privacy cost of a wrapped search strategy.

    Parameters
    ----------
    strategy
        The search it wraps (its ``privacy`` settings say what each round releases).
    accountant
        The run's accountant (budgets and ledger).
    journal
        Write-ahead journal of the record-level releases each round asks for
        (:class:`privacy.ReleaseJournal`); ``None`` = no journal (a server crash between the
        replies and their charge would then forget those releases).
    """

    def __init__(
        self, *, strategy: GatedSearch, accountant: Accountant, journal: ReleaseJournal | None = None
    ) -> None:
        if not isinstance(strategy, GatedSearch):
            raise StrategyError(f"strategy must be a search strategy (GatedSearch). Found {type(strategy).__name__}.")
        if not isinstance(accountant, Accountant):
            raise StrategyError(f"accountant must be an Accountant. Found {type(accountant).__name__}.")
        if journal is not None and not isinstance(journal, ReleaseJournal):
            raise StrategyError(f"journal must be a ReleaseJournal or None. Found {type(journal).__name__}.")
        self.strategy = strategy
        self._privacy = strategy.privacy
        self._accountant, self._journal = accountant, journal
        self._noise_rng = make_rng(self._privacy.noise_seed) if self._privacy.central else None
        self._asked: RoundPlan | None = None

    @property
    def ticket(self) -> Ticket | None:
        """The wrapped strategy's last ticket."""
        return self.strategy.ticket

    @property
    def completed_round(self) -> int:
        """The wrapped strategy's last completed round."""
        return self.strategy.completed_round

    @property
    def schedule(self) -> DensitySchedule:
        """The wrapped strategy's density schedule."""
        return self.strategy.schedule

    @property
    def accountant(self) -> Accountant:
        """The run's accountant (budgets and ledger)."""
        return self._accountant

    def _used_attempts(self, server_round: int) -> list[int]:
        phase = self._privacy.phase
        charged = [e.attempt for e in self._accountant.ledger.events if e.round == server_round and e.phase == phase]
        # An attempt no client answered charges nothing, but its number was used (the journal asked it).
        asked = self._journal.attempts(phase, server_round) if self._journal is not None else []
        return charged + asked

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's messages, returned only once the round is checked and journaled.

        Raises
        ------
        SearchStopped
            If a sampled client (record unit) or the server (client unit) would exceed its budget,
            or too few nodes are connected. Nothing is returned (so nothing is sent) or charged.
        """
        self.settle_interrupted_rounds()
        self.strategy.skip_attempts(server_round, self._used_attempts(server_round))
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        plan = self.strategy.pending
        if plan is None or plan.server_round != server_round:
            raise StrategyError(f"strategy.pending must be the plan of round {server_round}. Found {plan!r}.")
        planned = plan_round_events(plan.domains, self._privacy, participants=plan.participants,
                                    server_round=server_round, attempt=plan.attempt)
        reason = self._accountant.would_exceed(planned)
        if reason is not None:
            raise SearchStopped(reason, server_round=server_round)
        if self._journal is not None:
            # Write-ahead (DESIGN.md 5.4): the clients release when they reply, so what every sampled
            # client is asked for is on disk before a message leaves; see settle_interrupted_rounds.
            self._journal.ask(phase=self._privacy.phase, round=server_round, attempt=plan.attempt, events=planned)
        self._asked = plan
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord]:
        """Charge the clients that replied, then let the wrapped strategy use their votes.

        Raises
        ------
        SearchStopped
            If the accountant refuses the charge (the ledger changed since the round was planned).
            The repliers' record-level releases happened: they are recorded anyway, the ask is
            closed, and the votes are not used (no central release, the ticket does not move).
        StrategyError
            If ``configure_train`` was not called for ``server_round``.
        """
        plan = self._asked
        if plan is None or plan.server_round != server_round:
            raise StrategyError(f"aggregate_train must follow configure_train of round {server_round}.")
        self._asked = None
        votes = self.strategy.collect(server_round, replies)
        events = plan_round_events(
            plan.domains, self._privacy, participants=votes.collection.participants, server_round=server_round,
            attempt=plan.attempt, include_central=votes.enough,
        )
        try:
            self._accountant.charge(events)  # one ledger batch, on disk before any vote is used
        except BudgetExceededError as err:
            # DESIGN.md 5.4: the repliers released their votes when they replied; that is recorded
            # whatever the budget says. The central releases were only planned: they are not drawn.
            self._accountant.record([event for event in events if event.unit == UNIT_RECORD])
            self._close_ask(server_round, plan.attempt)
            reason = f"{err.message} The replies' releases are recorded in the ledger; their votes are not used."
            raise SearchStopped(reason, server_round=server_round) from err
        self._close_ask(server_round, plan.attempt)
        record_eps, _ = self._accountant.basic_composition(unit=UNIT_RECORD)
        client_eps = self._accountant.client_level_epsilon()
        arrays, metrics = self.strategy.conclude(
            votes, releaser=lambda domain, clean: self._release(domain, clean, events),
            epsilon_spent={UNIT_RECORD: record_eps, UNIT_CLIENT: client_eps},
        )
        if arrays is not None:
            metrics.update({"epsilon-record-max": record_eps, "epsilon-client": client_eps})
            rdp = self._accountant.record_rdp_epsilon_max()
            if rdp is not None:  # budget-accountant=rdp: the figure the budget is enforced on
                metrics["epsilon-record-rdp"] = rdp
            for event in events:  # client-side noise against the clipped score range [0, C] (DESIGN.md 5.6)
                if event.unit == UNIT_RECORD:
                    local = signal_to_noise(noise_scale=event.noise_scale, signal_range=self._privacy.clip_bound)
                    metrics[f"snr-local.{event.domain}"] = local.ratio
        return arrays, MetricRecord(metrics)

    def _close_ask(self, server_round: int, attempt: int) -> None:
        """Close the round's ask: the clients that answered are in the ledger (and only they)."""
        if self._journal is not None:
            self._journal.close(phase=self._privacy.phase, round=server_round, attempt=attempt)

    def _release(
        self, domain: VoteDomain, votes: Sequence[np.ndarray], events: Sequence[PrivacyEvent]
    ) -> DomainRelease:
        """One domain's winners; with central noise (DESIGN.md 5.2) a release already charged."""
        # DESIGN.md 5.2/5.4: the domain's share of the round's client-level ε, as planned and charged
        # (the same domain_epsilon); Laplace of scale min(c, K)/ε (discrete Laplace c/ε) then top-K
        # (privacy.histogram_calibration).
        release = release_domain(
            votes, domain, central_noise=self._privacy.central_noise,
            epsilon=domain_epsilon(self._privacy, domain.name, UNIT_CLIENT), rng=self._noise_rng,
        )
        self._check_charged(release, events)
        return release

    @staticmethod
    def _check_charged(release: DomainRelease, events: Iterable[PrivacyEvent]) -> None:
        """A central release must match a charged event (never release more than charged)."""
        if release.spec is None:
            return
        charged = {(e.domain, e.mechanism, e.noise_scale, e.epsilon) for e in events if e.unit == UNIT_CLIENT}
        key = (release.domain, release.spec.mechanism, release.spec.noise_scale, release.spec.epsilon)
        if key not in charged:
            raise StrategyError(f"central release of {release.domain!r} must be charged. Found {key}.")

    def settle_interrupted_rounds(self) -> list[ReleaseAsk]:
        """Record, in full, every round attempt the journal asked for but never charged; return them.

        Such an attempt was interrupted (the server stopped) after its messages left and before
        the replies were charged: some clients may have released their votes to the SuperLink,
        and the server cannot tell which. Every sampled client is recorded as if it had answered
        (conservative; a release is never forgotten, DESIGN.md 5.4) with
        :meth:`privacy.Accountant.record`, which checks no budget: the releases may have happened,
        so recording them is not optional, and a client then over its budget is refused any
        further round. The ask is then closed as ``settled``. The journal's asks hold record-unit
        events only: an interrupted round drew no central noise (that comes after the charge).
        Idempotent and cheap when nothing is open; :meth:`configure_train` calls it before every
        round it runs.
        """
        if self._journal is None:
            return []
        asks = self._journal.settle(self._accountant)
        for ask in asks:
            log(WARNING, "round %s attempt %s of %s was interrupted before its replies were charged: every"
                " sampled client (%s) is recorded in full", ask.round, ask.attempt, ask.phase,
                ", ".join(sorted({p for e in ask.events for p in e.participants})))
        return asks

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's evaluation messages."""
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """The wrapped strategy's evaluation metrics."""
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        """Log the budgets, then the wrapped strategy's settings."""
        log(INFO, "\t├── Privacy gate: budgets ε record %s, ε client %s, journal %s",
            self._accountant.epsilon_budget(UNIT_RECORD), self._accountant.epsilon_budget(UNIT_CLIENT),
            None if self._journal is None else self._journal.path)
        self.strategy.summary()

    def state_dict(self) -> dict[str, Any]:
        """The wrapped strategy's checkpoint state; the gate adds none.

        The ledger and the journal are already on disk; the central-noise generator is not saved
        (a fresh one from OS entropy, or the user seed, is used on resume: its state must stay
        secret).
        """
        return self.strategy.state_dict()

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into the wrapped strategy."""
        self.strategy.load_state(state)
