"""Accountant: per-unit totals, budgets checked exactly before anything is written, inf and 0
events, and releases that happened recorded whatever the budget."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest

from privacy import (
    GAUSSIAN,
    LAPLACE_HISTOGRAM,
    LAPLACE_TOPK,
    Accountant,
    BudgetExceededError,
    Ledger,
    PrivacyError,
    PrivacyEvent,
    data_free_spec,
    share,
)


def record(round_: int, participants: tuple[str, ...], epsilon: float, delta: float = 0.0) -> PrivacyEvent:
    scale = 0.0 if math.isinf(epsilon) else 0.2 / epsilon
    return PrivacyEvent(round=round_, phase="search", domain="library", layer=None, unit="record",
                        mechanism=LAPLACE_TOPK, sensitivity=0.1, noise_scale=scale,
                        epsilon=epsilon, delta=delta, participants=participants)


def central(round_: int, epsilon: float, delta: float = 0.0) -> PrivacyEvent:
    mechanism = GAUSSIAN if delta else LAPLACE_HISTOGRAM
    return PrivacyEvent(round=round_, phase="search", domain="library", layer=None, unit="client",
                        mechanism=mechanism, sensitivity=2.0, noise_scale=2.0 / epsilon, epsilon=epsilon,
                        delta=delta, participants=("a", "b", "c"))


def make(tmp_path: Path, **budgets: float) -> Accountant:
    values = {"record_epsilon_budget": 1.0, "client_epsilon_budget": 2.0, **budgets}
    return Accountant(Ledger(tmp_path / "ledger.jsonl"), **values)


def test_record_events_charge_each_participant_and_client_events_the_server(tmp_path: Path) -> None:
    accountant = make(tmp_path)
    accountant.charge([record(1, ("a", "b"), 0.25), record(1, ("b",), 0.25), central(1, 0.5)])
    accountant.charge([record(2, ("a", "c"), 0.25), central(2, 0.5)])
    assert accountant.record_epsilon_by_client() == {"a": 0.5, "b": 0.5, "c": 0.25}
    assert accountant.client_level_epsilon() == 1.0
    assert accountant.basic_composition(unit="record") == (0.5, 0.0)
    assert accountant.basic_composition(unit="record", client_id="c") == (0.25, 0.0)
    assert accountant.basic_composition(unit="record", client_id="never-seen") == (0.0, 0.0)
    assert accountant.basic_composition(unit="client") == (1.0, 0.0)
    assert accountant.remaining(unit="record", client_id="a") == (0.5, 0.0)
    assert accountant.remaining(unit="client") == (1.0, 0.0)
    assert len(accountant.events_for(unit="record", client_id="a")) == 2
    assert len(accountant.events_for(unit="client")) == 2


def test_refused_round_raises_typed_error_and_writes_nothing(tmp_path: Path) -> None:
    accountant = make(tmp_path)
    accountant.charge([record(1, ("a", "b"), 0.75)])
    size = accountant.ledger.path.stat().st_size
    planned = [record(2, ("b",), 0.1), record(2, ("a", "c"), 0.5)]
    reason = accountant.would_exceed(planned)
    assert reason is not None and "'a'" in reason and "record-level epsilon" in reason
    with pytest.raises(BudgetExceededError) as info:
        accountant.charge(planned)
    err = info.value
    assert (err.unit, err.client_id, err.quantity, err.spent, err.requested, err.budget) == (
        "record", "a", "epsilon", 0.75, 0.5, 1.0,
    )
    assert accountant.ledger.path.stat().st_size == size and len(accountant.ledger.events) == 1
    assert accountant.would_exceed([record(2, ("c",), 0.5)]) is None


def test_client_level_budget(tmp_path: Path) -> None:
    accountant = make(tmp_path)
    accountant.charge([central(1, 1.5)])
    with pytest.raises(BudgetExceededError) as info:
        accountant.charge([central(2, 1.0)])
    assert info.value.unit == "client" and info.value.client_id is None


def test_delta_budget(tmp_path: Path) -> None:
    accountant = make(tmp_path, delta_budget=1e-5)
    accountant.charge([central(1, 0.5, delta=6e-6)])
    with pytest.raises(BudgetExceededError) as info:
        accountant.charge([central(2, 0.5, delta=6e-6)])
    assert info.value.quantity == "delta"
    strict = make(tmp_path / "strict")  # default delta budget 0: no δ > 0 release at all
    assert strict.would_exceed([record(1, ("a",), 0.1, delta=1e-9)]) is not None


@pytest.mark.parametrize(("budget", "rounds"), [(1.0, 3), (1.0, 5), (0.3, 3)])
def test_rounds_of_a_share_of_the_budget_fit_exactly(tmp_path: Path, budget: float, rounds: int) -> None:
    accountant = make(tmp_path, record_epsilon_budget=budget, client_epsilon_budget=budget)
    for round_ in range(rounds):  # share rounds down: the rounds sum to at most the budget, exactly
        accountant.charge([record(round_, ("a", "b"), share(budget, parts=rounds)),
                           central(round_, share(budget, parts=rounds))])
    for unit, spent in (("record", accountant.events_for(unit="record", client_id="a")),
                        ("client", accountant.events_for(unit="client"))):
        assert len(spent) == rounds, f"every {unit} round must be charged"
        assert sum((Fraction(e.epsilon) for e in spent), Fraction(0)) <= Fraction(budget)
    assert accountant.would_exceed([record(rounds, ("a",), share(budget, parts=rounds))]) is not None
    assert accountant.would_exceed([central(rounds, share(budget, parts=rounds))]) is not None


def test_float_literal_splits_above_the_budget_are_refused(tmp_path: Path) -> None:
    accountant = make(tmp_path, record_epsilon_budget=0.3)
    accountant.charge([record(0, ("a",), 0.1)])
    accountant.charge([record(1, ("a",), 0.1)])
    with pytest.raises(BudgetExceededError):  # 3 x 0.1 > 0.3 exactly; the old 1e-9 slack let it in
        accountant.charge([record(2, ("a",), 0.1)])


def test_no_slack_above_the_budget(tmp_path: Path) -> None:
    accountant = make(tmp_path)
    assert accountant.would_exceed([record(1, ("a",), 1.0 + 1e-12)]) is not None
    assert accountant.would_exceed([central(1, 2.0 + 1e-12)]) is not None
    accountant.charge([record(1, ("a",), 1.0), central(1, 2.0)])  # exactly the budget fits
    with pytest.raises(BudgetExceededError):
        accountant.charge([record(2, ("a",), 1e-12)])


def test_infinite_epsilon_needs_an_infinite_budget(tmp_path: Path) -> None:
    finite = make(tmp_path)
    assert finite.would_exceed([record(1, ("a",), math.inf)]) is not None
    baseline = make(tmp_path / "baseline", record_epsilon_budget=math.inf, client_epsilon_budget=math.inf)
    baseline.charge([record(1, ("a",), math.inf)])
    baseline.charge([record(2, ("a",), math.inf)])
    assert baseline.record_epsilon_by_client() == {"a": math.inf}
    assert baseline.remaining(unit="record", client_id="a")[0] == math.inf


def test_epsilon_zero_events_always_fit(tmp_path: Path) -> None:
    accountant = make(tmp_path, record_epsilon_budget=0.0, client_epsilon_budget=0.0)
    free = PrivacyEvent.from_spec(data_free_spec("record"), round=0, phase="search", domain="kernels",
                                  layer="conv1", participants=("a",))
    accountant.charge([free])
    assert accountant.record_epsilon_by_client() == {"a": 0.0}
    assert accountant.would_exceed([record(1, ("a",), 1e-12)]) is not None


def test_empty_charge_is_a_no_op_and_bad_items_are_refused(tmp_path: Path) -> None:
    accountant = make(tmp_path)
    accountant.charge([])
    assert accountant.ledger.events == ()
    with pytest.raises(PrivacyError, match="PrivacyEvent"):
        accountant.charge(["event"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("budgets", "match"),
    [
        ({"record_epsilon_budget": -1.0}, "record_epsilon_budget must be"),
        ({"client_epsilon_budget": math.nan}, "client_epsilon_budget must be"),
        ({"delta_budget": 2.0}, "delta_budget must be"),
        ({"delta_budget": math.inf}, "delta_budget must be"),
    ],
)
def test_budgets_are_validated(tmp_path: Path, budgets: dict, match: str) -> None:
    with pytest.raises(PrivacyError, match=match):
        make(tmp_path, **budgets)


def test_unit_arguments_are_validated(tmp_path: Path) -> None:
    accountant = make(tmp_path)
    with pytest.raises(PrivacyError, match="unit must be one of"):
        accountant.basic_composition(unit="user")
    with pytest.raises(PrivacyError, match="client_id must be None"):
        accountant.basic_composition(unit="client", client_id="a")


def test_accountant_sees_events_appended_through_the_same_ledger(tmp_path: Path) -> None:
    accountant = make(tmp_path)
    accountant.ledger.append([record(1, ("a",), 0.9)])
    assert accountant.would_exceed([record(2, ("a",), 0.2)]) is not None


def test_record_appends_a_release_that_happened_whatever_the_budget(tmp_path: Path) -> None:
    accountant = make(tmp_path)
    accountant.charge([record(1, ("a", "b"), 0.75)])
    happened = [record(2, ("a",), 0.5), central(2, 2.5)]
    assert accountant.would_exceed(happened) is not None
    accountant.record(happened)  # DESIGN.md 5.4: never forget a release
    assert accountant.ledger.num_batches == 2 and Ledger(accountant.ledger.path).events[-2:] == tuple(happened)
    assert accountant.record_epsilon_by_client() == {"a": 1.25, "b": 0.75}
    assert accountant.remaining(unit="record", client_id="a")[0] < 0 and accountant.remaining(unit="client")[0] < 0
    assert accountant.would_exceed([record(3, ("a",), 1e-9)]) is not None  # over its budget: refused from now on
    assert accountant.would_exceed([record(3, ("b",), 0.25)]) is None
    accountant.record([])
    assert accountant.ledger.num_batches == 2
    with pytest.raises(PrivacyError, match="PrivacyEvent"):
        accountant.record(["event"])  # type: ignore[list-item]
    assert accountant.ledger.num_batches == 2
