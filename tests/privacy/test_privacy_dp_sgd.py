"""The dp-sgd ledger event (privacy.dp_sgd): validated, round-tripped, and its RDP is Opacus' own."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from privacy import DP_SGD, PrivacyError, PrivacyEvent, compare_composition, dp_sgd_epsilon, dp_sgd_event, rdp_epsilon
from privacy.dp_sgd import RDP_ORDERS


def _event(**changes: object) -> PrivacyEvent:
    fields = dict(round=1, domain="dp_ticket", client_id="c1", noise_multiplier=1.3, sample_rate=0.1, steps=30,
                  clip=2.0, delta=1e-5, phase="train")
    fields.update(changes)
    return dp_sgd_event(**fields)  # type: ignore[arg-type]


def _opacus(history: list[tuple[float, float, int]], delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = history
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(accountant.get_epsilon(delta, alphas=list(RDP_ORDERS)))


def test_the_orders_are_opacus_own_integer_orders():
    assert list(RDP_ORDERS) == [a for a in RDPAccountant.DEFAULT_ALPHAS if float(a).is_integer()]


def test_a_dp_sgd_event_round_trips_and_states_its_release():
    event = _event()
    assert (event.mechanism, event.sensitivity, event.noise_scale, event.sensitivity_norm) == (DP_SGD, 2.0, 2.6, "l2")
    assert (event.sample_rate, event.steps) == (0.1, 30)
    assert PrivacyEvent.from_dict(event.to_dict()) == event
    assert event.epsilon == pytest.approx(_opacus([(1.3, 0.1, 30)], 1e-5), rel=1e-9)


def test_sampling_fields_belong_to_dp_sgd_events_only():
    event = _event()
    with pytest.raises(PrivacyError, match="sample_rate and steps must be None unless mechanism is 'dp-sgd'"):
        dataclasses.replace(event, mechanism="gaussian")
    with pytest.raises(PrivacyError, match="sample_rate of a dp-sgd event must be a number in"):
        dataclasses.replace(event, sample_rate=None)
    with pytest.raises(PrivacyError, match="steps of a dp-sgd event must be an int >= 1"):
        dataclasses.replace(event, steps=0)
    plain = {key: value for key, value in event.to_dict().items() if key not in ("sample_rate", "steps")}
    with pytest.raises(PrivacyError):
        PrivacyEvent.from_dict({**plain, "mechanism": DP_SGD})
    assert "sample_rate" not in PrivacyEvent.from_dict({**plain, "mechanism": "gaussian"}).to_dict()


def test_an_event_claiming_less_than_its_steps_is_refused_by_the_composition():
    event = dataclasses.replace(_event(), epsilon=0.5 * _event().epsilon)
    with pytest.raises(PrivacyError, match="epsilon of a dp-sgd event must be at least"):
        rdp_epsilon([event], target_delta=1e-5)


@pytest.mark.parametrize(("rate", "rounds", "steps"), [(0.1, 5, 10), (0.03, 3, 34), (1.0, 4, 1), (0.5, 3, 2)])
def test_the_ledgers_rdp_of_a_training_equals_opacus_figure(rate, rounds, steps):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sigma = get_noise_multiplier(target_epsilon=3.0, target_delta=1e-5, sample_rate=rate, steps=rounds * steps,
                                     alphas=list(RDP_ORDERS))
    events = [_event(round=r, noise_multiplier=sigma, sample_rate=rate, steps=steps) for r in range(1, rounds + 1)]
    opacus = _opacus([(sigma, rate, steps)] * rounds, 1e-5)
    ledger = rdp_epsilon(events, target_delta=1e-5)
    assert ledger == pytest.approx(opacus, rel=1e-9)
    assert ledger == pytest.approx(dp_sgd_epsilon([(sigma, rate, rounds * steps)], delta=1e-5), rel=1e-12)
    assert opacus <= 3.0
    comparison = compare_composition(events, target_delta=1e-5)
    assert comparison.basic_epsilon >= comparison.rdp_epsilon  # basic composition of the rounds is looser
    assert comparison.pld_epsilon <= comparison.rdp_epsilon * (1 + 1e-3)


def test_dp_sgd_beside_pure_votes_has_no_rdp_figure_and_says_why():
    vote = PrivacyEvent(round=1, phase="search", domain="patterns", layer=None, unit="record", mechanism="laplace-topk",
                        sensitivity=0.1, noise_scale=0.4, epsilon=0.5, delta=0.0, participants=("c1",),
                        sensitivity_norm="linf")
    comparison = compare_composition([vote, _event()], target_delta=1e-5)
    assert comparison.rdp_epsilon is None and any("cannot be composed with dp-sgd" in n for n in comparison.notes)
