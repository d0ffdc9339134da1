"""The client's vote: what it releases, how it is calibrated, and what it refuses to answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from federation.config import Config
from federation.model_io import build_model, ticket_policies
from federation.voting import VoteError, VoteRequest, build_votes
from models.scores import ClipMode, Domain, ScoreRequest, get
from kernels import enumerate_candidates
from models import prunable_layers
from strategies import PrivacySettings, SearchSettings, build_domains, keys, round_config_record


def _weight_shapes(model, policies) -> dict[str, tuple[int, ...]]:
    return {name: tuple(layer.weight.shape) for name, layer in prunable_layers(model).items() if name in policies}


def _request(*, epsilon: float = 1.0, min_examples: int = 64, kernel_layers: tuple[str, ...] = (),
             score_source: str = "record", density: float = 0.2) -> VoteRequest:
    model = build_model(Config(), seed=0)
    policies = ticket_policies(model)
    shapes = _weight_shapes(model, policies)
    split = {"patterns": 1.0} if not kernel_layers else {
        "patterns": 0.5, **{f"kernels:{layer}": 0.5 / len(kernel_layers) for layer in kernel_layers}}
    privacy = PrivacySettings(epsilon_split=split, record_epsilon=epsilon, min_examples=min_examples,
                              score_source=score_source)
    settings = SearchSettings(kernel_vote_layers=kernel_layers)
    domains = build_domains(shapes=shapes, policies=policies, settings=settings, density=density)
    record = round_config_record(domains=domains, privacy=privacy, settings=settings, server_round=3, attempt=0,
                                 density=density)
    return VoteRequest.from_record(dict(record))


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def _votes(request: VoteRequest, *, n: int = 200, score: str = "snip", seed: int = 0):
    model = build_model(Config(), seed=0)
    data = _data(n) if get(score).data_dependent else None
    return build_votes(
        model, request, score=score, policies=ticket_policies(model), masks={}, data=data,
        rng=np.random.default_rng(seed), generator=torch.Generator().manual_seed(seed),
    )


def test_votes_are_index_arrays_of_the_configured_size_only():
    request = _request(kernel_layers=("conv2",))
    votes, metrics = _votes(request)
    assert set(votes) == {"patterns", "kernels:conv2"}
    for domain in request.domains:
        vote = votes[domain.name]
        assert vote.dtype == np.int64 and vote.ndim == 1 and vote.size == domain.max_entries
        assert np.unique(vote).size == vote.size and vote.min() >= 0 and vote.max() < domain.size
    assert set(metrics) == {"scored-examples"}  # the public n only: never scores, nor timings (W1)
    assert metrics["scored-examples"] == request.min_examples


def test_infinite_epsilon_releases_the_exact_top_k_of_the_scores():
    request = _request(epsilon=math.inf, min_examples=200)
    votes, _ = _votes(request, n=200)  # n == min-examples: the subset is every example (a permutation)
    model = build_model(Config(), seed=0)
    result = get("snip").score(model, ScoreRequest(
        domains={Domain.PATTERNS}, policies=ticket_policies(model),
        candidates=enumerate_candidates(4, centre_fixed=True), clip_mode=ClipMode.NORMALISE, density=0.2,
    ), _data(200))
    expected = np.sort(np.argsort(-result.pooled_patterns.numpy(), kind="stable")[: request.domains[0].max_entries])
    assert np.array_equal(votes["patterns"], expected)


def test_noise_makes_small_epsilon_votes_differ_between_draws():
    request = _request(epsilon=1e-3)
    draws = {tuple(_votes(request, seed=seed)[0]["patterns"]) for seed in range(6)}
    assert len(draws) > 1


def test_data_free_scores_need_no_examples_and_add_no_noise():
    request = _request(score_source="data-free")
    first = _votes(request, score="magnitude", seed=0)[0]["patterns"]
    second = _votes(request, score="magnitude", seed=1)[0]["patterns"]
    assert np.array_equal(first, second)


def test_a_client_with_too_few_examples_abstains():
    request = _request(min_examples=64)
    with pytest.raises(VoteError, match="fewer than min-examples = 64: it abstains"):
        _votes(request, n=63)


def test_a_scorer_that_does_not_match_the_score_source_is_refused():
    with pytest.raises(VoteError, match="does not match the scorer"):
        _votes(_request(score_source="data-free"), score="snip")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (keys.MECHANISM_FIELD, "exponential", "mechanism must be one of \\['laplace-topk', 'gumbel-topk', 'gaussian-topk'\\]"),
        # The Gaussian vote's Δ₂ = √2·C/n is an L2 figure: under a per-coordinate bound it would not hold.
        (keys.MECHANISM_FIELD, "gaussian-topk", "clip-mode must be one of \\['l2'\\] with mechanism 'gaussian-topk'"),
        (keys.domain_field("patterns", keys.DOMAIN_EPSILON_FIELD), 0.0, "epsilon of domain 'patterns' must be > 0"),
        (keys.DOMAINS_FIELD, "patterns", "must be <class 'list'>"),
        (keys.CLIP_MODE_FIELD, "clamp", "clip-mode must be one of \\['clip', 'normalise'\\]"),
        (keys.CLIP_MODE_FIELD, "l2", "clip-mode must be one of \\['clip', 'normalise'\\]"),
    ],
)
def test_a_vote_config_that_would_release_something_else_is_refused(field, value, message):
    request = _request()
    model = build_model(Config(), seed=0)
    policies = ticket_policies(model)
    shapes = _weight_shapes(model, policies)
    settings = SearchSettings()
    privacy = PrivacySettings(epsilon_split={"patterns": 1.0}, min_examples=request.min_examples)
    record = dict(round_config_record(
        domains=build_domains(shapes=shapes, policies=policies, settings=settings, density=0.2), privacy=privacy,
        settings=settings, server_round=1, attempt=0, density=0.2,
    ))
    record[field] = value
    with pytest.raises(VoteError, match=message):
        VoteRequest.from_record(record)


def test_normalised_scores_refuse_a_clip_bound_other_than_one():
    request = _request()
    bad = VoteRequest(**{**request.__dict__, "clip_bound": 2.0, "sensitivity": 2.0 / request.min_examples})
    with pytest.raises(VoteError, match="clip-bound must be 1 with clip-mode normalise"):
        _votes(bad)


def test_the_vote_bounds_scores_as_its_own_record_says_not_as_a_second_source():
    request = _request()
    clipped = VoteRequest(**{**request.__dict__, "clip_mode": "clip", "clip_bound": 0.5,
                             "sensitivity": 0.5 / request.min_examples})
    votes, metrics = _votes(clipped)  # clamped to [0, 0.5]: the scores' Δ fits the planned 0.5 / n
    assert set(votes) == {d.name for d in clipped.domains}
    assert metrics["scored-examples"] == request.min_examples
