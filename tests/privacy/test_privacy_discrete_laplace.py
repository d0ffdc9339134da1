"""Exact discrete Laplace sampler: distribution (statistical bounds) and speed."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest

from privacy import PrivacyError, clopper_pearson, discrete_laplace_noise, rational_scale


@pytest.mark.parametrize("scale", [0.4, 2.0, Fraction(10, 3)])
def test_mass_function_matches_dlap(scale: float | Fraction) -> None:
    n, alpha = 200_000, 1e-6
    draws = discrete_laplace_noise(scale=scale, size=n, rng=np.random.default_rng(17))
    assert draws.dtype == np.int64
    t, s = rational_scale(scale)
    a = s / t  # P(Z = z) = tanh(a/2) exp(-a|z|)
    for z in range(-3, 4):
        expected = math.tanh(a / 2) * math.exp(-a * abs(z))
        lower, upper = clopper_pearson(int(np.count_nonzero(draws == z)), n, alpha=alpha)
        assert lower <= expected <= upper, (z, lower, expected, upper)


def test_large_scale_moments() -> None:
    draws = discrete_laplace_noise(scale=1000.0, size=100_000, rng=np.random.default_rng(2))
    a = 1e-3
    variance = 2 * math.exp(-a) / (1 - math.exp(-a)) ** 2
    assert abs(draws.mean()) < 5 * math.sqrt(variance / draws.size)
    assert abs(draws.var() / variance - 1.0) < 0.03


def test_hundred_thousand_counts_in_well_under_a_second() -> None:
    rng = np.random.default_rng(0)
    discrete_laplace_noise(scale=3.0, size=1000, rng=rng)  # warm-up
    start = time.perf_counter()
    discrete_laplace_noise(scale=50.0, size=100_000, rng=rng)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf, math.nan, 2.0**60, "1"])
def test_invalid_scale(scale: object) -> None:
    with pytest.raises(PrivacyError, match="scale must be"):
        discrete_laplace_noise(scale=scale, size=3, rng=np.random.default_rng(0))  # type: ignore[arg-type]


def test_zero_size() -> None:
    assert discrete_laplace_noise(scale=1.0, size=0, rng=np.random.default_rng(0)).shape == (0,)
