"""The auditing tool itself: Clopper-Pearson bounds and the ε lower bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privacy import PrivacyError, clopper_pearson, epsilon_lower_bound


def test_clopper_pearson_known_values() -> None:
    assert clopper_pearson(0, 10, alpha=0.05) == (0.0, pytest.approx(1 - 0.05 ** (1 / 10)))
    assert clopper_pearson(10, 10, alpha=0.05) == (pytest.approx(0.05 ** (1 / 10)), 1.0)
    lower, upper = clopper_pearson(500, 1000, alpha=1e-3)
    assert lower < 0.5 < upper and upper - lower < 0.11


def test_clopper_pearson_coverage() -> None:
    rng = np.random.default_rng(0)
    hits = rng.binomial(200, 0.3, size=2000)
    covered = [clopper_pearson(int(h), 200, alpha=0.05)[0] <= 0.3 for h in hits]
    assert np.mean(covered) >= 0.95


def test_lower_bound_on_a_known_ratio() -> None:
    rng = np.random.default_rng(1)
    n = 200_000
    p, q = 0.2, 0.2 * math.exp(-1.0)  # a pair with privacy loss exactly 1 on this event
    result = epsilon_lower_bound(rng.random(n) < p, rng.random(n) < q, alpha=1e-3)
    assert 0.9 < result.epsilon_lower_bound < 1.0 and result.empirical_log_ratio == pytest.approx(1.0, abs=0.05)
    same = epsilon_lower_bound(rng.random(n) < p, rng.random(n) < p, alpha=1e-3)
    assert same.epsilon_lower_bound < 0.05


def test_invalid_inputs() -> None:
    with pytest.raises(PrivacyError, match="alpha must be"):
        clopper_pearson(1, 2, alpha=0.0)
    with pytest.raises(PrivacyError, match="successes must be"):
        clopper_pearson(3, 2, alpha=0.1)
    with pytest.raises(PrivacyError, match="same m"):
        epsilon_lower_bound(np.zeros((5, 2), bool), np.zeros((5, 3), bool), alpha=0.1)


def test_delta_is_subtracted_from_the_lower_probability() -> None:
    rng = np.random.default_rng(2)
    n = 200_000
    hits_d, hits_d_prime = rng.random(n) < 0.2, rng.random(n) < 0.2 * math.exp(-1.0)
    pure = epsilon_lower_bound(hits_d, hits_d_prime, alpha=1e-3).epsilon_lower_bound
    approx = epsilon_lower_bound(hits_d, hits_d_prime, alpha=1e-3, delta=0.05).epsilon_lower_bound
    assert 0.0 < approx < pure  # ln((0.2 - 0.05) / 0.0736) ≈ 0.71 < 1
    with pytest.raises(PrivacyError, match=r"delta must be a number in \[0, 1\)"):
        epsilon_lower_bound(hits_d, hits_d_prime, alpha=1e-3, delta=1.0)
