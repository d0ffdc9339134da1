"""Clean votes -> histogram -> winners -> next ticket (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kernels import LayerPolicy, TicketMetadata, enumerate_candidates, kept_count, kernel_keep_fraction
from privacy import PrivacyError
from strategies import (
    DomainRelease,
    SearchSettings,
    VoteDomain,
    build_domains,
    build_next_ticket,
    plain_topk,
    release_domain,
    ticket_change,
)

PATTERNS = VoteDomain(name="patterns", size=56, top_k=8, max_entries=8, layer=None, layers=("conv1", "conv2"))
PLANTED = np.array([3, 10, 20, 30, 40, 50, 51, 55])


def _votes(num: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Votes that mostly name the planted patterns (6 of 8), the rest at random."""
    votes = []
    for _ in range(num):
        others = rng.choice(np.setdiff1d(np.arange(56), PLANTED), size=2, replace=False)
        votes.append(np.concatenate([rng.choice(PLANTED, size=6, replace=False), others]))
    return votes


def test_plain_topk_breaks_ties_towards_the_lower_index() -> None:
    assert plain_topk(np.array([1, 3, 3, 0, 3]), 2).tolist() == [1, 2]
    with pytest.raises(ValueError, match="top_k must be in"):
        plain_topk(np.array([1, 2]), 3)


def test_plain_release_selects_the_planted_library() -> None:
    release = release_domain(_votes(30, np.random.default_rng(0)), PATTERNS, central_noise="none", epsilon=None,
                             rng=None)
    assert release.winners.tolist() == PLANTED.tolist()
    assert release.spec is None and release.diagnostic is None and release.num_voters == 30


@pytest.mark.parametrize("noise", ["laplace", "discrete-laplace"])
def test_central_release_with_signal_finds_the_library(noise: str) -> None:
    release = release_domain(_votes(200, np.random.default_rng(1)), PATTERNS, central_noise=noise, epsilon=8.0,
                             rng=np.random.default_rng(2))
    assert release.winners.tolist() == PLANTED.tolist()
    assert release.spec is not None and release.spec.unit == "client"
    assert release.diagnostic is not None and not release.diagnostic.noise_dominated


def test_central_release_flags_noise_dominated_histograms() -> None:
    release = release_domain(_votes(3, np.random.default_rng(1)), PATTERNS, central_noise="laplace", epsilon=0.1,
                             rng=np.random.default_rng(2))
    assert release.diagnostic is not None and release.diagnostic.noise_dominated  # scale 80 vs 3 voters
    assert sorted(set(release.winners.tolist())) == release.winners.tolist() and release.winners.size == 8


def test_tally_refuses_an_unvalidated_vote_over_c() -> None:
    with pytest.raises(PrivacyError, match="at most 8 entries"):
        release_domain([np.arange(9)], PATTERNS, central_noise="none", epsilon=None, rng=None)


def test_next_ticket_is_post_processing_of_the_winners() -> None:
    generator = torch.Generator().manual_seed(0)
    weights = {
        "conv1": torch.randn(4, 2, 3, 3, generator=generator),
        "conv2": torch.randn(6, 4, 3, 3, generator=generator),
        "fc": torch.randn(10, 24, generator=generator),
    }
    policies = {"conv1": "pattern", "conv2": "pattern", "fc": "unstructured"}
    settings = SearchSettings(kernel_vote_layers=("conv2",))
    shapes = {name: tuple(w.shape) for name, w in weights.items()}
    density = 0.25
    domains = build_domains(shapes=shapes, policies=policies, settings=settings, density=density)
    kernel_winners = np.arange(domains[1].top_k) * 24 // domains[1].top_k  # spread over the layer
    releases = {
        "patterns": DomainRelease(domain="patterns", winners=PLANTED, num_voters=5, spec=None, diagnostic=None),
        "kernels:conv2": DomainRelease(domain="kernels:conv2", winners=kernel_winners, num_voters=5, spec=None,
                                       diagnostic=None),
    }
    ticket = build_next_ticket(releases=releases, weights=weights, policies=policies, settings=settings,
                               density=density, metadata=TicketMetadata(config_hash="h", round=1))
    library = enumerate_candidates(4)[torch.from_numpy(PLANTED)]
    conv1, conv2, fc = ticket.layers["conv1"], ticket.layers["conv2"], ticket.layers["fc"]
    assert torch.equal(conv1.library, library) and torch.equal(conv2.library, library)
    assert sorted(np.flatnonzero(conv2.connectivity.reshape(-1).numpy()).tolist()) == kernel_winners.tolist()
    assert conv1.kept_kernels == kept_count(kernel_keep_fraction(density, 4), 8)
    energies = torch.einsum("oirs,prs->oip", weights["conv1"] ** 2, library.float())
    assert torch.equal(conv1.assignment, energies.argmax(dim=-1))  # the public-weight energy argmax
    assert fc.policy is LayerPolicy.UNSTRUCTURED and fc.kept == kept_count(density, 240)
    kept_fc = weights["fc"].abs()[fc.unstructured_mask]
    assert kept_fc.min() >= weights["fc"].abs()[~fc.unstructured_mask].max()  # magnitude of public weights
    assert ticket_change(ticket, None) is None and ticket_change(ticket, ticket) == 1.0


def test_a_data_free_prior_ranks_the_kernels_no_vote_chose():
    import numpy as np
    import torch

    from kernels import TicketMetadata
    from strategies import SearchSettings
    from strategies.aggregation import DomainRelease, build_next_ticket

    generator = torch.Generator().manual_seed(0)
    weights = {"conv1": torch.randn(4, 1, 3, 3, generator=generator), "conv2": torch.randn(4, 4, 3, 3, generator=generator)}
    policies = {"conv1": "pattern", "conv2": "pattern"}
    releases = {"patterns": DomainRelease(domain="patterns", winners=np.arange(8), num_voters=0, spec=None,
                                          diagnostic=None)}
    # The prior favours conv2's kernels reading input channel 3, against their magnitude.
    prior = {"conv1": torch.arange(4.0).reshape(4, 1), "conv2": torch.zeros(4, 4)}
    prior["conv2"][:, 3] = 1.0
    ticket = build_next_ticket(releases=releases, weights=weights, policies=policies,
                               settings=SearchSettings(allocation="uniform"), density=1 / 9,
                               metadata=TicketMetadata(config_hash=""), prior=prior)
    conv1, conv2 = ticket.layers["conv1"].connectivity, ticket.layers["conv2"].connectivity
    assert conv1[:, 0].tolist() == [False, False, False, True]  # one kernel each 4: conv1's top-prior one
    # conv2 keeps 4 kernels: the prior's choice, which reads the channel conv1 keeps (connected).
    assert conv2[:, 3].all() and int(conv2.sum()) == 4 and ticket.kernel_paths() == 4.0


def _refinement_case(votes_of: str, *, connected: bool):
    """conv1 (8, 1) and conv2 (16, 8) at density 1/9 (K = 4 and 32 kernels); conv2's kernels are voted."""
    generator = torch.Generator().manual_seed(1)
    weights = {"conv1": torch.randn(8, 1, 3, 3, generator=generator), "conv2": torch.randn(16, 8, 3, 3, generator=generator)}
    policies = {"conv1": "pattern", "conv2": "pattern"}
    prior = {"conv1": torch.rand(8, 1, generator=generator), "conv2": torch.rand(16, 8, generator=generator)}
    settings = SearchSettings(allocation="uniform", connected=connected, kernel_vote_layers=("conv2",))
    domain = build_domains(shapes={n: tuple(w.shape) for n, w in weights.items()}, policies=policies,
                           settings=settings, density=1 / 9)[1]
    rng = np.random.default_rng(7)
    outside = np.argsort(-prior["conv2"].reshape(-1).numpy(), kind="stable")[domain.top_k:]
    planted = outside[:8]  # eight kernels the prior drops, which the data favour
    votes = []
    for _ in range(10):
        if votes_of == "noise":  # votes that carry no signal: every voter a uniform random K-subset
            votes.append(rng.choice(domain.size, size=domain.top_k, replace=False))
        else:  # honest votes that agree on the planted kernels, the rest of each vote at random
            rest = rng.choice(np.setdiff1d(np.arange(domain.size), planted), size=domain.top_k - 8, replace=False)
            votes.append(np.concatenate([planted, rest]))
    library = DomainRelease(domain="patterns", winners=np.arange(8), num_voters=10, spec=None, diagnostic=None)
    kernels = release_domain(votes, domain, central_noise="none", epsilon=None, rng=None)
    build = dict(weights=weights, policies=policies, density=1 / 9, metadata=TicketMetadata(config_hash=""), prior=prior)
    refined = build_next_ticket(releases={"patterns": library, domain.name: kernels}, settings=settings, **build)
    free = build_next_ticket(releases={"patterns": library}, settings=SearchSettings(allocation="uniform",
                             connected=connected), **build)
    return refined, free, planted, domain


@pytest.mark.parametrize("connected", [False, True])
def test_votes_that_carry_no_signal_leave_the_free_prior_as_it_is(connected):
    refined, free, _, _ = _refinement_case("noise", connected=connected)
    for name in ("conv1", "conv2"):
        assert torch.equal(refined.layers[name].connectivity, free.layers[name].connectivity), name


def test_honest_votes_refine_the_prior_at_the_target_sparsity_with_library_patterns():
    refined, free, planted, domain = _refinement_case("honest", connected=False)
    conv2, prior_conv2 = refined.layers["conv2"], free.layers["conv2"]
    assert int(conv2.connectivity.sum()) == int(prior_conv2.connectivity.sum()) == domain.top_k  # the same sparsity
    kept = set(np.flatnonzero(conv2.connectivity.reshape(-1).numpy()).tolist())
    assert set(planted.tolist()) <= kept  # every kernel the voters agree on joins the ticket ...
    assert len(kept - set(np.flatnonzero(prior_conv2.connectivity.reshape(-1).numpy()).tolist())) == 8  # ... only they
    library = conv2.library
    masks = conv2.mask()[conv2.connectivity]  # every kept kernel is one of the library's patterns
    assert all(any(torch.equal(mask, pattern) for pattern in library) for mask in masks)


def test_the_agreement_threshold_is_a_majority_that_chance_rarely_reaches():
    from scipy.stats import binom

    from strategies.aggregation import CHANCE_AGREEMENT, agreement_threshold

    # 10 voters, K = 92 of conv4's 4096 kernels (the main job at 98%): a majority is already unlikely.
    assert agreement_threshold(voters=10, keep=92, size=4096) == 6
    # K = 32 of 128: a majority happens by chance, so more agreement is asked for.
    threshold = agreement_threshold(voters=10, keep=32, size=128)
    assert threshold == 9 and binom.sf(threshold - 1, 10, 0.25) <= CHANCE_AGREEMENT / 128 < binom.sf(threshold - 2, 10, 0.25)
    assert agreement_threshold(voters=3, keep=32, size=128) == 4  # 3 voters cannot move this prior at all


def test_evidence_accumulates_over_rounds_that_ask_the_same_question():
    from strategies.aggregation import Evidence, accumulate

    domain = VoteDomain(name="patterns", size=6, top_k=2, max_entries=2, layer=None, layers=("conv1",))
    first = release_domain([np.array([0, 1]), np.array([0, 2])], domain, central_noise="none", epsilon=None, rng=None)
    evidence, combined = accumulate(None, first, size=6)
    assert combined.winners.tolist() == [0, 1] and evidence.voters == 2  # round one: its own winners
    second = release_domain([np.array([2, 3]), np.array([2, 4])], domain, central_noise="none", epsilon=None, rng=None)
    evidence, combined = accumulate(evidence, second, size=6)
    # The sum (2, 1, 3, 1, 1, 0) decides, not the last round alone (whose top 2 would be 2 and 3).
    assert evidence.counts.tolist() == [2, 1, 3, 1, 1, 0] and evidence.voters == 4
    assert combined.winners.tolist() == [0, 2] and combined.num_voters == 4
    # A round that asks another question (another K) starts afresh.
    wider = VoteDomain(name="patterns", size=6, top_k=3, max_entries=3, layer=None, layers=("conv1",))
    third = release_domain([np.array([3, 4, 5])], wider, central_noise="none", epsilon=None, rng=None)
    evidence, combined = accumulate(evidence, third, size=6)
    assert evidence.voters == 1 and combined.winners.tolist() == [3, 4, 5]
    restored = Evidence.from_json(evidence.to_json())  # what a checkpoint keeps for a resumed search
    assert np.array_equal(restored.counts, evidence.counts)
    assert (restored.voters, restored.top_k, restored.from_counts) == (evidence.voters, evidence.top_k, True)
    with pytest.raises(Exception, match="evidence in the search state"):
        Evidence.from_json({"counts": [1, 2], "voters": 1})


def test_the_hold_rounds_settle_when_the_evidence_is_summed():
    """Noisy votes around a planted library: summed over rounds, the winners stop changing."""
    from strategies.aggregation import accumulate

    rng = np.random.default_rng(3)
    others = np.setdiff1d(np.arange(56), PLANTED)
    evidence, winners, alone = None, [], []
    for _ in range(12):  # each vote: 3 of the 8 planted patterns, 5 of the 48 others (a weak signal)
        votes = [np.concatenate([rng.choice(PLANTED, 3, replace=False), rng.choice(others, 5, replace=False)])
                 for _ in range(10)]
        release = release_domain(votes, PATTERNS, central_noise="none", epsilon=None, rng=None)
        evidence, combined = accumulate(evidence, release, size=56)
        alone.append(set(release.winners.tolist()))
        winners.append(set(combined.winners.tolist()))
    planted = set(PLANTED.tolist())
    assert sum(w == planted for w in alone) <= 2  # one round's votes alone rarely find the library ...
    assert winners[-1] == winners[-2] == winners[-3] == planted  # ... their sum finds it and stays
