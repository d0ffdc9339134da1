"""Vote tally (sensitivity enforced) and the central noisy top-K."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privacy import NOISE_KINDS, PrivacyError, draw_noisy_histogram, noisy_topk_histogram, tally_votes


def test_tally_counts_each_index_once_per_vote() -> None:
    votes = [np.array([0, 3]), np.array([3]), np.array([], dtype=np.int64), [1, 3]]
    counts = tally_votes(votes, domain_size=5, max_entries=2)  # type: ignore[arg-type]
    assert counts.tolist() == [1, 1, 0, 3, 0] and counts.dtype == np.int64
    assert tally_votes([], domain_size=3, max_entries=1).tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("votes", "match"),
    [
        ([np.array([1, 1])], r"votes\[0\] must hold distinct"),
        ([np.array([0]), np.array([0, 1, 2])], r"votes\[1\] must have at most 2"),
        ([np.array([5])], r"votes\[0\] must hold indices in \[0, 5\)"),
        ([np.array([-1])], r"votes\[0\] must hold indices"),
        ([np.array([1.0])], r"votes\[0\] must be a 1-D integer array"),
        ([np.array([True])], r"votes\[0\] must be a 1-D integer array"),
        ([np.array([[1]])], r"votes\[0\] must be a 1-D integer array"),
        (np.array([1, 2]), "votes must be a sequence"),
    ],
)
def test_tally_enforces_the_sensitivity_bound(votes: object, match: str) -> None:
    with pytest.raises(PrivacyError, match=match):
        tally_votes(votes, domain_size=5, max_entries=2)  # type: ignore[arg-type]


def test_tally_checks_its_own_arguments() -> None:
    with pytest.raises(PrivacyError, match="max_entries must be in"):
        tally_votes([], domain_size=3, max_entries=4)


@pytest.mark.parametrize(
    ("counts", "kwargs", "match"),
    [
        ([1, 2, 3], {"noise": "gaussian"}, r"noise must be one of \['laplace', 'discrete-laplace'\]"),
        ([1, 2, 3], {"top_k": 4}, r"top_k must be in \[1, 3\]"),
        ([1, 2, 3], {"epsilon": 0.0}, "epsilon must be"),
        ([1, 2, 3], {"max_entries": 0}, "max_entries must be"),
        ([1, -2, 3], {}, "counts must be >= 0"),
        ([1.0, 2.0], {}, "counts must be a non-empty 1-D integer array"),
        ([], {}, "counts must be a non-empty 1-D integer array"),
    ],
)
def test_central_parameters_are_checked(counts: list, kwargs: dict, match: str) -> None:
    arguments = {"top_k": 1, "max_entries": 2, "epsilon": 1.0, "rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(PrivacyError, match=match):
        noisy_topk_histogram(np.array(counts), **arguments)


@pytest.mark.parametrize("noise", NOISE_KINDS)
def test_central_release_shape(noise: str) -> None:
    counts = np.array([10, 0, 30, 20, 0, 0])
    release = noisy_topk_histogram(counts, top_k=3, max_entries=3, epsilon=math.inf, rng=np.random.default_rng(0),
                                   noise=noise)
    assert release.winners.tolist() == [2, 3, 0]
    assert release.spec.unit == "client" and not release.winners.flags.writeable


@pytest.mark.parametrize("noise", NOISE_KINDS)
def test_ties_among_noisy_counts_are_data_independent(noise: str) -> None:
    # Equal counts and no noise: the winner must be uniform over the tied items.
    winners, _ = draw_noisy_histogram(np.array([2, 2, 2, 2]), top_k=1, max_entries=1, epsilon=math.inf,
                                      rng=np.random.default_rng(4), noise=noise, num_draws=40_000)
    frequency = np.bincount(winners[:, 0], minlength=4) / winners.shape[0]
    assert np.all(np.abs(frequency - 0.25) < 0.015)


def test_discrete_laplace_counts_stay_integers_and_centred() -> None:
    counts = np.array([5, 50, 500])
    _, noisy = draw_noisy_histogram(counts, top_k=1, max_entries=2, epsilon=1.0, rng=np.random.default_rng(9),
                                    noise="discrete-laplace", num_draws=20_000)
    assert noisy.dtype == np.int64
    assert np.all(np.abs(noisy.mean(axis=0) - counts) < 0.1)
