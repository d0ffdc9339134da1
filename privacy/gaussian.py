"""Record-level Gaussian noisy top-k, run on the client (DESIGN.md 5.1, "Gaussian noisy top-k").

Neighbouring relation: one example of one client's dataset replaced (``n`` treated as public).

Sensitivity. Each example's score vector is clipped to L2 norm ``C`` and has non-negative
coordinates; the released scores are their mean over ``n`` examples. Replacing example ``a`` by
``b`` (both clipped vectors) moves the mean by ``(a - b) / n``, and

    ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b ≤ C² + C² − 0 = 2C²,

because ``a·b ≥ 0`` for non-negative vectors. So the replace-one L2 sensitivity is
``Δ₂ = √2·C / n`` (:func:`gaussian_record_sensitivity`); without non-negativity it would be
``2C / n``.

Mechanism. Add ``N(0, σ²)``, ``σ = z Δ₂``, to every coordinate and release only the indices of the
``k`` largest noisy scores. The noisy vector is the Gaussian mechanism, (ε, δ)-DP for the
noise multiplier ``z`` of the *analytic* Gaussian mechanism (Balle & Wang 2018, "Improving the
Gaussian mechanism for differential privacy: analytical calibration and optimal denoising",
ICML, Theorem 8): ``M`` is (ε, δ)-DP if and only if

    Φ(1/(2z) − εz) − e^ε Φ(−1/(2z) − εz) ≤ δ.

The top-k indices are post-processing of that vector, so ε does not depend on ``k`` and the noise
grows with the domain only through the scores' ``√d``-sized L2 clipping, never with ``k``.
Each release records ``z`` (``noise_scale / sensitivity``) so that ``dp_accounting``'s
``GaussianDpEvent`` recomputes its RDP / PLD figures (:mod:`privacy.comparison`); basic
composition charges the release's own (ε, δ) (DESIGN.md 5.4).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.special import log_ndtr, ndtr

from privacy._checks import (
    check_epsilon,
    check_int,
    check_positive_finite,
    check_rng,
    check_scores,
)
from privacy._selection import noisy_topk_rows
from privacy.errors import PrivacyError
from privacy.events import GAUSSIAN_TOPK, UNIT_RECORD, MechanismSpec
from privacy.noisy_topk import TopKRelease

__all__ = [
    "draw_gaussian_topk",
    "gaussian_delta",
    "gaussian_epsilon",
    "gaussian_noise_multiplier",
    "gaussian_record_sensitivity",
    "gaussian_topk",
    "gaussian_topk_spec",
]

_BISECTION_STEPS = 200
_SEARCH_MAX = 1e8  # bracket of the noise multiplier and ε searches


def _check_delta(delta: object) -> float:
    ok = isinstance(delta, (int, float, np.floating)) and not isinstance(delta, bool) and 0.0 < float(delta) < 1.0
    if not ok:
        raise PrivacyError(f"delta must be a number in (0, 1). Found {delta!r}.")
    return float(delta)


def _delta(z: float, epsilon: float) -> float:
    # Theorem 8 of Balle & Wang 2018 with Δ = 1, σ = z; e^ε Φ(·) in logs so that a large ε does
    # not overflow.
    a, b = 1.0 / (2.0 * z) - epsilon * z, -1.0 / (2.0 * z) - epsilon * z
    return float(ndtr(a) - math.exp(epsilon + float(log_ndtr(b))))


def _smallest_passing(passes: Callable[[float], bool]) -> float:
    """Smallest ``x > 0`` with ``passes(x)`` for a monotone predicate, by doubling then bisection.

    Returns the upper end of the final bracket, so ``passes`` holds at the result.
    """
    low, high = 0.0, 1.0
    while not passes(high):
        low, high = high, 2.0 * high
        if high > _SEARCH_MAX:
            raise PrivacyError(f"delta must be reachable below {_SEARCH_MAX:g}. Found no solution.")
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if passes(middle):
            high = middle
        else:
            low = middle
    return high


def gaussian_record_sensitivity(*, clip_bound: float, num_examples: int) -> float:
    """Replace-one L2 sensitivity ``Δ₂ = √2·C / n`` of a mean of non-negative, L2-clipped vectors.

    See the module docstring for the derivation (``a·b ≥ 0`` for non-negative vectors).
    """
    clip_bound = check_positive_finite("clip_bound", clip_bound)
    num_examples = check_int("num_examples", num_examples, minimum=1)
    return math.sqrt(2.0) * clip_bound / num_examples


def gaussian_delta(*, noise_multiplier: float, epsilon: float) -> float:
    """The smallest δ for which the Gaussian mechanism of multiplier ``z = σ/Δ₂`` is (ε, δ)-DP.

    Exact (Balle & Wang 2018, Theorem 8): ``Φ(1/(2z) − εz) − e^ε Φ(−1/(2z) − εz)``.
    """
    z = check_positive_finite("noise_multiplier", noise_multiplier)
    epsilon = check_epsilon(epsilon, allow_inf=False)
    return max(0.0, _delta(z, epsilon))


def gaussian_noise_multiplier(*, epsilon: float, delta: float) -> float:
    """Noise multiplier ``z = σ/Δ₂`` of the analytic Gaussian mechanism at (ε, δ) (DESIGN.md 5.1).

    The smallest ``z`` with ``gaussian_delta(z, ε) <= δ`` (δ(z) decreases in ``z``), by bisection;
    the upper end of the final bracket is returned, so the result always satisfies the condition.
    ``epsilon = inf`` gives 0 (no noise).

    Raises
    ------
    PrivacyError
        On ε <= 0 or NaN, δ outside (0, 1).
    """
    epsilon = check_epsilon(epsilon)
    delta = _check_delta(delta)
    if math.isinf(epsilon):
        return 0.0
    return _smallest_passing(lambda z: _delta(z, epsilon) <= delta)


def gaussian_epsilon(*, noise_multiplier: float, delta: float) -> float:
    """The ε of the Gaussian mechanism of multiplier ``z`` at ``delta``: the inverse of
    :func:`gaussian_noise_multiplier` (smallest ε with ``gaussian_delta(z, ε) <= δ``, by
    bisection, upper end of the bracket; 0 if δ is already reached at ε = 0)."""
    z = check_positive_finite("noise_multiplier", noise_multiplier)
    delta = _check_delta(delta)
    if _delta(z, 0.0) <= delta:
        return 0.0
    return _smallest_passing(lambda epsilon: _delta(z, epsilon) <= delta)


def gaussian_topk_spec(*, epsilon: float, delta: float, sensitivity: float) -> MechanismSpec:
    """The :class:`MechanismSpec` of a Gaussian top-k release: ``σ = z(ε, δ)·Δ₂``, L2, record unit."""
    epsilon = check_epsilon(epsilon)
    delta = _check_delta(delta)
    sensitivity = check_positive_finite("sensitivity", sensitivity)
    scale = gaussian_noise_multiplier(epsilon=epsilon, delta=delta) * sensitivity
    return MechanismSpec(
        unit=UNIT_RECORD, mechanism=GAUSSIAN_TOPK, sensitivity=sensitivity, sensitivity_norm="l2",
        noise_scale=scale, epsilon=epsilon, delta=delta,
    )


def draw_gaussian_topk(
    scores: object,
    *,
    k: int,
    epsilon: float,
    delta: float,
    sensitivity: float,
    rng: np.random.Generator,
    num_draws: int,
) -> np.ndarray:
    """``num_draws`` independent releases of :func:`gaussian_topk` as an ``(num_draws, k)`` array.

    For audits and simulations: every row is a separate release and costs (ε, δ).
    """
    values = check_scores(scores)
    k = check_int("k", k, minimum=1, maximum=values.size)
    rng = check_rng(rng)
    num_draws = check_int("num_draws", num_draws, minimum=1)
    scale = gaussian_topk_spec(epsilon=epsilon, delta=delta, sensitivity=sensitivity).noise_scale
    noise = None if scale == 0.0 else (lambda shape: rng.normal(0.0, scale, size=shape))
    return noisy_topk_rows(values, k=k, rng=rng, num_draws=num_draws, noise=noise)


def gaussian_topk(
    scores: object, *, k: int, epsilon: float, delta: float, sensitivity: float, rng: np.random.Generator
) -> TopKRelease:
    """One-shot Gaussian noisy top-k (record level, DESIGN.md 5.1).

    Output distribution: the indices of the ``k`` largest of ``scores + Z``, ``Z_i`` i.i.d.
    ``N(0, σ²)`` with ``σ = z Δ₂`` and ``z = gaussian_noise_multiplier(ε, δ)``, by decreasing
    noisy score (exact ties broken uniformly at random). Sensitivity: ``Δ₂`` in L2 under
    replace-one-example (``√2·C/n`` for non-negative vectors clipped to L2 norm ``C``, see the
    module docstring). Guarantee: (ε, δ)-DP, the analytic Gaussian mechanism (Balle & Wang 2018,
    Theorem 8) followed by post-processing, whatever ``k``; ``epsilon = inf`` adds no noise.

    Parameters
    ----------
    scores
        1-D finite scores, ``d`` entries.
    k
        Number of released indices, ``1 <= k <= d``.
    epsilon, delta
        Privacy parameters of the release: ``ε > 0`` (``inf`` = non-private baseline), ``δ`` in
        ``(0, 1)``.
    sensitivity
        ``Δ₂``: the most the score vector moves in L2 when one example is replaced.
    rng
        Noise generator (:func:`privacy.make_rng`).

    Raises
    ------
    PrivacyError
        On ε <= 0 or NaN, δ outside (0, 1), Δ₂ <= 0 or infinite, k outside ``[1, d]``, NaN or
        infinite scores.
    """
    indices = draw_gaussian_topk(
        scores, k=k, epsilon=epsilon, delta=delta, sensitivity=sensitivity, rng=rng, num_draws=1
    )[0]
    return TopKRelease(indices=indices, spec=gaussian_topk_spec(epsilon=epsilon, delta=delta, sensitivity=sensitivity))
