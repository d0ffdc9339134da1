"""``PatternSearch``: the plain Flower strategy of the pattern-ticket search; no accounting.

Hooks (Flower Message API):

- :meth:`PatternSearch.configure_train`: sample clients (:class:`strategies.sampling.NodeSampler`)
  and build the messages carrying the public weights, the current ticket and the round's vote
  configuration (:data:`strategies.keys.VOTE_MESSAGE_TYPE`).
- :meth:`PatternSearch.aggregate_train`: :meth:`~PatternSearch.collect` (validate the replies,
  nothing used) then :meth:`~PatternSearch.conclude` (tally, select winners, build and save the
  next ticket by post-processing).

It knows nothing of budgets, the ledger or the journal: :class:`strategies.PrivacyGate` wraps it,
charges between ``collect`` and ``conclude``, and draws the central noise through the
``releaser`` hook of ``conclude``. Alone it runs a non-private search and refuses central noise.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from logging import INFO
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore.logger import log

from kernels import LayerPolicy, Ticket, TicketMetadata
from strategies import keys
from strategies.aggregation import (
    DomainRelease,
    Evidence,
    accumulate,
    build_next_ticket,
    kernels_moved,
    release_domain,
    ticket_change,
)
from strategies.domains import PATTERNS_DOMAIN, VoteDomain, build_domains, check_split, domain_names
from strategies.errors import StrategyError
from strategies.payload import round_config_record, ticket_record
from strategies.rounds import Releaser, RoundPlan, RoundVotes, release_metrics, reply_metrics
from strategies.sampling import NodeSampler
from strategies.schedule import DensitySchedule
from strategies.search_loop import SearchStart
from strategies.settings import NO_CENTRAL_NOISE, PrivacySettings, SearchSettings
from strategies.votes import client_id, collect_votes

__all__ = ["STATE_SCHEMA", "PatternSearch"]

STATE_SCHEMA: Final = 2
_STATE_KEYS: Final = ("schema", "round", "ticket-path", "sampling-rng", "evidence")
_STATE_KEYS_V1: Final = ("schema", "round", "ticket-path", "sampling-rng")  # before the evidence was kept

def _checked_layers(
    weights: Mapping[str, torch.Tensor], policies: Mapping[str, LayerPolicy | str]
) -> tuple[dict[str, torch.Tensor], dict[str, LayerPolicy]]:
    """The weights (detached, on the CPU) and the resolved policies, checked against each other."""
    if not isinstance(weights, Mapping) or not isinstance(policies, Mapping) or list(weights) != list(policies):
        raise StrategyError(
            f"weights and policies must be mappings with the same layers in the same order. Found"
            f" {list(weights) if isinstance(weights, Mapping) else weights!r} and"
            f" {list(policies) if isinstance(policies, Mapping) else policies!r}."
        )
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise StrategyError(f"weights[{name!r}] must be a floating-point torch.Tensor. Found {tensor!r}.")
    try:
        resolved = {name: LayerPolicy(policy) for name, policy in policies.items()}
    except ValueError as err:
        valid = [p.value for p in LayerPolicy]
        raise StrategyError(f"policies must be among {valid}. Found {dict(policies)!r}.") from err
    return {name: tensor.detach().cpu() for name, tensor in weights.items()}, resolved


def _checked_state(state: Mapping[str, Any]) -> tuple[int, str | None]:
    """The completed round and ticket path of a :meth:`PatternSearch.state_dict`, its shape checked."""
    keys_v1 = isinstance(state, Mapping) and sorted(state) == sorted(_STATE_KEYS_V1) and state.get("schema") == 1
    if not isinstance(state, Mapping) or (sorted(state) != sorted(_STATE_KEYS) and not keys_v1):
        found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise StrategyError(f"state keys must be {sorted(_STATE_KEYS)}. Found {found}.")
    if state["schema"] not in (1, STATE_SCHEMA):
        raise StrategyError(f"state schema must be {STATE_SCHEMA}. Found {state['schema']!r}.")
    completed = state["round"]
    if isinstance(completed, bool) or not isinstance(completed, int) or completed < 0:
        raise StrategyError(f"state round must be an int >= 0. Found {completed!r}.")
    return completed, state["ticket-path"]


class PatternSearch(SearchStart, Strategy):
    """Server side of the federated pattern-ticket search, without privacy accounting.

    Parameters
    ----------
    weights
        Public weights, per ticket layer (the server's weights are public, DESIGN.md 2).
    policies
        :class:`kernels.LayerPolicy` per layer (same keys as ``weights``); at least one pattern
        layer.
    settings, privacy
        See :class:`SearchSettings` and :class:`PrivacySettings` (the vote configuration sent to
        the clients); ``privacy.epsilon_split`` must name exactly the domains (``"patterns"`` and
        one ``"kernels:<layer>"`` per voted layer).
    schedule
        Density of each round's ticket.
    ticket_dir
        Folder where each round's ticket is saved (``ticket-round-0001.safetensors``, ...).
    initial_ticket
        Ticket before round 1 (e.g. from another run), or ``None``.
    prior
        Real ``(O, I)`` score per pattern layer from a data-free score at θ0 (ε = 0), which
        ranks the kernels no vote chooses; ``None``: the magnitude the assigned pattern keeps.
    """

    def __init__(
        self,
        *,
        weights: Mapping[str, torch.Tensor],
        policies: Mapping[str, LayerPolicy | str],
        settings: SearchSettings,
        privacy: PrivacySettings,
        schedule: DensitySchedule,
        ticket_dir: str | os.PathLike[str],
        initial_ticket: Ticket | None = None,
        prior: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        for name, value, kind in (
            ("settings", settings, SearchSettings),
            ("privacy", privacy, PrivacySettings),
            ("schedule", schedule, DensitySchedule),
        ):
            if not isinstance(value, kind):
                raise StrategyError(f"{name} must be a {kind.__name__}. Found {type(value).__name__}.")
        self._weights, self._policies = _checked_layers(weights, policies)
        self._shapes = {name: tuple(tensor.shape) for name, tensor in self._weights.items()}
        self._settings, self._privacy, self._schedule = settings, privacy, schedule
        check_split(domain_names(self._policies, settings), privacy)
        build_domains(shapes=self._shapes, policies=self._policies, settings=settings, density=schedule.start)
        if prior is not None:
            missing = [n for n, p in self._policies.items() if p is LayerPolicy.PATTERN and n not in prior]
            wrong = [n for n in prior if n in self._shapes and tuple(prior[n].shape) != self._shapes[n][:2]]
            if missing or wrong:
                raise StrategyError(f"prior must give an (O, I) score per pattern layer. Missing {missing}, wrong shape {wrong}.")
        self._prior = None if prior is None else {name: value.detach().clone() for name, value in prior.items()}
        self._ticket_dir = Path(ticket_dir)
        self._ticket_dir.mkdir(parents=True, exist_ok=True)
        if initial_ticket is not None:
            if not isinstance(initial_ticket, Ticket):
                raise StrategyError(f"initial_ticket must be a Ticket. Found {type(initial_ticket).__name__}.")
            initial_ticket.validate_against(self._shapes)
        self._ticket = initial_ticket
        self._ticket_path: Path | None = None
        self._round = 0
        self._sampler = NodeSampler(settings=settings)
        self._pending: RoundPlan | None = None
        self._last_attempt: dict[int, int] = {}
        self._evidence: dict[str, Evidence] = {}  # per domain, the votes of the rounds asking the same question

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
    def schedule(self) -> DensitySchedule:
        """The density schedule."""
        return self._schedule

    @property
    def settings(self) -> SearchSettings:
        """The search settings (sampling, library, kernel votes)."""
        return self._settings

    @property
    def privacy(self) -> PrivacySettings:
        """The privacy settings of the votes (split, mechanisms, ε per round)."""
        return self._privacy

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each ticket layer's weight."""
        return dict(self._shapes)

    @property
    def identities(self) -> dict[int, str]:
        """Node id -> client id of every node identified so far (node ids without identification)."""
        return self._sampler.identities

    @property
    def pending(self) -> RoundPlan | None:
        """The attempt whose messages were built and whose replies are not collected yet."""
        return self._pending

    def skip_attempts(self, server_round: int, used: Iterable[int]) -> None:
        """Never reuse the attempt numbers ``used`` of ``server_round`` (e.g. by an earlier process)."""
        self._last_attempt[server_round] = max(self._last_attempt.get(server_round, -1), *used, -1)

    # -- Flower hooks ------------------------------------------------------------------------

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample clients and build the round's messages (message type ``"train.vote"``).

        Raises
        ------
        SearchStopped
            If fewer nodes than ``min_replies`` are connected.
        """
        if server_round != self._round + 1:
            raise StrategyError(f"server_round must be {self._round + 1} (next round). Found {server_round}.")
        density = self._schedule.density(server_round)
        domains = build_domains(shapes=self._shapes, policies=self._policies, settings=self._settings, density=density)
        nodes = self._sampler.sample(grid, server_round=server_round)
        identities = self._sampler.identities
        attempt = self._last_attempt.get(server_round, -1) + 1
        self._last_attempt[server_round] = attempt
        self._pending = RoundPlan(server_round=server_round, attempt=attempt, density=density, nodes=nodes,
                                  participants=tuple(client_id(n, identities) for n in nodes), domains=domains)
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

    def collect(self, server_round: int, replies: Iterable[Message]) -> RoundVotes:
        """Validate the replies of the pending attempt (DESIGN.md 5.3); no vote is used yet."""
        plan = self._pending
        if plan is None or plan.server_round != server_round:
            raise StrategyError(f"aggregate_train must follow configure_train of round {server_round}.")
        self._pending = None
        collection = collect_votes(replies, domains=plan.domains, server_round=server_round,
                                   expected_nodes=plan.nodes, identities=self._sampler.identities)
        return RoundVotes(plan=plan, collection=collection,
                          enough=len(collection.participants) >= self._settings.min_replies)

    def conclude(
        self, votes: RoundVotes, *, releaser: Releaser | None = None, epsilon_spent: Mapping[str, float] | None = None
    ) -> tuple[ArrayRecord | None, dict[str, int | float]]:
        """Use the votes: the winners of every domain (``releaser``), then the next ticket, saved.

        Without enough participants the ticket is kept and no vote is read. ``releaser`` defaults
        to the plain top-K of the tally, refused when ``privacy`` asks for central noise;
        ``epsilon_spent`` goes into the ticket's metadata.
        """
        plan = votes.plan
        if plan.server_round != self._round + 1:
            raise StrategyError(f"votes must answer round {self._round + 1}. Found round {plan.server_round}.")
        metrics = reply_metrics(votes)
        if not votes.enough:
            log(INFO, "aggregate_train: round %s has %s replies < min_replies %s; ticket kept",
                plan.server_round, len(votes.collection.participants), self._settings.min_replies)
            return None, metrics
        release = self._plain_release if releaser is None else releaser
        releases = {domain.name: release(domain, votes.collection.votes[domain.name]) for domain in plan.domains}
        combined: dict[str, DomainRelease] = {}
        for domain in plan.domains:  # the evidence of earlier rounds that asked the same question
            self._evidence[domain.name], combined[domain.name] = accumulate(
                self._evidence.get(domain.name), releases[domain.name], size=domain.size)
        metadata = TicketMetadata(config_hash=self._settings.config_hash, epsilon_spent=dict(epsilon_spent or {}),
                                  round=plan.server_round)
        ticket = build_next_ticket(releases=combined, weights=self._weights, policies=self._policies,
                                   settings=self._settings, density=plan.density, metadata=metadata,
                                   prior=self._prior)
        path = self._ticket_dir / f"ticket-round-{plan.server_round:04d}.safetensors"
        ticket.save(path)
        change = ticket_change(ticket, self._ticket)
        self._ticket, self._ticket_path, self._round = ticket, path, plan.server_round
        metrics.update(release_metrics(releases, change))
        if self._prior is not None and any(name != PATTERNS_DOMAIN for name in combined):
            # What the kernel votes bought: the kernels kept that the free prior, with the same library, would not keep.
            free = build_next_ticket(releases={PATTERNS_DOMAIN: combined[PATTERNS_DOMAIN]}, weights=self._weights,
                                     policies=self._policies, settings=self._settings, density=plan.density,
                                     metadata=metadata, prior=self._prior)
            moved = kernels_moved(ticket, free)
            metrics.update({f"kernels-moved.{name}": count for name, count in moved.items()})
            metrics["kernels-moved"] = sum(moved.values())
            metrics["kernels-kept"] = sum(int(layer.connectivity.sum()) for layer in ticket.layers.values()
                                          if layer.connectivity is not None)
        return ticket_record(ticket), metrics

    def _plain_release(self, domain: VoteDomain, votes: Sequence[np.ndarray]) -> DomainRelease:
        if self._privacy.central:
            raise StrategyError(f"releaser must draw the central noise {self._privacy.central_noise!r}"
                                " (wrap the search in a PrivacyGate). Found None.")
        return release_domain(votes, domain, central_noise=NO_CENTRAL_NOISE, epsilon=None, rng=None)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord]:
        """:meth:`collect` then :meth:`conclude`; the new ticket's arrays (or ``None``) and metrics."""
        arrays, metrics = self.conclude(self.collect(server_round, replies))
        return arrays, MetricRecord(metrics)

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

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state for a checkpoint: round, ticket file, sampling generator, each domain's evidence."""
        return {
            "schema": STATE_SCHEMA,
            "round": self._round,
            "ticket-path": None if self._ticket_path is None else str(self._ticket_path),
            "sampling-rng": self._sampler.rng_state(),
            "evidence": {name: evidence.to_json() for name, evidence in self._evidence.items()},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (the ticket is read from its file and checked against the model)."""
        completed, path = _checked_state(state)
        ticket = None
        if path is not None:
            ticket = Ticket.load(path, shapes=self._shapes)
            if ticket.metadata.round != completed:
                raise StrategyError(f"ticket round must be {completed} as in the state. Found {ticket.metadata.round}.")
        elif completed != 0:
            raise StrategyError(f"ticket-path must be set for a state at round {completed}. Found None.")
        self._sampler.load_rng_state(state["sampling-rng"])
        evidence = state.get("evidence", {})  # schema 1 kept none: a resumed search then starts it afresh
        if not isinstance(evidence, Mapping):
            raise StrategyError(f"state evidence must be a mapping domain -> evidence. Found {type(evidence).__name__}.")
        self._evidence = {str(name): Evidence.from_json(entry) for name, entry in evidence.items()}
        self._round, self._pending = completed, None
        self._ticket = ticket if ticket is not None else self._ticket
        self._ticket_path = None if path is None else Path(path)
