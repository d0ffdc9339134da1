"""Signal-to-noise diagnostic (DESIGN.md 5.6)."""

from __future__ import annotations

import math

import pytest

from privacy import (
    PrivacyError,
    histogram_calibration,
    histogram_diagnostic,
    score_diagnostic,
    signal_to_noise,
    topk_spec,
)


def test_rule_is_range_over_scale_with_flag_at_one() -> None:
    assert signal_to_noise(noise_scale=2.0, signal_range=10.0).ratio == 5.0
    assert not signal_to_noise(noise_scale=2.0, signal_range=10.0).noise_dominated
    assert signal_to_noise(noise_scale=10.0, signal_range=10.0).noise_dominated
    noiseless = signal_to_noise(noise_scale=0.0, signal_range=1.0)
    assert noiseless.ratio == math.inf and not noiseless.noise_dominated


def test_design_example_central_votes_over_many_kernels_are_noise_dominated() -> None:
    # 10^5 kernels, each client votes for c = 1000 of them, 100 clients, ε = 1: Lap(1000) vs range 100.
    spec = histogram_calibration(top_k=5000, max_entries=1000, epsilon=1.0).spec
    assert histogram_diagnostic(spec, num_voters=100).noise_dominated
    library = histogram_calibration(top_k=8, max_entries=8, epsilon=1.0).spec  # 56 patterns, 100 clients
    assert not histogram_diagnostic(library, num_voters=100).noise_dominated


def test_score_diagnostic_uses_the_clip_bound() -> None:
    spec = topk_spec(mechanism="laplace-topk", k=8, epsilon=1.0, sensitivity=1.0 / 600)  # C = 1, n = 600
    assert score_diagnostic(spec, clip_bound=1.0).ratio == pytest.approx(600 / 16)


@pytest.mark.parametrize(("noise_scale", "signal_range"), [(-1.0, 1.0), (1.0, 0.0), (math.nan, 1.0), (1.0, math.inf)])
def test_invalid(noise_scale: float, signal_range: float) -> None:
    with pytest.raises(PrivacyError):
        signal_to_noise(noise_scale=noise_scale, signal_range=signal_range)
