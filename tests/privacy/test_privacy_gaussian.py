"""Gaussian noisy top-k: calibration against dp_accounting, argument errors, specs and events."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.pld import privacy_loss_distribution, privacy_loss_mechanism

from privacy import (
    GAUSSIAN_TOPK,
    PrivacyError,
    PrivacyEvent,
    compare_composition,
    draw_gaussian_topk,
    gaussian_delta,
    gaussian_epsilon,
    gaussian_noise_multiplier,
    gaussian_record_sensitivity,
    gaussian_topk,
    gaussian_topk_spec,
)

PAIRS = [(1.0, 1e-5), (0.5, 1e-6), (2.0, 1e-3), (8.0, 1e-9), (0.1, 1e-5)]


@pytest.mark.parametrize(("epsilon", "delta"), PAIRS)
def test_calibration_matches_dp_accounting(epsilon: float, delta: float) -> None:
    z = gaussian_noise_multiplier(epsilon=epsilon, delta=delta)
    # Exact δ(ε) of dp_accounting's Gaussian privacy loss: tight (not below δ, barely above).
    exact = privacy_loss_mechanism.GaussianPrivacyLoss(standard_deviation=z).get_delta_for_epsilon(epsilon)
    assert exact <= delta * (1 + 1e-9) and exact == pytest.approx(delta, rel=1e-6)
    assert gaussian_delta(noise_multiplier=z, epsilon=epsilon) <= delta
    # PLD of the Gaussian mechanism (pessimistic discretisation) gives back ε.
    pld = privacy_loss_distribution.from_gaussian_mechanism(z, value_discretization_interval=1e-5)
    assert pld.get_epsilon_for_delta(delta) == pytest.approx(epsilon, rel=1e-3, abs=1e-4)
    # RDP of GaussianDpEvent(z) is an upper bound, looser than the exact figure.
    rdp = dp_accounting.rdp.RdpAccountant()
    rdp.compose(dp_accounting.GaussianDpEvent(z))
    assert rdp.get_epsilon(delta) >= epsilon
    # The inverse, and a smaller z would not do.
    assert gaussian_epsilon(noise_multiplier=z, delta=delta) == pytest.approx(epsilon, rel=1e-9)
    assert gaussian_delta(noise_multiplier=z * (1 - 1e-6), epsilon=epsilon) > delta


def test_pinned_figures_and_monotonicity() -> None:
    assert gaussian_noise_multiplier(epsilon=1.0, delta=1e-5) == pytest.approx(3.7306, abs=1e-4)
    assert gaussian_noise_multiplier(epsilon=math.inf, delta=1e-5) == 0.0
    zs = [gaussian_noise_multiplier(epsilon=e, delta=1e-5) for e in (0.25, 0.5, 1.0, 2.0, 4.0)]
    assert zs == sorted(zs, reverse=True)
    assert gaussian_record_sensitivity(clip_bound=1.0, num_examples=100) == pytest.approx(math.sqrt(2) / 100)


def test_spec_and_release() -> None:
    spec = gaussian_topk_spec(epsilon=1.0, delta=1e-5, sensitivity=0.02)
    assert (spec.mechanism, spec.sensitivity_norm, spec.unit) == (GAUSSIAN_TOPK, "l2", "record")
    assert spec.noise_scale == pytest.approx(3.7306 * 0.02, rel=1e-4) and spec.delta == 1e-5
    release = gaussian_topk(np.arange(10.0), k=3, epsilon=1.0, delta=1e-5, sensitivity=0.02, rng=np.random.default_rng(0))
    assert release.indices.shape == (3,) and release.spec == spec
    exact = gaussian_topk(np.arange(10.0), k=3, epsilon=math.inf, delta=1e-5, sensitivity=0.02, rng=np.random.default_rng(0))
    assert list(exact.indices) == [9, 8, 7] and exact.spec.noise_scale == 0.0


def test_event_is_exact_in_the_comparison() -> None:
    spec = gaussian_topk_spec(epsilon=1.0, delta=1e-5, sensitivity=0.02)
    event = PrivacyEvent.from_spec(spec, round=1, phase="search", domain="patterns", layer=None, participants=("a",))
    result = compare_composition([event] * 3, target_delta=3e-5)
    assert result.basic_epsilon == pytest.approx(3.0) and result.basic_delta == pytest.approx(3e-5)
    assert any("gaussian x3" in note for note in result.notes)
    assert result.pld_epsilon is not None and result.pld_epsilon < 3.0
    assert result.rdp_epsilon is not None
    lying = PrivacyEvent.from_spec(
        spec.__class__(**{**spec.__dict__, "delta": 1e-7}),
        round=1, phase="search", domain="patterns", layer=None, participants=("a",),
    )
    with pytest.raises(PrivacyError, match="delta of a Gaussian top-k event must be at least"):
        compare_composition([lying], target_delta=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": 0.0}, "epsilon must be a number > 0"),
        ({"epsilon": float("nan")}, "epsilon must be a number > 0"),
        ({"delta": 0.0}, r"delta must be a number in \(0, 1\). Found 0.0."),
        ({"delta": 1.0}, r"delta must be a number in \(0, 1\)"),
        ({"delta": True}, r"delta must be a number in \(0, 1\)"),
        ({"sensitivity": 0.0}, "sensitivity must be a finite number > 0. Found 0.0."),
        ({"sensitivity": math.inf}, "sensitivity must be a finite number > 0"),
        ({"k": 0}, r"k must be in \[1, 4\]. Found 0."),
        ({"k": 5}, r"k must be in \[1, 4\]"),
        ({"rng": 0}, "rng must be a numpy.random.Generator"),
        ({"scores": [1.0, math.nan, 0.0, 0.0]}, "scores must be finite"),
    ],
)
def test_argument_errors(kwargs: dict, message: str) -> None:
    args = {"scores": np.zeros(4), "k": 2, "epsilon": 1.0, "delta": 1e-5, "sensitivity": 0.1, "rng": np.random.default_rng(0)}
    args.update(kwargs)
    scores = args.pop("scores")
    with pytest.raises(PrivacyError, match=message):
        gaussian_topk(scores, **args)
    with pytest.raises(PrivacyError, match="num_draws must be"):
        draw_gaussian_topk(np.zeros(4), k=2, epsilon=1.0, delta=1e-5, sensitivity=0.1, rng=np.random.default_rng(0), num_draws=0)
    with pytest.raises(TypeError):
        gaussian_noise_multiplier(1.0, 1e-5)  # type: ignore[misc]  # keyword-only
    with pytest.raises(PrivacyError, match="noise_multiplier must be a finite number > 0"):
        gaussian_epsilon(noise_multiplier=0.0, delta=1e-5)
