"""plan_search: the per-round and per-domain ε of a search sum to at most its budgets, exactly (DESIGN.md 5.4)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from federation.config import Config
from federation.model_io import build_model
from federation.search_phase import plan_search
from models import prunable_layers
from privacy import UNIT_CLIENT, UNIT_RECORD, rdp_epsilon, share
from strategies import build_domains, domain_epsilon, plan_round_events


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return build_model(Config())  # unseeded: leaves the global torch generator alone


@pytest.mark.parametrize(
    ("epsilon", "client_epsilon", "rounds", "pattern_share"),
    [(1.0, 1.0, 3, 0.5), (1.0, 0.3, 5, 0.2), (0.3, 1.0, 3, 0.7), (2.0, 0.5, 7, 0.3)],
)
def test_a_search_plan_never_sums_above_its_budgets(
    model, epsilon: float, client_epsilon: float, rounds: int, pattern_share: float  # type: ignore[no-untyped-def]
) -> None:
    config = Config(epsilon=epsilon, client_epsilon=client_epsilon, search_rounds=rounds, hold_rounds=1,
                    kernel_votes=True, pattern_share=pattern_share, unit="both")
    plan = plan_search(config, model, reference=False)
    privacy = plan.privacy
    assert privacy.record_epsilon == share(epsilon, parts=rounds)
    assert privacy.client_epsilon == share(client_epsilon, parts=rounds) and privacy.central
    assert len(privacy.epsilon_split) > 1  # kernel domains: the split is what sums to 1
    for unit, budget in ((UNIT_RECORD, epsilon), (UNIT_CLIENT, client_epsilon)):
        per_round = sum((Fraction(domain_epsilon(privacy, name, unit)) for name in privacy.epsilon_split), Fraction(0))
        assert rounds * per_round <= Fraction(budget), f"{unit}: T rounds of the planned domains exceed the budget"


def test_the_reference_plan_adds_no_noise(model) -> None:  # type: ignore[no-untyped-def]
    plan = plan_search(Config(epsilon=1.0, search_rounds=3, hold_rounds=1), model, reference=True)
    assert math.isinf(plan.privacy.record_epsilon) and math.isinf(plan.record_budget)
    assert not plan.privacy.central


@pytest.mark.parametrize("enforce", ["basic", "rdp"])
def test_a_gaussian_search_plan_spends_delta_and_is_calibrated_on_the_enforcing_accountant(model, enforce) -> None:  # type: ignore[no-untyped-def]
    config = Config(mechanism="gaussian-topk", clip_mode="l2", budget_accountant=enforce, delta=1e-5,
                    kernel_votes=True, search_rounds=5, hold_rounds=2)
    plan = plan_search(config, model, reference=False)
    privacy = plan.privacy
    assert (plan.delta_budget, plan.enforce, privacy.local_mechanism) == (1e-5, enforce, "gaussian-topk")
    assert privacy.record_delta == share(1e-5, parts=5)
    assert privacy.sensitivity == math.sqrt(2.0) * 1.0 / config.score_examples  # Δ₂ = √2·C/n (DESIGN.md 5.1)
    events = plan_round_events(
        build_domains(shapes={n: tuple(l.weight.shape) for n, l in prunable_layers(model).items() if n in plan.policies},
                      policies=plan.policies, settings=plan.settings, density=0.02),
        privacy, participants=("a",), server_round=1,
    )
    if enforce == "basic":
        assert privacy.record_epsilon == share(1.0, parts=5)
    else:  # RDP: more ε per round than basic's ε / T, and T rounds compose to at most ε at δ
        assert privacy.record_epsilon > 2 * share(1.0, parts=5)
        assert rdp_epsilon(list(events) * 5, target_delta=1e-5) <= 1.0
    assert all(e.mechanism == "gaussian-topk" and e.sensitivity_norm == "l2" and e.delta > 0 for e in events)
    # The reference search stays noiseless and charges no δ.
    reference = plan_search(config, model, reference=True)
    assert math.isinf(reference.privacy.record_epsilon) and reference.privacy.record_delta == 0.0
