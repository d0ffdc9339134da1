"""Statistical DP audit of the record-level Gaussian noisy top-k, with negative controls.

Neighbouring scores (replace-one-example, L2 sensitivity Δ₂): two contenders for the last place
of the top-k, the shift split ``+Δ₂/√2`` and ``-Δ₂/√2`` between them (L2 norm exactly Δ₂), which
moves their difference by ``√2·Δ₂``, the most an L2 shift of Δ₂ can. Their difference carries
noise ``N(0, 2σ²)``, so the event "contender 0 is released" is a threshold event of a 1-D Gaussian
mechanism with the same multiplier ``z``: the worst case for (ε, δ) (Neyman-Pearson). The
contenders' offset puts the threshold at ``u = -3`` standard deviations of that noise, where the
log ratio is large and the event is still frequent enough to estimate (placed for the σ
the audited implementation draws with: the auditor's adversarial choice). The other ``k - 1`` items
sit far above (always released), one far below. The Clopper-Pearson bound at δ
(``epsilon_lower_bound(..., delta=δ)``) must stay <= ε for the real mechanism and exceed ε for
the two miscalibrations: σ halved, and Δ₂ taken as ``C/n`` (the √2 forgotten) while the data move
by ``√2·C/n``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from privacy import draw_gaussian_topk, epsilon_lower_bound, gaussian_noise_multiplier

EPSILON, DELTA = 1.0, 1e-5
SENSITIVITY = math.sqrt(2.0) * 1.0 / 100  # Δ₂ = √2·C/n, C = 1, n = 100
NUM_DRAWS = 2_000_000
ALPHA = 1e-4
THRESHOLD = -3.0  # in standard deviations of the contenders' noisy difference


def _neighbours(k: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    far = 1e3 * sigma
    offset = THRESHOLD * math.sqrt(2.0) * sigma  # contender 0 minus contender 1
    scores = np.array([offset, 0.0] + [far] * (k - 1) + [-far])
    neighbour = scores.copy()
    neighbour[:2] += np.array([1.0, -1.0]) * SENSITIVITY / math.sqrt(2.0)
    assert np.linalg.norm(neighbour - scores) == pytest.approx(SENSITIVITY, rel=1e-12)
    return scores, neighbour


def _lower_bound(k: int, *, claimed: float, scale: float, seed: int) -> float:
    """Audit a mechanism calibrated for sensitivity ``claimed`` and with its σ multiplied by ``scale``."""
    # The pair is chosen before sampling for the σ the audited implementation draws with.
    sigma = gaussian_noise_multiplier(epsilon=EPSILON, delta=DELTA) * claimed * scale
    scores, neighbour = _neighbours(k, sigma)
    rng = np.random.default_rng(seed)
    hits = []
    for data in (neighbour, scores):
        # NOTE: scaling Δ scales σ; the data always move by the true SENSITIVITY.
        released = draw_gaussian_topk(
            data, k=k, epsilon=EPSILON, delta=DELTA, sensitivity=claimed * scale, rng=rng, num_draws=NUM_DRAWS
        )
        hits.append(np.any(released == 0, axis=1))
    return epsilon_lower_bound(hits[0], hits[1], alpha=ALPHA, delta=DELTA).epsilon_lower_bound


@pytest.mark.parametrize("k", [1, 3])
def test_gaussian_topk_audit(k: int) -> None:
    bound = _lower_bound(k, claimed=SENSITIVITY, scale=1.0, seed=300 + k)
    halved = _lower_bound(k, claimed=SENSITIVITY, scale=0.5, seed=400 + k)
    no_sqrt2 = _lower_bound(k, claimed=SENSITIVITY / math.sqrt(2.0), scale=1.0, seed=500 + k)
    print(f"AUDIT gaussian-topk k={k}: claimed eps={EPSILON:.3f} at delta={DELTA:g}, lower bound={bound:.3f},"
          f" control sigma/2={halved:.3f}, control delta2=C/n={no_sqrt2:.3f}")
    assert bound <= EPSILON, "the mechanism leaks more than its claimed (ε, δ)"
    assert bound >= 0.6 * EPSILON, "the audit is too weak to catch a miscalibration"
    assert halved > EPSILON, "the audit failed to flag σ halved"
    assert no_sqrt2 > EPSILON, "the audit failed to flag Δ₂ = C/n (the √2 forgotten)"
