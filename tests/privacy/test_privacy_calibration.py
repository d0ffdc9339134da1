"""Exact calibration: the noise scale of every mechanism equals its formula (DESIGN.md 5.1, 5.2),
and the noise actually drawn has that scale (checked by statistical bounds, never exact draws)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from privacy import (
    DISCRETE_LAPLACE_HISTOGRAM,
    GUMBEL_TOPK,
    LAPLACE_HISTOGRAM,
    LAPLACE_MONOTONE_TOPK,
    LAPLACE_TOPK,
    clopper_pearson,
    draw_gumbel_topk,
    draw_laplace_topk,
    draw_noisy_histogram,
    gumbel_topk,
    gumbel_topk_noise_scale,
    histogram_calibration,
    laplace_topk,
    laplace_topk_noise_scale,
    noisy_topk_histogram,
    rational_scale,
)

GRID = [(1, 1.0, 0.1), (3, 0.5, 0.01), (8, 2.0, 1.0 / 600), (50, 0.05, 0.25)]


@pytest.mark.parametrize(("k", "epsilon", "delta_sens"), GRID)
def test_record_level_scale_is_2k_delta_over_epsilon(k: int, epsilon: float, delta_sens: float) -> None:
    assert laplace_topk_noise_scale(k=k, epsilon=epsilon, sensitivity=delta_sens) == 2 * k * delta_sens / epsilon
    assert gumbel_topk_noise_scale(k=k, epsilon=epsilon, sensitivity=delta_sens) == 2 * k * delta_sens / epsilon
    scores = np.linspace(0.0, 1.0, 64)
    rng = np.random.default_rng(0)
    for mechanism, name in ((laplace_topk, LAPLACE_TOPK), (gumbel_topk, GUMBEL_TOPK)):
        spec = mechanism(scores, k=k, epsilon=epsilon, sensitivity=delta_sens, rng=rng).spec
        assert spec.mechanism == name and spec.unit == "record"
        assert spec.noise_scale == 2 * k * delta_sens / epsilon
        assert (spec.epsilon, spec.delta, spec.sensitivity, spec.sensitivity_norm) == (epsilon, 0.0, delta_sens, "linf")


def test_infinite_epsilon_means_no_noise() -> None:
    assert laplace_topk_noise_scale(k=3, epsilon=math.inf, sensitivity=0.1) == 0.0
    release = laplace_topk(np.arange(10.0), k=3, epsilon=math.inf, sensitivity=0.1, rng=np.random.default_rng(0))
    assert math.isinf(release.spec.epsilon) and release.spec.noise_scale == 0.0
    assert release.indices.tolist() == [9, 8, 7]


@pytest.mark.parametrize(("top_k", "max_entries"), [(5, 2), (4, 4), (1, 3), (2, 100)])
@pytest.mark.parametrize("epsilon", [0.1, 1.0, 3.0])
def test_central_laplace_scale_is_min_c_k_over_epsilon(top_k: int, max_entries: int, epsilon: float) -> None:
    calibration = histogram_calibration(top_k=top_k, max_entries=max_entries, epsilon=epsilon)
    spec = calibration.spec
    assert spec.noise_scale == min(top_k, max_entries) / epsilon and spec.unit == "client"
    if max_entries <= top_k:  # Lap(c/ε) on the whole histogram: counts publishable, L1 sensitivity c
        assert (spec.mechanism, spec.sensitivity, spec.sensitivity_norm) == (LAPLACE_HISTOGRAM, max_entries, "l1")
        assert calibration.publishable_counts
    else:  # Lap(K/ε) monotone noisy top-K: indices only, sensitivity 1 per count
        assert (spec.mechanism, spec.sensitivity, spec.sensitivity_norm) == (LAPLACE_MONOTONE_TOPK, 1.0, "linf")
        assert not calibration.publishable_counts


@pytest.mark.parametrize(("top_k", "max_entries"), [(5, 2), (1, 3)])
def test_discrete_laplace_always_uses_c_over_epsilon(top_k: int, max_entries: int) -> None:
    calibration = histogram_calibration(top_k=top_k, max_entries=max_entries, epsilon=0.5, noise="discrete-laplace")
    assert calibration.spec.noise_scale == max_entries / 0.5
    assert calibration.spec.mechanism == DISCRETE_LAPLACE_HISTOGRAM and calibration.publishable_counts


def test_release_publishes_counts_only_when_allowed() -> None:
    counts = np.array([3, 0, 5, 1, 2])
    rng = np.random.default_rng(1)
    assert noisy_topk_histogram(counts, top_k=2, max_entries=2, epsilon=1.0, rng=rng).publishable_counts is not None
    assert noisy_topk_histogram(counts, top_k=1, max_entries=2, epsilon=1.0, rng=rng).publishable_counts is None
    exact = noisy_topk_histogram(counts, top_k=2, max_entries=2, epsilon=math.inf, rng=rng)
    assert exact.publishable_counts is None and exact.winners.tolist() == [2, 0]  # exact counts never publishable
    discrete = noisy_topk_histogram(counts, top_k=1, max_entries=2, epsilon=1.0, rng=rng, noise="discrete-laplace")
    assert discrete.publishable_counts is not None and discrete.publishable_counts.dtype == np.int64


def _laplace_difference_cdf(x: float, b: float) -> float:
    """P(L1 - L0 <= x) for i.i.d. Lap(b), x >= 0 (the difference of two Laplace variables)."""
    return 1.0 - 0.5 * math.exp(-x / b) * (1.0 + x / (2.0 * b))


@pytest.mark.parametrize("gap", [0.0, 0.3, 1.0])
def test_drawn_noise_has_the_claimed_scale(gap: float) -> None:
    # Two items, scores (0, gap): item 1 wins iff gap + N1 > N0. Laplace: 1 - P(N0 - N1 > gap) =
    # CDF of the Laplace difference; Gumbel: the difference is logistic, P = 1 / (1 + exp(-gap/β)).
    n, alpha = 200_000, 1e-6
    epsilon, sens = 1.0, 0.25
    b = 2 * sens / epsilon
    rng = np.random.default_rng(7)
    for draw, expected in (
        (draw_laplace_topk, _laplace_difference_cdf(gap, b)),
        (draw_gumbel_topk, 1.0 / (1.0 + math.exp(-gap / b))),
    ):
        first = draw([0.0, gap], k=1, epsilon=epsilon, sensitivity=sens, rng=rng, num_draws=n)[:, 0]
        lower, upper = clopper_pearson(int(np.count_nonzero(first == 1)), n, alpha=alpha)
        assert lower <= expected <= upper, (draw.__name__, lower, expected, upper)


def test_central_noise_has_the_claimed_scale() -> None:
    counts = np.array([4, 1, 0, 7])
    rng = np.random.default_rng(3)
    _, noisy = draw_noisy_histogram(counts, top_k=2, max_entries=2, epsilon=0.5, rng=rng, num_draws=50_000)
    noise = (noisy - counts).ravel()
    # Laplace(b): E|X| = b; the KS test against Lap(0, 4) must not reject.
    assert stats.kstest(noise, stats.laplace(scale=2 / 0.5).cdf).pvalue > 1e-4
    assert abs(np.abs(noise).mean() - 4.0) < 0.05


def test_rational_scale_never_rounds_down() -> None:
    for scale in (0.3, 1.0, 2.0 / 3.0, 7.25, 1e5 / 3.0, Fraction(3, 7)):
        t, s = rational_scale(scale)
        assert Fraction(t, s) >= Fraction(scale) and Fraction(t, s) - Fraction(scale) <= Fraction(1, s)
        assert t <= 2**48 and s & (s - 1) == 0
