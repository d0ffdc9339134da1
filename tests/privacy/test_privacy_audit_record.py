"""Statistical DP audits of the record-level mechanisms, each with a negative control.

Neighbouring scores (replace-one-example, L∞ sensitivity Δ): every coordinate moves by exactly
Δ, the k target items up and the others down, and the others sit above the targets so that a
target enters the released set only through a large noise draw, where the density ratio of the
noise is largest (the pair is chosen adversarially, before sampling). The pre-registered event is
"the released set is exactly the k targets". The Clopper-Pearson lower bound on the log ratio of
its probabilities (privacy.audit) must stay <= ε for the real mechanism and exceed ε for the same
mechanism with its noise scale divided by 3 (sampled with 3ε while ε is claimed).
"""

from __future__ import annotations

import numpy as np
import pytest

from privacy import draw_gumbel_topk, draw_laplace_topk, epsilon_lower_bound

EPSILON = 1.0
SENSITIVITY = 0.01  # Δ = C / n, e.g. C = 1 and n = 100
NUM_DRAWS = 400_000
ALPHA = 1e-4  # each lower bound exceeds the true ε with probability <= ALPHA
DOMAIN = 5


def _neighbours(k: int) -> tuple[np.ndarray, np.ndarray]:
    high = 2 * SENSITIVITY
    scores = np.array([0.0] * k + [high + SENSITIVITY] * (DOMAIN - k))
    neighbour = np.array([SENSITIVITY] * k + [high] * (DOMAIN - k))
    assert np.allclose(np.abs(neighbour - scores), SENSITIVITY)
    return scores, neighbour


def _lower_bound(draw, k: int, sample_epsilon: float, seed: int) -> float:  # type: ignore[no-untyped-def]
    scores, neighbour = _neighbours(k)
    rng = np.random.default_rng(seed)
    hits = []
    for data in (scores, neighbour):
        released = draw(data, k=k, epsilon=sample_epsilon, sensitivity=SENSITIVITY, rng=rng, num_draws=NUM_DRAWS)
        hits.append(np.all(np.sort(released, axis=1) == np.arange(k), axis=1))
    return epsilon_lower_bound(hits[0], hits[1], alpha=ALPHA).epsilon_lower_bound


@pytest.mark.parametrize("draw", [draw_laplace_topk, draw_gumbel_topk], ids=["laplace", "gumbel"])
@pytest.mark.parametrize("k", [1, 2])
def test_record_level_topk_audit(draw, k: int) -> None:  # type: ignore[no-untyped-def]
    bound = _lower_bound(draw, k, EPSILON, seed=100 + k)
    control = _lower_bound(draw, k, 3 * EPSILON, seed=200 + k)  # scale / 3, ε still claimed
    print(f"AUDIT {draw.__name__} k={k}: claimed eps={EPSILON:.3f}, lower bound={bound:.3f},"
          f" control (scale/3) lower bound={control:.3f}")
    assert bound <= EPSILON, "the mechanism leaks more than its claimed ε"
    assert bound >= 0.6 * EPSILON, "the audit is too weak to catch a miscalibration"
    assert control > EPSILON, "the audit failed to flag an under-noised mechanism"
