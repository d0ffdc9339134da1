"""A record-level budget enforced on Rényi DP (budget-accountant=rdp) and the RDP calibration of a search.

The figures are recomputed here with dp_accounting directly, not through privacy's own helpers: a
search calibrated by :func:`privacy.gaussian_rdp_round_epsilon` must compose, by dp_accounting's
RDP accountant, to at most its ε at its δ, and one round more must not fit.
"""

from __future__ import annotations

import math

import dp_accounting
import pytest
from dp_accounting.rdp import RdpAccountant

from privacy import (
    Accountant,
    BudgetExceededError,
    Ledger,
    PrivacyError,
    PrivacyEvent,
    gaussian_noise_multiplier,
    gaussian_rdp_round_epsilon,
    gaussian_record_sensitivity,
    gaussian_topk_spec,
    share,
)

EPSILON, DELTA, ROUNDS = 1.0, 1e-5, 5
SPLIT = (0.5, 0.125, 0.125, 0.125, 0.125)  # the patterns domain and four kernel layers
SENSITIVITY = gaussian_record_sensitivity(clip_bound=1.0, num_examples=512)


def _pairs(per_round: float) -> list[tuple[float, float]]:
    round_delta = share(DELTA, parts=ROUNDS)
    return [(share(per_round, fraction), share(round_delta, fraction)) for fraction in SPLIT]


def _rdp(pairs: list[tuple[float, float]], rounds: int) -> float:
    accountant = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    for epsilon, delta in pairs:
        z = gaussian_noise_multiplier(epsilon=epsilon, delta=delta)
        accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier=z), rounds)
    return accountant.get_epsilon(DELTA)


def _round_events(per_round: float, server_round: int, clients: tuple[str, ...]) -> list[PrivacyEvent]:
    return [
        PrivacyEvent.from_spec(
            gaussian_topk_spec(epsilon=epsilon, delta=delta, sensitivity=SENSITIVITY), round=server_round,
            phase="search", domain=f"d{index}", layer=None, participants=clients,
        )
        for index, (epsilon, delta) in enumerate(_pairs(per_round))
    ]


def test_the_rdp_calibration_fills_the_budget_by_dp_accountings_own_figure():
    per_round = gaussian_rdp_round_epsilon(epsilon=EPSILON, delta=DELTA, rounds=ROUNDS, round_pairs=_pairs)
    assert _rdp(_pairs(per_round), ROUNDS) <= EPSILON
    assert _rdp(_pairs(per_round * 1.01), ROUNDS) > EPSILON  # the largest that fits, not merely one that does
    # The point of RDP: each round gets more than the basic ε / T, so each vote draws less noise.
    assert per_round > 3 * (EPSILON / ROUNDS)
    basic_z = gaussian_noise_multiplier(epsilon=share(EPSILON / ROUNDS, 0.125), delta=share(DELTA / ROUNDS, 0.125))
    rdp_z = gaussian_noise_multiplier(epsilon=share(per_round, 0.125), delta=share(DELTA / ROUNDS, 0.125))
    assert rdp_z < basic_z / 3


@pytest.mark.parametrize("enforce", ["basic", "rdp"])
def test_the_enforcing_accountant_refuses_the_round_that_would_exceed_the_budget(tmp_path, enforce):
    per_round = gaussian_rdp_round_epsilon(epsilon=EPSILON, delta=DELTA, rounds=ROUNDS, round_pairs=_pairs)
    accountant = Accountant(Ledger(tmp_path / "ledger.jsonl"), record_epsilon_budget=EPSILON,
                            client_epsilon_budget=math.inf, delta_budget=DELTA, enforce=enforce)
    clients = ("a", "b")
    # Basic composition admits floor(ε / per_round) rounds of this calibration; RDP admits all T.
    admitted = ROUNDS if enforce == "rdp" else math.floor(EPSILON / per_round)
    for server_round in range(1, admitted + 1):
        accountant.charge(_round_events(per_round, server_round, clients))
    refused = _round_events(per_round, admitted + 1, clients)
    assert accountant.would_exceed(refused) is not None
    with pytest.raises(BudgetExceededError, match="RDP at δ = 1e-05" if enforce == "rdp" else "epsilon budget") as err:
        accountant.charge(refused)
    assert err.value.client_id == "a" and len(accountant.ledger.events) == admitted * len(SPLIT)  # nothing written
    totals = accountant.totals()
    assert totals.enforced == enforce
    if enforce == "rdp":
        assert totals.record_rdp_epsilon_max == pytest.approx(_rdp(_pairs(per_round), ROUNDS), rel=1e-9)
        assert totals.record_rdp_epsilon_max <= EPSILON < totals.record_epsilon_max  # basic stays beside, above
        assert totals.to_json()["rdp"] == {"record-max": totals.record_rdp_epsilon_max, "delta": DELTA}
    else:
        assert totals.record_rdp_epsilon_max is None and "rdp" not in totals.to_json()


def test_a_client_not_sampled_spends_nothing_under_rdp(tmp_path):
    accountant = Accountant(Ledger(tmp_path / "ledger.jsonl"), record_epsilon_budget=EPSILON,
                            client_epsilon_budget=math.inf, delta_budget=DELTA, enforce="rdp")
    per_round = gaussian_rdp_round_epsilon(epsilon=EPSILON, delta=DELTA, rounds=ROUNDS, round_pairs=_pairs)
    for server_round in range(1, ROUNDS + 1):
        accountant.charge(_round_events(per_round, server_round, ("a",)))
    assert accountant.would_exceed(_round_events(per_round, ROUNDS + 1, ("b",))) is None  # b has its whole budget
    assert accountant.would_exceed(_round_events(per_round, ROUNDS + 1, ("a", "b"))) is not None


def test_rdp_enforcement_needs_a_delta_and_a_known_name(tmp_path):
    with pytest.raises(PrivacyError, match="delta_budget must be in \\(0, 1\\) with enforce='rdp'"):
        Accountant(Ledger(tmp_path / "l.jsonl"), record_epsilon_budget=1.0, client_epsilon_budget=1.0, enforce="rdp")
    with pytest.raises(PrivacyError, match="enforce must be one of \\['basic', 'rdp'\\]"):
        Accountant(Ledger(tmp_path / "l.jsonl"), record_epsilon_budget=1.0, client_epsilon_budget=1.0, enforce="pld")
    with pytest.raises(PrivacyError, match="rounds must be an int >= 1"):
        gaussian_rdp_round_epsilon(epsilon=1.0, delta=DELTA, rounds=0, round_pairs=_pairs)
