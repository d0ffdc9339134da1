"""``PatternTicketSearch``: the Flower strategy of one differentially private search round.

Hooks (Flower Message API):

- :meth:`PatternTicketSearch.configure_train`: sample clients, plan the round's privacy events,
  refuse the round (:class:`SearchStopped`) if any sampled client would exceed its budget, and
  send the public weights, the current ticket and the vote configuration
  (:data:`strategies.keys.VOTE_MESSAGE_TYPE`).
- :meth:`PatternTicketSearch.aggregate_train`: validate the replies, charge the accountant for
  the clients that replied in one ledger batch *before* any vote is used, then tally, select
  winners (central noise optional) and build the next ticket by post-processing.

The search loop (rounds, retries, stop) is :func:`strategies.search_loop.run_search`, which
:meth:`PatternTicketSearch.start` calls.

NOTE: the record-level releases happen on the clients when they reply, so the server can only
charge them once the replies are in (before using them), and charges only the clients that
answered; the central releases are charged before their noise is drawn (write-ahead,
:mod:`privacy.accountant`). With a :class:`privacy.ReleaseJournal`, what each round asks of every
sampled client is on disk before a message leaves, and a round interrupted before its charge is
charged in full for every sampled client when the run is opened again
(:meth:`PatternTicketSearch.settle_interrupted_rounds`): a release is never forgotten.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from logging import INFO, WARNING
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from kernels import LayerPolicy, Ticket, TicketMetadata
from privacy import (
    UNIT_CLIENT,
    UNIT_RECORD,
    Accountant,
    BudgetExceededError,
    RejectReason,
    PrivacyEvent,
    ReleaseAsk,
    ReleaseJournal,
    make_rng,
    signal_to_noise,
)
from strategies import keys
from strategies.aggregation import DomainRelease, build_next_ticket, release_domain, ticket_change
from strategies.domains import VoteDomain, build_domains, check_split, domain_names, plan_round_events
from strategies.errors import SearchStopped, StrategyError
from strategies.identity import identity_message_content, resolve_identities
from strategies.payload import round_config_record, ticket_record
from strategies.schedule import DensitySchedule
from strategies.settings import PrivacySettings, SearchSettings
from strategies.votes import ReplyIssue, client_id, collect_votes

__all__ = ["STATE_SCHEMA", "PatternTicketSearch"]

STATE_SCHEMA: Final = 1
_STATE_KEYS: Final = ("schema", "round", "ticket-path", "sampling-rng")


@dataclass(frozen=True)
class _PendingRound:
    server_round: int
    attempt: int
    density: float
    nodes: tuple[int, ...]
    domains: tuple[VoteDomain, ...]


class PatternTicketSearch(Strategy):
    """Server side of the federated, differentially private pattern-ticket search.

    Parameters
    ----------
    weights
        Public weights, per ticket layer (the server's weights are public, DESIGN.md 2).
    policies
        :class:`kernels.LayerPolicy` per layer (same keys as ``weights``); at least one pattern
        layer.
    settings, privacy
        See :class:`SearchSettings` and :class:`PrivacySettings`; ``privacy.epsilon_split`` must
        name exactly the domains (``"patterns"`` and one ``"kernels:<layer>"`` per voted layer).
    schedule
        Density of each round's ticket.
    accountant
        The run's accountant (budgets and ledger).
    ticket_dir
        Folder where each round's ticket is saved (``ticket-round-0001.safetensors``, ...).
    initial_ticket
        Ticket before round 1 (e.g. from another run), or ``None``.
    journal
        Write-ahead journal of the record-level releases each round asks for
        (:class:`privacy.ReleaseJournal`); ``None`` = no journal (a server crash between the
        replies and their charge would then forget those releases).
    """

    def __init__(
        self,
        *,
        weights: Mapping[str, torch.Tensor],
        policies: Mapping[str, LayerPolicy | str],
        settings: SearchSettings,
        privacy: PrivacySettings,
        schedule: DensitySchedule,
        accountant: Accountant,
        ticket_dir: str | os.PathLike[str],
        initial_ticket: Ticket | None = None,
        journal: ReleaseJournal | None = None,
    ) -> None:
        for name, value, kind in (
            ("settings", settings, SearchSettings),
            ("privacy", privacy, PrivacySettings),
            ("schedule", schedule, DensitySchedule),
            ("accountant", accountant, Accountant),
        ):
            if not isinstance(value, kind):
                raise StrategyError(f"{name} must be a {kind.__name__}. Found {type(value).__name__}.")
        if not isinstance(weights, Mapping) or not isinstance(policies, Mapping) or list(weights) != list(policies):
            raise StrategyError(
                f"weights and policies must be mappings with the same layers in the same order. Found"
                f" {list(weights) if isinstance(weights, Mapping) else weights!r} and"
                f" {list(policies) if isinstance(policies, Mapping) else policies!r}."
            )
        for name, tensor in weights.items():
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                raise StrategyError(f"weights[{name!r}] must be a floating-point torch.Tensor. Found {tensor!r}.")
        self._weights = {name: tensor.detach().cpu() for name, tensor in weights.items()}
        self._shapes = {name: tuple(tensor.shape) for name, tensor in self._weights.items()}
        try:
            self._policies = {name: LayerPolicy(policy) for name, policy in policies.items()}
        except ValueError as err:
            valid = [p.value for p in LayerPolicy]
            raise StrategyError(f"policies must be among {valid}. Found {dict(policies)!r}.") from err
        self._settings, self._privacy, self._schedule, self._accountant = settings, privacy, schedule, accountant
        check_split(domain_names(self._policies, settings), privacy)
        build_domains(shapes=self._shapes, policies=self._policies, settings=settings, density=schedule.start)
        self._ticket_dir = Path(ticket_dir)
        self._ticket_dir.mkdir(parents=True, exist_ok=True)
        if initial_ticket is not None:
            if not isinstance(initial_ticket, Ticket):
                raise StrategyError(f"initial_ticket must be a Ticket. Found {type(initial_ticket).__name__}.")
            initial_ticket.validate_against(self._shapes)
        self._ticket = initial_ticket
        self._ticket_path: Path | None = None
        self._round = 0
        self._rng = np.random.default_rng(settings.sampling_seed)
        self._noise_rng = make_rng(privacy.noise_seed) if privacy.central else None
        self._pending: _PendingRound | None = None
        self._attempts_sent: dict[int, int] = {}
        self._identities: dict[int, str] = {}
        if journal is not None and not isinstance(journal, ReleaseJournal):
            raise StrategyError(f"journal must be a ReleaseJournal or None. Found {type(journal).__name__}.")
        self._journal = journal

    # -- read-only state ---------------------------------------------------------------------

    @property
    def ticket(self) -> Ticket | None:
        """The last ticket built (or the initial one)."""
        return self._ticket

    @property
    def completed_round(self) -> int:
        """The last round whose ticket was built (0 before the first)."""
        return self._round

    @property
    def accountant(self) -> Accountant:
        """The run's accountant (budgets and ledger)."""
        return self._accountant

    @property
    def schedule(self) -> DensitySchedule:
        """The density schedule."""
        return self._schedule

    # -- Flower hooks ------------------------------------------------------------------------

    def _next_attempt(self, server_round: int) -> int:
        charged = [
            event.attempt for event in self._accountant.ledger.events
            if event.round == server_round and event.phase == self._privacy.phase
        ]
        # An attempt no client answered charges nothing, but its number was used (the journal asked it).
        asked = self._journal.attempts(self._privacy.phase, server_round) if self._journal is not None else []
        return max(max(charged, default=-1), max(asked, default=-1), self._attempts_sent.get(server_round, -1)) + 1

    @property
    def identities(self) -> dict[int, str]:
        """Node id -> client id of every node identified so far (node ids without identification)."""
        return dict(self._identities)

    def _identify(self, grid: Grid, nodes: list[int]) -> list[int]:
        """Ask unknown nodes for their client ids; return the nodes that may be sampled."""
        unknown = [node for node in nodes if node not in self._identities]
        if unknown:
            queries = [
                Message(content=identity_message_content(), dst_node_id=node,
                        message_type=keys.IDENTITY_MESSAGE_TYPE, group_id="identity")
                for node in unknown
            ]
            replies = grid.send_and_receive(queries, timeout=self._settings.identity_timeout)
            accepted, refused = resolve_identities(replies, asked=unknown, known=self._identities)
            self._identities.update(accepted)
            for node, why in refused.items():
                log(WARNING, "node %s is not sampled: %s", node, why)
        return [node for node in nodes if node in self._identities]

    def _sample(self, grid: Grid) -> tuple[int, ...]:
        nodes = sorted(int(node) for node in grid.get_node_ids())
        if self._settings.identify_clients:
            nodes = self._identify(grid, nodes)
        if len(nodes) < self._settings.min_replies:
            raise SearchStopped(
                f"available nodes must be at least min_replies = {self._settings.min_replies}. Found {len(nodes)}.",
                server_round=self._round + 1,
            )
        wanted = self._settings.clients_per_round or len(nodes)
        # Node ids are unsigned 64-bit: sample positions, not ids.
        chosen = self._rng.choice(len(nodes), size=min(wanted, len(nodes)), replace=False)
        return tuple(sorted(nodes[int(i)] for i in chosen))

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample clients and send them the round (message type ``"train.vote"``).

        Raises
        ------
        SearchStopped
            If a sampled client (record unit) or the server (client unit) would exceed its budget,
            or fewer nodes than ``min_replies`` are connected. Nothing is sent or charged.
        """
        if server_round != self._round + 1:
            raise StrategyError(f"server_round must be {self._round + 1} (next round). Found {server_round}.")
        self.settle_interrupted_rounds()
        density = self._schedule.density(server_round)
        domains = build_domains(shapes=self._shapes, policies=self._policies, settings=self._settings, density=density)
        nodes = self._sample(grid)
        attempt = self._next_attempt(server_round)
        planned = plan_round_events(
            domains, self._privacy, participants=[client_id(n, self._identities) for n in nodes],
            server_round=server_round, attempt=attempt,
        )
        reason = self._accountant.would_exceed(planned)
        if reason is not None:
            raise SearchStopped(reason, server_round=server_round)
        if self._journal is not None:
            # Write-ahead (DESIGN.md 5.4): the clients release when they reply, so what every sampled
            # client is asked for is on disk before a message leaves; see settle_interrupted_rounds.
            self._journal.ask(phase=self._privacy.phase, round=server_round, attempt=attempt, events=planned)
        self._attempts_sent[server_round] = attempt
        self._pending = _PendingRound(server_round, attempt, density, nodes, domains)
        content = RecordDict({
            keys.ARRAYS_KEY: arrays,
            keys.CONFIG_KEY: config,
            keys.VOTE_CONFIG_KEY: round_config_record(
                domains=domains, privacy=self._privacy, settings=self._settings,
                server_round=server_round, attempt=attempt, density=density,
            ),
        })
        if self._ticket is not None:
            content[keys.TICKET_KEY] = ticket_record(self._ticket)
        log(INFO, "configure_train: round %s attempt %s, %s clients, density %.4g",
            server_round, attempt, len(nodes), density)
        return [
            Message(content=content, dst_node_id=node, message_type=keys.VOTE_MESSAGE_TYPE, group_id=str(server_round))
            for node in nodes
        ]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord]:
        """Validate, charge, aggregate; return the new ticket's arrays (or ``None``) and metrics.

        Raises
        ------
        SearchStopped
            If the accountant refuses the charge (the ledger changed since the round was planned).
        StrategyError
            If ``configure_train`` was not called for ``server_round``.
        """
        pending = self._pending
        if pending is None or pending.server_round != server_round:
            raise StrategyError(f"aggregate_train must follow configure_train of round {server_round}.")
        self._pending = None
        collection = collect_votes(
            replies, domains=pending.domains, server_round=server_round, expected_nodes=pending.nodes,
            identities=self._identities,
        )
        enough = len(collection.participants) >= self._settings.min_replies
        events = plan_round_events(
            pending.domains, self._privacy, participants=collection.participants, server_round=server_round,
            attempt=pending.attempt, include_central=enough,
        )
        try:
            self._accountant.charge(events)  # one ledger batch, on disk before any vote is used
        except BudgetExceededError as err:
            raise SearchStopped(err.message, server_round=server_round) from err
        if self._journal is not None:  # charged (only the clients that answered): the ask is closed
            self._journal.close(phase=self._privacy.phase, round=server_round, attempt=pending.attempt)
        metrics = self._round_metrics(pending, collection.replies, collection.failed, collection.participants,
                                      collection.problems)
        if not enough:
            log(INFO, "aggregate_train: round %s has %s replies < min_replies %s; ticket kept",
                server_round, len(collection.participants), self._settings.min_replies)
            return None, MetricRecord(metrics)
        releases: dict[str, DomainRelease] = {}
        for domain in pending.domains:
            releases[domain.name] = release_domain(
                collection.votes[domain.name], domain, central_noise=self._privacy.central_noise,
                epsilon=self._privacy.epsilon_split[domain.name] * self._privacy.client_epsilon,
                rng=self._noise_rng,
            )
        self._check_charged(releases, events)
        record_eps, _ = self._accountant.basic_composition(unit=UNIT_RECORD)
        metadata = TicketMetadata(
            config_hash=self._settings.config_hash,
            epsilon_spent={UNIT_RECORD: record_eps, UNIT_CLIENT: self._accountant.client_level_epsilon()},
            round=server_round,
        )
        ticket = build_next_ticket(
            releases=releases, weights=self._weights, policies=self._policies, settings=self._settings,
            density=pending.density, metadata=metadata,
        )
        path = self._ticket_dir / f"ticket-round-{server_round:04d}.safetensors"
        ticket.save(path)
        change = ticket_change(ticket, self._ticket)
        self._ticket, self._ticket_path, self._round = ticket, path, server_round
        metrics.update(self._release_metrics(releases, events, change, record_eps))
        return ticket_record(ticket), MetricRecord(metrics)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The search has no federated evaluation: no message."""
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """The search has no federated evaluation: ``None``."""
        return None

    def summary(self) -> None:
        """Log the search's settings."""
        log(INFO, "\t├── Search: %s", self._settings)
        log(INFO, "\t├── Privacy: %s", self._privacy)
        log(INFO, "\t└── Schedule: %s", self._schedule)

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Run :func:`strategies.search_loop.run_search`; ``Result.arrays`` is the last ticket's record.

        ``initial_arrays`` are the public weights sent every round; they never change.
        """
        if evaluate_fn is not None:
            raise StrategyError("evaluate_fn must be None: evaluate the ticket after the search. Found a function.")
        from strategies.search_loop import run_search  # the loop drives this class: imported late

        outcome = run_search(self, grid, arrays=initial_arrays, num_rounds=num_rounds, timeout=timeout,
                             config=train_config)
        result = Result()
        if outcome.ticket is not None:
            result.arrays = ticket_record(outcome.ticket)
        result.train_metrics_clientapp.update(outcome.metrics)
        return result

    # -- metrics -----------------------------------------------------------------------------

    def _round_metrics(
        self, pending: _PendingRound, replies: int, failed: int, participants: tuple[str, ...], problems: Counter[str]
    ) -> dict[str, int | float]:
        metrics: dict[str, int | float] = {
            "round": pending.server_round,
            "attempt": pending.attempt,
            "density": pending.density,
            "sampled": len(pending.nodes),
            "replies": replies,
            "failed": failed,
            "participants": len(participants),
            "ticket-updated": 0,
        }
        for reason in [*(r.value for r in RejectReason), *(i.value for i in ReplyIssue)]:
            metrics[f"rejected.{reason}"] = int(problems.get(reason, 0))
        metrics["rejected"] = int(sum(problems.values()))
        return metrics

    def _release_metrics(
        self,
        releases: Mapping[str, DomainRelease],
        events: Iterable[PrivacyEvent],
        change: float | None,
        record_eps: float,
    ) -> dict[str, int | float]:
        metrics: dict[str, int | float] = {"ticket-updated": 1, "epsilon-record-max": record_eps,
                                           "epsilon-client": self._accountant.client_level_epsilon()}
        if change is not None:
            metrics["jaccard"] = change
        dominated = 0
        for name, release in releases.items():
            metrics[f"voters.{name}"] = release.num_voters
            if release.diagnostic is not None:
                metrics[f"snr-central.{name}"] = release.diagnostic.ratio
                metrics[f"noise-dominated.{name}"] = int(release.diagnostic.noise_dominated)
                dominated += int(release.diagnostic.noise_dominated)
        for event in events:  # client-side noise against the clipped score range [0, C] (DESIGN.md 5.6)
            if event.unit == UNIT_RECORD:
                local = signal_to_noise(noise_scale=event.noise_scale, signal_range=self._privacy.clip_bound)
                metrics[f"snr-local.{event.domain}"] = local.ratio
        metrics["noise-dominated"] = dominated
        return metrics

    def _check_charged(self, releases: Mapping[str, DomainRelease], events: Iterable[PrivacyEvent]) -> None:
        """Every central release must match a charged event (never release more than charged)."""
        charged = {(e.domain, e.mechanism, e.noise_scale, e.epsilon) for e in events if e.unit == UNIT_CLIENT}
        for release in releases.values():
            if release.spec is not None:
                key = (release.domain, release.spec.mechanism, release.spec.noise_scale, release.spec.epsilon)
                if key not in charged:
                    raise StrategyError(f"central release of {release.domain!r} must be charged. Found {key}.")

    def settle_interrupted_rounds(self) -> list[ReleaseAsk]:
        """Charge, in full, every round attempt the journal asked for but never charged; return them.

        Such an attempt was interrupted (the server stopped) after its messages left and before
        the replies were charged: some clients may have released their votes to the SuperLink,
        and the server cannot tell which. Every sampled client is charged as if it had answered
        (conservative; a release is never forgotten, DESIGN.md 5.4), then the ask is closed as
        ``settled``. Idempotent and cheap when nothing is open; :meth:`configure_train` calls it before
        every round it runs.
        """
        if self._journal is None:
            return []
        asks = self._journal.unsettled(self._accountant.ledger.events)
        for ask in asks:
            self._accountant.charge(ask.events)
            self._journal.close(phase=ask.phase, round=ask.round, attempt=ask.attempt, settled=True)
            log(WARNING, "round %s attempt %s of %s was interrupted before its replies were charged: every"
                " sampled client (%s) is charged in full", ask.round, ask.attempt, ask.phase,
                ", ".join(sorted({p for e in ask.events for p in e.participants})))
        return asks

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state for a checkpoint: round, ticket file, sampling generator.

        The ledger is already on disk; the central-noise generator is not saved (a fresh one
        from OS entropy, or the user seed, is used on resume: its state must stay secret).
        """
        return {
            "schema": STATE_SCHEMA,
            "round": self._round,
            "ticket-path": None if self._ticket_path is None else str(self._ticket_path),
            "sampling-rng": self._rng.bit_generator.state,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (the ticket is read from its file and checked against the model)."""
        if not isinstance(state, Mapping) or sorted(state) != sorted(_STATE_KEYS):
            found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise StrategyError(f"state keys must be {sorted(_STATE_KEYS)}. Found {found}.")
        if state["schema"] != STATE_SCHEMA:
            raise StrategyError(f"state schema must be {STATE_SCHEMA}. Found {state['schema']!r}.")
        completed = state["round"]
        if isinstance(completed, bool) or not isinstance(completed, int) or completed < 0:
            raise StrategyError(f"state round must be an int >= 0. Found {completed!r}.")
        path = state["ticket-path"]
        ticket = None
        if path is not None:
            ticket = Ticket.load(path, shapes=self._shapes)
            if ticket.metadata.round != completed:
                raise StrategyError(f"ticket round must be {completed} as in the state. Found {ticket.metadata.round}.")
        elif completed != 0:
            raise StrategyError(f"ticket-path must be set for a state at round {completed}. Found None.")
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = state["sampling-rng"]
        except (TypeError, ValueError, KeyError) as err:
            raise StrategyError(f"sampling-rng must be a PCG64 state. Found {state['sampling-rng']!r}.") from err
        self._rng, self._round, self._pending = rng, completed, None
        self._ticket = ticket if ticket is not None else self._ticket
        self._ticket_path = None if path is None else Path(path)
