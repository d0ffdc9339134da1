"""One round attempt of the search as data: what was sent (:class:`RoundPlan`), what came back
(:class:`RoundVotes`), the metrics both give, and the hook that turns votes into winners
(:data:`Releaser`). No Flower hooks, no privacy accounting."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from privacy import RejectReason
from strategies.aggregation import DomainRelease
from strategies.domains import VoteDomain
from strategies.votes import ReplyIssue, VoteCollection

__all__ = ["Releaser", "RoundPlan", "RoundVotes", "release_metrics", "reply_metrics"]

Releaser = Callable[[VoteDomain, Sequence[np.ndarray]], DomainRelease]
"""Turns one domain's clean votes into its winners (tally, then a top-K selection)."""


@dataclass(frozen=True, kw_only=True)
class RoundPlan:
    """A round attempt whose messages were built.

    Parameters
    ----------
    server_round, attempt
        The round and its attempt number (attempt numbers of a round are never reused).
    density
        The round's ticket density (the schedule's).
    nodes
        Sampled node ids, sorted.
    participants
        The client ids the sampled nodes are charged under, aligned with ``nodes``.
    domains
        The round's vote domains.
    """

    server_round: int = field(metadata={"help": "round"})
    attempt: int = field(metadata={"help": "attempt number within the round"})
    density: float = field(metadata={"help": "ticket density of the round"})
    nodes: tuple[int, ...] = field(metadata={"help": "sampled node ids"})
    participants: tuple[str, ...] = field(metadata={"help": "client ids of the sampled nodes"})
    domains: tuple[VoteDomain, ...] = field(metadata={"help": "vote domains"})


@dataclass(frozen=True, kw_only=True)
class RoundVotes:
    """A round attempt's validated replies, not yet used.

    Parameters
    ----------
    plan
        The attempt they answer.
    collection
        The validated votes (:func:`strategies.collect_votes`).
    enough
        Whether at least ``min_replies`` clients replied (else the ticket is kept and the
        round's votes are never read).
    """

    plan: RoundPlan = field(metadata={"help": "the attempt answered"})
    collection: VoteCollection = field(metadata={"help": "validated votes"})
    enough: bool = field(metadata={"help": "at least min_replies participants"})


def reply_metrics(votes: RoundVotes) -> dict[str, int | float]:
    """The attempt's counts: sample, replies, failures, policy refusals, participants, every rejection reason."""
    plan, collection = votes.plan, votes.collection
    metrics: dict[str, int | float] = {
        "round": plan.server_round,
        "attempt": plan.attempt,
        "density": plan.density,
        "sampled": len(plan.nodes),
        "replies": collection.replies,
        "failed": collection.failed,
        "refused": int(sum(collection.refused.values())),
        "participants": len(collection.participants),
        "ticket-updated": 0,
    }
    for reason in [*(r.value for r in RejectReason), *(i.value for i in ReplyIssue)]:
        metrics[f"rejected.{reason}"] = int(collection.problems.get(reason, 0))
    metrics["rejected"] = int(sum(collection.problems.values()))
    for rule, count in collection.refused.items():  # by the device's rule (DESIGN.md 5.4b)
        metrics[f"refused.{rule}"] = int(count)
    return metrics


def release_metrics(releases: Mapping[str, DomainRelease], change: float | None) -> dict[str, int | float]:
    """Metrics of a built ticket: Jaccard change, voters and central signal-to-noise per domain."""
    metrics: dict[str, int | float] = {"ticket-updated": 1}
    if change is not None:
        metrics["jaccard"] = change
    dominated = 0
    for name, release in releases.items():
        metrics[f"voters.{name}"] = release.num_voters
        if release.diagnostic is not None:
            metrics[f"snr-central.{name}"] = release.diagnostic.ratio
            metrics[f"noise-dominated.{name}"] = int(release.diagnostic.noise_dominated)
            dominated += int(release.diagnostic.noise_dominated)
    metrics["noise-dominated"] = dominated
    return metrics
