"""Statistical DP audits of the client-level (central) mechanisms, each with a negative control.

Neighbouring histograms (add-one-client): D' = D plus one valid vote for the target items, whose
counts start below the others (chosen adversarially, before sampling). Pre-registered events:
"the winners are exactly the targets" and, where counts are publishable, "every target's noisy
count reaches its count in D'" (for Laplace and discrete Laplace the log ratio of that event is
exactly ε for the calibrated scale c/ε). With a Clopper-Pearson union bound over the events, the
lower bound on the log ratio must stay <= ε for the real mechanism and exceed ε for the same
mechanism with its noise scale divided by 3.
"""

from __future__ import annotations

import numpy as np
import pytest

from privacy import draw_noisy_histogram, epsilon_lower_bound, histogram_calibration

EPSILON = 1.0
ALPHA = 1e-4
COUNTS = np.array([0, 0, 2, 2, 2])  # targets 0 (and 1) below the others


def _lower_bound(noise: str, top_k: int, max_entries: int, targets: list[int], sample_epsilon: float, seed: int,
                 num_draws: int) -> float:
    neighbour = COUNTS.copy()
    neighbour[targets] += 1  # one more client, voting for the targets (len(targets) <= max_entries)
    calibration = histogram_calibration(top_k=top_k, max_entries=max_entries, epsilon=EPSILON, noise=noise)
    publishable = calibration.publishable_counts
    rng = np.random.default_rng(seed)
    hits = []
    for data in (COUNTS, neighbour):
        winners, noisy = draw_noisy_histogram(data, top_k=top_k, max_entries=max_entries, epsilon=sample_epsilon,
                                              rng=rng, noise=noise, num_draws=num_draws)
        events = [np.all(np.sort(winners, axis=1) == np.array(targets[:top_k]), axis=1)]
        if publishable:
            events.append(np.all(noisy[:, targets] >= neighbour[targets], axis=1))
        hits.append(np.stack(events, axis=1))
    return epsilon_lower_bound(hits[0], hits[1], alpha=ALPHA).epsilon_lower_bound


CASES = [
    # (noise, K, c, targets, draws): c <= K -> Lap(c/ε); K < c -> Lap(K/ε); discrete: DLap(c/ε)
    ("laplace", 2, 2, [0, 1], 400_000),
    ("laplace", 1, 3, [0], 400_000),
    ("laplace", 2, 3, [0, 1], 400_000),
    ("discrete-laplace", 2, 2, [0, 1], 300_000),
    ("discrete-laplace", 1, 2, [0, 1], 300_000),
]


@pytest.mark.parametrize(("noise", "top_k", "max_entries", "targets", "num_draws"), CASES)
def test_central_histogram_audit(noise: str, top_k: int, max_entries: int, targets: list[int], num_draws: int) -> None:
    mechanism = histogram_calibration(top_k=top_k, max_entries=max_entries, epsilon=EPSILON, noise=noise).spec.mechanism
    bound = _lower_bound(noise, top_k, max_entries, targets, EPSILON, seed=300 + top_k, num_draws=num_draws)
    control = _lower_bound(noise, top_k, max_entries, targets, 3 * EPSILON, seed=400 + top_k, num_draws=num_draws)
    print(f"AUDIT {mechanism} K={top_k} c={max_entries}: claimed eps={EPSILON:.3f}, lower bound={bound:.3f},"
          f" control (scale/3) lower bound={control:.3f}")
    assert bound <= EPSILON, "the mechanism leaks more than its claimed ε"
    assert bound >= 0.6 * EPSILON, "the audit is too weak to catch a miscalibration"
    assert control > EPSILON, "the audit failed to flag an under-noised mechanism"
