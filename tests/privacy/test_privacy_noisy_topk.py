"""Record-level noisy top-k: parameter checks, release shape, ε = ∞ baseline, tie-breaking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privacy import (
    PrivacyError,
    TopKRelease,
    draw_gumbel_topk,
    draw_laplace_topk,
    gumbel_topk,
    laplace_topk,
    topk_spec,
)

MECHANISMS = [laplace_topk, gumbel_topk]
SCORES = np.array([0.1, 0.9, 0.4, 0.7, 0.2])


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize(
    ("scores", "kwargs", "match"),
    [
        (SCORES, {"epsilon": 0.0}, "epsilon must be"),
        (SCORES, {"epsilon": -1.0}, "epsilon must be"),
        (SCORES, {"epsilon": math.nan}, "epsilon must be"),
        (SCORES, {"epsilon": True}, "epsilon must be"),
        (SCORES, {"k": 6}, r"k must be in \[1, 5\]"),
        (SCORES, {"k": 0}, "k must be"),
        (SCORES, {"k": 2.0}, "k must be an integer"),
        (SCORES, {"sensitivity": 0.0}, "sensitivity must be"),
        (SCORES, {"sensitivity": -0.1}, "sensitivity must be"),
        (SCORES, {"sensitivity": math.inf}, "sensitivity must be"),
        (np.array([0.1, math.nan, 0.3]), {}, "scores must be finite"),
        (np.array([0.1, math.inf, 0.3]), {}, "scores must be finite"),
        (np.array([[0.1, 0.2]]), {}, "scores must be a non-empty 1-D"),
        (np.array([]), {}, "scores must be a non-empty 1-D"),
        (np.array([True, False]), {}, "scores must be a 1-D array of real numbers"),
        (["a", "b"], {}, "scores must be"),
        (SCORES, {"rng": np.random.RandomState(0)}, "rng must be a numpy.random.Generator"),
    ],
)
def test_invalid_parameters_stop_with_a_clear_error(mechanism, scores, kwargs: dict, match: str) -> None:
    arguments = {"k": 2, "epsilon": 1.0, "sensitivity": 0.1, "rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(PrivacyError, match=match):
        mechanism(scores, **arguments)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_release_holds_k_distinct_read_only_indices(mechanism) -> None:
    release = mechanism(np.random.default_rng(1).random(1000), k=17, epsilon=0.5, sensitivity=0.01,
                        rng=np.random.default_rng(2))
    assert isinstance(release, TopKRelease)
    assert release.indices.shape == (17,) and release.indices.dtype == np.int64
    assert np.unique(release.indices).size == 17 and release.indices.min() >= 0 and release.indices.max() < 1000
    with pytest.raises(ValueError):
        release.indices[0] = 3


@pytest.mark.parametrize(("mechanism", "draw"), [(laplace_topk, draw_laplace_topk), (gumbel_topk, draw_gumbel_topk)])
def test_single_release_is_one_row_of_the_batch_sampler(mechanism, draw) -> None:
    # The audits sample the batch path; the release must be the same computation.
    single = mechanism(SCORES, k=2, epsilon=1.0, sensitivity=0.3, rng=np.random.default_rng(11))
    batch = draw(SCORES, k=2, epsilon=1.0, sensitivity=0.3, rng=np.random.default_rng(11), num_draws=1)
    assert single.indices.tolist() == batch[0].tolist()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_infinite_epsilon_is_the_exact_top_k_in_score_order(mechanism) -> None:
    release = mechanism(SCORES, k=3, epsilon=math.inf, sensitivity=0.1, rng=np.random.default_rng(0))
    assert release.indices.tolist() == [1, 3, 2] and math.isinf(release.spec.epsilon)


def test_exact_ties_are_broken_uniformly_at_random() -> None:
    # Without noise, 4 tied items compete for 2 places: each must be chosen half of the time.
    rows = draw_laplace_topk([1.0, 1.0, 1.0, 1.0, 0.0], k=2, epsilon=math.inf, sensitivity=0.1,
                             rng=np.random.default_rng(5), num_draws=40_000)
    frequency = np.bincount(rows.ravel(), minlength=5) / rows.shape[0]
    assert frequency[4] == 0.0
    assert np.all(np.abs(frequency[:4] - 0.5) < 0.02)


def test_large_noise_makes_the_choice_nearly_uniform_and_small_noise_exact() -> None:
    scores = np.array([0.0, 0.0, 0.0, 1.0])
    noisy = draw_laplace_topk(scores, k=1, epsilon=1e-6, sensitivity=1.0, rng=np.random.default_rng(3),
                              num_draws=20_000)
    assert abs(np.mean(noisy[:, 0] == 3) - 0.25) < 0.02
    sharp = draw_gumbel_topk(scores, k=1, epsilon=1e4, sensitivity=1.0, rng=np.random.default_rng(3), num_draws=2_000)
    assert np.all(sharp[:, 0] == 3)


def test_topk_spec_rejects_unknown_mechanism() -> None:
    with pytest.raises(PrivacyError, match="mechanism must be one of"):
        topk_spec(mechanism="exponential", k=1, epsilon=1.0, sensitivity=1.0)


def test_release_refuses_duplicate_indices() -> None:
    spec = topk_spec(mechanism="laplace-topk", k=2, epsilon=1.0, sensitivity=1.0)
    with pytest.raises(PrivacyError, match="distinct"):
        TopKRelease(indices=np.array([1, 1]), spec=spec)
