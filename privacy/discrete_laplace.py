"""Exact discrete Laplace sampler (Canonne, Kamath, Steinke 2020), vectorised with numpy integers.

The discrete Laplace distribution of scale ``τ`` has mass ``P(Z = z) ∝ exp(-|z| / τ)`` on the
integers. With integer counts of L1 sensitivity ``c``, adding i.i.d. ``DLap(c/ε)`` to every count
is ε-DP (the log mass ratio of a shift by ``v`` is at most ``‖v‖₁ / τ``).

Exactness: Canonne, Kamath & Steinke 2020, "The discrete Gaussian for differential privacy"
(NeurIPS), Algorithm 1 (``Bernoulli(exp(-γ))`` for rational γ) and Algorithm 2 (discrete Laplace
of rational scale ``t/s``). Every step uses only uniform integers from the generator
(``Generator.integers`` is exact) and integer comparisons, so no floating-point rounding enters
the output distribution (the leak of Mironov 2012 cannot occur). Each row of work is vectorised;
the loops run over rejection rounds, not over entries.

NOTE: a float scale cannot in general be written with a small denominator, so the scale used is
``t/s = ceil(τ·2^j)/2^j >= τ`` with ``j`` chosen so that ``t <= 2^48``: the noise is never
smaller than requested (relative excess below ``2^-48·max(1, τ)/τ``), so the guarantee holds.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from privacy._checks import check_int, check_rng
from privacy.errors import PrivacyError

__all__ = ["discrete_laplace_noise", "rational_scale"]

_MAX_NUMERATOR_BITS = 48


def rational_scale(scale: float | Fraction) -> tuple[int, int]:
    """Return ``(t, s)`` with ``t / s >= scale`` exactly, ``s`` a power of two and ``t <= 2^48``.

    Raises
    ------
    PrivacyError
        If ``scale`` is not a finite number > 0 or is too large to represent (> 2^47).
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float, Fraction, np.integer, np.floating)):
        raise PrivacyError(f"scale must be a finite number > 0. Found {scale!r}.")
    if isinstance(scale, (float, np.floating)) and not math.isfinite(float(scale)):
        raise PrivacyError(f"scale must be a finite number > 0. Found {scale!r}.")
    exact = Fraction(scale) if not isinstance(scale, np.generic) else Fraction(scale.item())
    if exact <= 0:
        raise PrivacyError(f"scale must be a finite number > 0. Found {scale!r}.")
    if exact > 2 ** (_MAX_NUMERATOR_BITS - 1):
        raise PrivacyError(f"scale must be <= 2^{_MAX_NUMERATOR_BITS - 1}. Found {float(exact)}.")
    bits = math.ceil(exact).bit_length()
    exponent = max(0, _MAX_NUMERATOR_BITS - 1 - bits)
    denominator = 1 << exponent
    numerator = math.ceil(exact * denominator)
    return numerator, denominator


def _bernoulli_exp_neg(numerator: np.ndarray, denominator: int, rng: np.random.Generator) -> np.ndarray:
    """``Bernoulli(exp(-numerator/denominator))`` for every entry, ``0 <= numerator <= denominator``.

    CKS 2020 Algorithm 1 (case γ in [0, 1]): ``K`` counts successive successes of
    ``Bernoulli(γ/K)``; the output is 1 iff ``K`` ends odd. ``Bernoulli(γ/K)`` is drawn exactly as
    ``J == 0 and W < numerator`` with ``J ~ U{0..K-1}``, ``W ~ U{0..denominator-1}``.
    """
    count = np.ones(numerator.size, dtype=np.int64)
    active = np.arange(numerator.size)
    while active.size:
        first = rng.integers(0, count[active]) == 0
        below = rng.integers(0, denominator, size=active.size) < numerator[active]
        success = first & below
        active = active[success]
        count[active] += 1
    return count % 2 == 1


def _geometric_exp_neg_one(size: int, rng: np.random.Generator) -> np.ndarray:
    """Number of successes of ``Bernoulli(exp(-1))`` before the first failure (CKS Algorithm 2)."""
    value = np.zeros(size, dtype=np.int64)
    active = np.arange(size)
    ones = np.ones(size, dtype=np.int64)
    while active.size:
        success = _bernoulli_exp_neg(ones[: active.size], 1, rng)
        active = active[success]
        value[active] += 1
    return value


def discrete_laplace_noise(*, scale: float | Fraction, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` i.i.d. draws of the discrete Laplace distribution of scale ``>= scale``.

    Output distribution: ``P(Z = z) = tanh(1/(2τ)) exp(-|z|/τ)`` for integers ``z``, with
    ``τ = t/s`` from :func:`rational_scale` (``τ >= scale``). Exact sampler (CKS 2020, Algorithm 2).

    Parameters
    ----------
    scale
        Requested scale ``τ > 0`` (a ``Fraction`` is used exactly; a float is the exact binary value).
    size
        Number of draws, ``>= 0``.
    rng
        Source of uniform integers (:func:`privacy.make_rng`).

    Returns
    -------
    numpy.ndarray
        int64 array of shape ``(size,)``.
    """
    size = check_int("size", size, minimum=0)
    rng = check_rng(rng)
    t, s = rational_scale(scale)
    out = np.empty(size, dtype=np.int64)
    pending = np.arange(size)
    while pending.size:
        m = pending.size
        u = rng.integers(0, t, size=m)
        keep = _bernoulli_exp_neg(u, t, rng)
        # X = U + t V is geometric with P(X = x) ∝ exp(-x / t); Y = floor(X / s) is geometric
        # with parameter 1 - exp(-s / t). A random sign, rejecting (-, 0), gives DLap(t / s).
        x = u[keep] + t * _geometric_exp_neg_one(int(np.count_nonzero(keep)), rng)
        y = x // s
        negative = rng.integers(0, 2, size=y.size) == 1
        accepted = ~(negative & (y == 0))
        kept_at = pending[keep]
        out[kept_at[accepted]] = np.where(negative, -y, y)[accepted]
        done = np.zeros(m, dtype=bool)
        done[np.flatnonzero(keep)[accepted]] = True
        pending = pending[~done]
    return out
