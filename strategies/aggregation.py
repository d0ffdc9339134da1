"""From clean votes to the next ticket: pure functions, no Flower, no state.

votes -> histogram (:func:`privacy.tally_votes`: each vote adds 1 to at most ``c`` counts) ->
winners (central noisy top-K, client-level unit, or plain top-K of the histogram of already
private votes) -> next :class:`kernels.Ticket` by post-processing -> Jaccard against the last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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

__all__ = ["DomainRelease", "build_next_ticket", "plain_topk", "release_domain", "ticket_change"]


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
    """

    domain: str = field(metadata={"help": "domain name"})
    winners: np.ndarray = field(metadata={"help": "winning indices, ascending"})
    num_voters: int = field(metadata={"help": "clean votes counted"})
    spec: MechanismSpec | None = field(metadata={"help": "central release spec or None"})
    diagnostic: NoiseDiagnostic | None = field(metadata={"help": "signal-to-noise of the central release"})

    def __post_init__(self) -> None:
        winners = np.sort(np.asarray(self.winners, dtype=np.int64))
        winners.setflags(write=False)
        object.__setattr__(self, "winners", winners)


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
            spec=None, diagnostic=None,
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
    keeps exactly its winners, another pattern layer keeps the kernels of highest ``prior`` score
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
            if domain in releases:
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


def ticket_change(new: Ticket, previous: Ticket | None) -> float | None:
    """Jaccard index of the kept weights of ``new`` and ``previous`` (``None`` without one)."""
    return None if previous is None else new.jaccard(previous)
