"""From clean votes to the next ticket: pure functions, no Flower, no state.

votes -> histogram (:func:`privacy.tally_votes`: each vote adds 1 to at most ``c`` counts) ->
winners (central noisy top-K, client-level unit, or plain top-K of the histogram of already
private votes) -> next :class:`kernels.Ticket` by post-processing -> Jaccard against the last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import torch

from kernels import (
    LayerPolicy,
    Ticket,
    TicketMetadata,
    build_ticket,
    enumerate_candidates,
    pattern_energy,
)
from privacy import MechanismSpec, NoiseDiagnostic, histogram_diagnostic, noisy_topk_histogram, tally_votes
from strategies.domains import PATTERNS_DOMAIN, VoteDomain, kernel_domain_name, layer_densities
from strategies.errors import StrategyError
from strategies.settings import NO_CENTRAL_NOISE, SearchSettings

__all__ = ["DomainRelease", "Evidence", "accumulate", "build_next_ticket", "agreement_threshold", "kernels_moved", "plain_topk", "refine_prior", "release_domain", "ticket_change"]


@dataclass(frozen=True, kw_only=True)
class DomainRelease:
    """The server's decision for one domain.

    Parameters
    ----------
    domain
        Domain name.
    winners
        Read-only int64 indices of the ``K`` winners, sorted ascending.
    num_voters
        Clean votes counted.
    spec
        The central release's spec (client unit), ``None`` without central noise.
    diagnostic
        Signal (``num_voters``) against central noise scale; ``None`` without central noise or
        without voters.
    counts
        The histogram of the (already record-level private) votes, without central noise only;
        ``None`` under central noise, whose exact counts never leave :func:`release_domain`.
    """

    domain: str = field(metadata={"help": "domain name"})
    winners: np.ndarray = field(metadata={"help": "winning indices, ascending"})
    num_voters: int = field(metadata={"help": "clean votes counted"})
    spec: MechanismSpec | None = field(metadata={"help": "central release spec or None"})
    diagnostic: NoiseDiagnostic | None = field(metadata={"help": "signal-to-noise of the central release"})
    counts: np.ndarray | None = field(default=None, metadata={"help": "vote histogram, without central noise only"})

    def __post_init__(self) -> None:
        winners = np.sort(np.asarray(self.winners, dtype=np.int64))
        winners.setflags(write=False)
        object.__setattr__(self, "winners", winners)
        if self.counts is not None:
            counts = np.asarray(self.counts, dtype=np.int64).copy()
            counts.setflags(write=False)
            object.__setattr__(self, "counts", counts)


def plain_topk(counts: np.ndarray, top_k: int) -> np.ndarray:
    """Indices of the ``top_k`` largest counts, ties to the lower index, sorted ascending.

    Deterministic post-processing of a histogram of already differentially private votes.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or not 1 <= top_k <= counts.size:
        raise StrategyError(f"top_k must be in [1, {counts.size}] for 1-D counts. Found {top_k}.")
    order = np.argsort(-counts, kind="stable")  # stable: the lower index first among equals
    return np.sort(order[:top_k]).astype(np.int64)


def release_domain(
    votes: Sequence[np.ndarray],
    domain: VoteDomain,
    *,
    central_noise: str,
    epsilon: float | None,
    rng: np.random.Generator | None,
) -> DomainRelease:
    """Winners of one domain.

    The histogram counts, per index, the votes holding it; a vote adds at most ``c =
    domain.max_entries`` (:func:`privacy.tally_votes` refuses anything else). With central noise
    (``"laplace"`` or ``"discrete-laplace"``) the winners are :func:`privacy.noisy_topk_histogram`
    with ``K``, ``c`` and ``epsilon`` (client-level ε-DP; the caller charged it before this call);
    otherwise the plain top-K of the histogram. Exact counts never leave this function.
    """
    counts = tally_votes(list(votes), domain_size=domain.size, max_entries=domain.max_entries)
    if central_noise == NO_CENTRAL_NOISE:
        return DomainRelease(
            domain=domain.name, winners=plain_topk(counts, domain.top_k), num_voters=len(votes),
            spec=None, diagnostic=None, counts=counts,
        )
    if epsilon is None or rng is None:
        raise StrategyError("epsilon and rng must be given with central noise. Found None.")
    release = noisy_topk_histogram(
        counts, top_k=domain.top_k, max_entries=domain.max_entries, epsilon=epsilon, rng=rng, noise=central_noise
    )
    diagnostic = histogram_diagnostic(release.spec, num_voters=len(votes)) if votes else None
    return DomainRelease(
        domain=domain.name, winners=release.winners, num_voters=len(votes), spec=release.spec, diagnostic=diagnostic
    )


CHANCE_AGREEMENT: Final = 0.05
"""The probability, under votes that carry no signal, that any kernel of a layer reaches the
agreement threshold of :func:`refine_prior` (so moves the prior)."""


def agreement_threshold(*, voters: int, keep: int, size: int) -> int:
    """Votes a kernel outside the prior needs to join it: the smallest count above half the
    ``voters`` whose chance under no signal, ``P(Binomial(voters, keep/size) >= count)``, is at
    most ``CHANCE_AGREEMENT / size``; ``voters + 1`` (never) when no count is that unlikely."""
    from scipy.stats import binom

    if voters < 1:
        return 1
    for count in range(voters // 2 + 1, voters + 1):
        if float(binom.sf(count - 1, voters, keep / size)) <= CHANCE_AGREEMENT / size:
            return count
    return voters + 1


def refine_prior(prior: torch.Tensor, release: DomainRelease) -> torch.Tensor:
    """Kernel scores of one layer: the free prior's ranking, moved only where a majority of voters agree.

    The prior (a data-free score at θ0, ε = 0) keeps its ``K = len(release.winners)`` best kernels.
    A kernel outside them replaces the weakest kept one (fewest votes, then lowest prior) only if
    it has more votes than that one and at least :func:`agreement_threshold` votes: more than half
    the round's voters, and a count that votes carrying no signal (each voter a uniform random
    ``K``-subset of the ``D`` kernels) reach for any of the layer's kernels with probability below
    :data:`CHANCE_AGREEMENT` (binomial tail, Bonferroni over ``D``). Votes without signal so leave
    the prior as it is, and a DP ticket is the free one unless the data say otherwise (DESIGN.md 3,
    "free prior, private refinement"). Post-processing of the released votes: no privacy cost.
    Without the histogram (central noise) the released winners are used as they are.

    Returns scores of ``prior``'s shape whose top ``K`` are the refined set (ties and the other
    kernels ordered by the prior, for the connectivity repair).
    """
    flat = prior.detach().to(torch.float64).reshape(-1)
    keep = int(release.winners.size)
    order = torch.argsort(-flat, stable=True)  # the prior's ranking, best first
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    base = 1.0 - (rank.to(torch.float64) + 1.0) / (order.numel() + 1.0)  # in (0, 1), the prior's order
    if release.counts is None:
        chosen = torch.from_numpy(release.winners.copy())
    else:
        counts = torch.from_numpy(release.counts.copy())
        majority = agreement_threshold(voters=release.num_voters, keep=keep, size=order.numel())
        kept = order[:keep].tolist()
        outside = [i for i in order[keep:].tolist() if int(counts[i]) >= majority]
        outside.sort(key=lambda i: -int(counts[i]))  # stable: the prior's order among equals
        kept.sort(key=lambda i: (int(counts[i]), -int(rank[i])))  # weakest first: fewest votes, then lowest prior
        for position, candidate in enumerate(outside[:keep]):
            if int(counts[candidate]) > int(counts[kept[position]]):
                kept[position] = candidate
            else:
                break
        chosen = torch.tensor(sorted(kept), dtype=torch.int64)
    scores = base.clone()
    scores[chosen] += 1.0
    return scores.reshape(prior.shape)


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """The votes one domain has gathered over the rounds that asked the same question.

    ``counts`` is the running sum of the rounds' vote histograms (or, under central noise, of
    their released winners, since the exact counts never leave :func:`release_domain`), and
    ``voters`` the running number of votes; ``top_k`` and the size of ``counts`` say which
    question it answers (a round of another K or size starts afresh). Post-processing of
    releases already charged: no privacy cost.
    """

    counts: np.ndarray = field(metadata={"help": "running vote histogram (int64)"})
    voters: int = field(metadata={"help": "running number of votes"})
    top_k: int = field(metadata={"help": "K of the rounds summed"})
    from_counts: bool = field(metadata={"help": "summed histograms (True) or released winners (False)"})

    def to_json(self) -> dict[str, object]:
        """JSON-safe form, for the search's checkpoint."""
        return {"counts": self.counts.astype(int).tolist(), "voters": self.voters, "top-k": self.top_k,
                "from-counts": self.from_counts}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Evidence:
        """Read :meth:`to_json`; a malformed entry raises :class:`StrategyError`."""
        try:
            counts = np.asarray(data["counts"], dtype=np.int64)
            voters, top_k, from_counts = int(data["voters"]), int(data["top-k"]), bool(data["from-counts"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as err:
            raise StrategyError(f"evidence in the search state must hold counts, voters, top-k, from-counts. Found {data!r}.") from err
        if counts.ndim != 1 or (counts < 0).any() or voters < 0 or not 1 <= top_k <= counts.size:
            raise StrategyError(f"evidence in the search state is inconsistent: {data!r}.")
        return cls(counts=counts, voters=voters, top_k=top_k, from_counts=from_counts)


def accumulate(previous: Evidence | None, release: DomainRelease, *, size: int) -> tuple[Evidence, DomainRelease]:
    """Add one round's release of a domain to its evidence; the release the next ticket is built from.

    A round of the same question (same K and domain size, e.g. the pattern library every round,
    a layer's kernels in the hold rounds) adds its histogram to the previous rounds', and the
    winners are the top K of the sum: the noise of independent rounds averages out and the
    ticket settles (the hold phase converges) instead of redrawing its noise every round.
    """
    top_k = int(release.winners.size)
    if release.counts is not None:
        evidence, from_counts = np.asarray(release.counts, dtype=np.int64), True
    else:
        evidence, from_counts = np.zeros(size, dtype=np.int64), False
        evidence[release.winners] = 1
    same = (previous is not None and previous.top_k == top_k and previous.counts.size == size
            and previous.from_counts == from_counts)
    if same:
        assert previous is not None
        evidence, voters = previous.counts + evidence, previous.voters + release.num_voters
    else:
        voters = release.num_voters
    summed = Evidence(counts=evidence, voters=voters, top_k=top_k, from_counts=from_counts)
    combined = DomainRelease(
        domain=release.domain, winners=plain_topk(evidence, top_k) if same else release.winners,
        num_voters=voters if from_counts else release.num_voters, spec=release.spec, diagnostic=release.diagnostic,
        counts=evidence if from_counts else None,
    )
    return summed, combined


def build_next_ticket(
    *,
    releases: Mapping[str, DomainRelease],
    weights: Mapping[str, torch.Tensor],
    policies: Mapping[str, LayerPolicy | str],
    settings: SearchSettings,
    density: float,
    metadata: TicketMetadata,
    prior: Mapping[str, torch.Tensor] | None = None,
) -> Ticket:
    """The next ticket, by post-processing of the releases and of the public weights only.

    Post-processing costs no privacy (Dwork & Roth 2014, Proposition 2.1): the library is the
    candidates that won the ``patterns`` domain; each kept kernel gets the library pattern of
    largest energy ``w ** 2`` of the *public* weights; a layer with a ``kernels:<layer>`` domain
    keeps the ``prior``'s kernels refined by its votes (:func:`refine_prior`), or without a prior
    exactly its winners; another pattern layer keeps the kernels of highest ``prior`` score
    (a data-free score at θ0, e.g. SynFlow's) or, without one, those whose assigned pattern
    keeps the most energy (magnitude connectivity, ``settings.scope``); unstructured layers keep
    their largest ``|w|``; dense layers stay dense. Per-layer densities follow
    ``settings.allocation`` (:func:`strategies.domains.layer_densities`); with
    ``settings.connected`` the kernels are re-chosen so that the ticket keeps input->output paths.
    """
    if PATTERNS_DOMAIN not in releases:
        raise StrategyError(f"releases must hold the {PATTERNS_DOMAIN!r} domain. Found {sorted(releases)}.")
    candidates = enumerate_candidates(settings.pattern_entries, centre_fixed=settings.centre_fixed)
    library = candidates[torch.from_numpy(releases[PATTERNS_DOMAIN].winners.copy())]
    resolved = {name: LayerPolicy(policy) for name, policy in policies.items()}
    patterned = [name for name, policy in resolved.items() if policy is LayerPolicy.PATTERN]
    public = {name: weights[name].detach().to("cpu", torch.float32) for name in resolved}
    energy = {name: public[name] ** 2 for name in patterned}
    kernel_scores: dict[str, torch.Tensor] | None = None
    if prior is not None:  # a data-free score at θ0 ranks the kernels no vote chose (ε = 0)
        kernel_scores = {name: prior[name].to(torch.float64) for name in patterned}
    if settings.kernel_vote_layers:
        kernel_scores = {}
        for name in patterned:
            domain = kernel_domain_name(name)
            if domain in releases and prior is not None:  # the prior, refined where the voters agree
                kernel_scores[name] = refine_prior(prior[name], releases[domain])
            elif prior is not None:
                kernel_scores[name] = prior[name].to(torch.float64)
            elif domain in releases:
                out_channels, in_channels = public[name].shape[:2]
                chosen = torch.zeros(out_channels * in_channels, dtype=torch.float32)
                chosen[torch.from_numpy(releases[domain].winners.copy())] = 1.0
                kernel_scores[name] = chosen.reshape(out_channels, in_channels)
            elif prior is None:  # the energy the assigned (argmax) pattern keeps, as build_ticket does by default
                kernel_scores[name] = pattern_energy(energy[name], library).amax(dim=-1)
    weight_scores = {name: public[name].abs() for name, p in resolved.items() if p is LayerPolicy.UNSTRUCTURED}
    shapes = {name: tuple(public[name].shape) for name in resolved}
    return build_ticket(
        shapes=shapes,
        policies=resolved,
        library=library,
        energy=energy,
        kernel_scores=kernel_scores,
        weight_scores=weight_scores,
        density=layer_densities(shapes=shapes, policies=resolved, settings=settings, density=density),
        scope=settings.scope,  # type: ignore[arg-type]
        metadata=metadata,
        connected=settings.connected,
    )


def kernels_moved(ticket: Ticket, free: Ticket) -> dict[str, int]:
    """Per pattern layer, the kernels ``ticket`` keeps that ``free`` does not: what the kernel votes
    bought over the free prior (``free``: the ticket built from the same library without them).

    Both tickets keep the same number of kernels per layer, so this also counts the prior's
    kernels given up. Post-processing of released votes: no privacy cost.
    """
    moved: dict[str, int] = {}
    for name, layer in ticket.layers.items():
        if layer.connectivity is None:
            continue
        other = free.layers[name].connectivity
        if other is None or other.shape != layer.connectivity.shape:
            raise StrategyError(f"free must hold pattern layer {name!r} of shape {tuple(layer.connectivity.shape)}.")
        moved[name] = int((layer.connectivity & ~other).sum())
    return moved


def ticket_change(new: Ticket, previous: Ticket | None) -> float | None:
    """Jaccard index of the kept weights of ``new`` and ``previous`` (``None`` without one)."""
    return None if previous is None else new.jaccard(previous)
