"""RDP and PLD figures beside basic composition: sound, tighter for many releases, cross-checked
against dp_accounting's own accountants."""

from __future__ import annotations

import math

import dp_accounting
import pytest
from dp_accounting.pld import PLDAccountant

from privacy import (
    DISCRETE_LAPLACE_HISTOGRAM,
    GAUSSIAN,
    LAPLACE_HISTOGRAM,
    LAPLACE_TOPK,
    PrivacyError,
    PrivacyEvent,
    compare_composition,
    data_free_spec,
    histogram_calibration,
    topk_spec,
)


def _from_spec(spec, round_: int = 1) -> PrivacyEvent:  # type: ignore[no-untyped-def]
    return PrivacyEvent.from_spec(spec, round=round_, phase="search", domain="library", layer=None, participants=("a",))


def laplace_events(count: int, epsilon: float) -> list[PrivacyEvent]:
    spec = histogram_calibration(top_k=4, max_entries=2, epsilon=epsilon).spec
    assert spec.mechanism == LAPLACE_HISTOGRAM
    return [_from_spec(spec, r) for r in range(count)]


def test_many_laplace_releases_compose_tighter_than_basic() -> None:
    result = compare_composition(laplace_events(50, 0.1), target_delta=1e-6)
    assert result.basic_epsilon == pytest.approx(5.0) and result.basic_delta == 0.0
    assert result.pld_epsilon is not None and result.rdp_epsilon is not None
    assert result.pld_epsilon < result.basic_epsilon and result.rdp_epsilon < result.basic_epsilon
    assert result.pld_epsilon <= result.rdp_epsilon + 1e-6  # PLD is the tighter of the two here


def test_pld_figure_matches_dp_accounting_pld_accountant() -> None:
    events = laplace_events(20, 0.3)
    reference = PLDAccountant()
    reference.compose(dp_accounting.LaplaceDpEvent(noise_multiplier=1 / 0.3), 20)
    ours = compare_composition(events, target_delta=1e-5).pld_epsilon
    assert ours == pytest.approx(reference.get_epsilon(1e-5), rel=1e-6)


def test_a_single_release_never_beats_its_own_epsilon_by_much() -> None:
    # A single ε-DP Laplace release has ε(δ) slightly below ε: the figures must be close to it.
    result = compare_composition(laplace_events(1, 1.0), target_delta=1e-6)
    assert result.pld_epsilon is not None and 0.95 <= result.pld_epsilon <= 1.0 + 1e-3


def test_noisy_topk_is_represented_as_pure_epsilon() -> None:
    spec = topk_spec(mechanism=LAPLACE_TOPK, k=5, epsilon=0.2, sensitivity=0.01)
    events = [_from_spec(spec, r) for r in range(100)]
    result = compare_composition(events, target_delta=1e-6)
    assert any("pure x100" in note for note in result.notes)
    # Optimal composition of 100 pure 0.2-DP releases (Kairouz et al. 2015) is about 6.3 at δ=1e-6;
    # advanced composition (Dwork, Rothblum, Vadhan 2010) bounds it by about 11.3.
    advanced = 0.2 * math.sqrt(2 * 100 * math.log(1 / 1e-6)) + 100 * 0.2 * math.expm1(0.2)
    assert result.basic_epsilon == pytest.approx(20.0)
    assert result.pld_epsilon is not None and result.pld_epsilon < advanced < result.basic_epsilon
    assert result.rdp_epsilon is not None and result.pld_epsilon <= result.rdp_epsilon < result.basic_epsilon


def test_discrete_laplace_uses_its_own_pld() -> None:
    spec = histogram_calibration(top_k=1, max_entries=3, epsilon=0.5, noise="discrete-laplace").spec
    assert spec.mechanism == DISCRETE_LAPLACE_HISTOGRAM
    result = compare_composition([_from_spec(spec, r) for r in range(30)], target_delta=1e-6)
    assert any("dlaplace x30" in note for note in result.notes)
    assert result.pld_epsilon is not None and result.pld_epsilon < result.basic_epsilon


def test_gaussian_event_matches_dp_accounting() -> None:
    event = PrivacyEvent(round=1, phase="training", domain="weights", layer=None, unit="client", mechanism=GAUSSIAN,
                         sensitivity=1.0, sensitivity_norm="l2", noise_scale=2.0, epsilon=2.5, delta=1e-5,
                         participants=("a",))
    result = compare_composition([event], target_delta=1e-5)
    reference = PLDAccountant()
    reference.compose(dp_accounting.GaussianDpEvent(noise_multiplier=2.0))
    assert result.pld_epsilon == pytest.approx(reference.get_epsilon(1e-5), rel=1e-6)
    assert result.basic_delta == 1e-5


def test_approximate_dp_event_without_rdp_bound_is_left_out_with_a_reason() -> None:
    event = PrivacyEvent(round=1, phase="training", domain="weights", layer=None, unit="record", mechanism="other-approx",
                         sensitivity=1.0, noise_scale=1.1, epsilon=1.0, delta=1e-6, participants=("a",))
    again = PrivacyEvent(**{**event.to_dict(), "event_id": "x", "participants": ("a",)})
    result = compare_composition([event, again], target_delta=1e-5)
    assert result.rdp_epsilon is None and any("no valid RDP bound" in note for note in result.notes)
    assert result.pld_epsilon is not None and result.pld_epsilon <= result.basic_epsilon


def test_infinite_and_zero_events() -> None:
    free = _from_spec(data_free_spec("record"))
    assert compare_composition([free], target_delta=1e-6).pld_epsilon == 0.0
    baseline = _from_spec(topk_spec(mechanism=LAPLACE_TOPK, k=1, epsilon=math.inf, sensitivity=0.1))
    result = compare_composition([free, baseline], target_delta=1e-6)
    assert result.rdp_epsilon == result.pld_epsilon == result.basic_epsilon == math.inf
    empty = compare_composition([], target_delta=1e-6)
    assert (empty.basic_epsilon, empty.rdp_epsilon, empty.pld_epsilon) == (0.0, 0.0, 0.0)


def test_invalid_inputs() -> None:
    client = laplace_events(1, 1.0)[0]
    assert client.unit == "client"
    record = PrivacyEvent(**{**client.to_dict(), "unit": "record", "event_id": "r", "participants": ("a",)})
    with pytest.raises(PrivacyError, match="one privacy unit"):
        compare_composition([record, client], target_delta=1e-6)
    with pytest.raises(PrivacyError, match="target_delta must be"):
        compare_composition([record], target_delta=0.0)
    overclaimed = PrivacyEvent(**{**client.to_dict(), "epsilon": 0.5, "event_id": "o", "participants": ("a",)})
    with pytest.raises(PrivacyError, match="at least sensitivity/noise_scale"):
        compare_composition([overclaimed], target_delta=1e-6)
