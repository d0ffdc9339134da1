"""Exact budget arithmetic (DESIGN.md 5.4): fits, share, total and exact; budgets split into rounds."""

from __future__ import annotations

import math
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy import (
    LAPLACE_TOPK,
    Accountant,
    BudgetExceededError,
    Ledger,
    PrivacyError,
    PrivacyEvent,
    exact,
    fits,
    share,
    total,
)

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True)


def _vote(round_: int, epsilon: float, participants: tuple[str, ...] = ("a",)) -> PrivacyEvent:
    return PrivacyEvent(round=round_, phase="search", domain="patterns", layer=None, unit="record",
                        mechanism=LAPLACE_TOPK, sensitivity=0.01, noise_scale=0.02 / epsilon, epsilon=epsilon,
                        delta=0.0, participants=participants)


def test_exact_is_the_float_as_a_rational() -> None:
    assert exact(0.1) == Fraction(0.1) != Fraction(1, 10)
    assert exact(0) == 0 and exact(np.float64(0.5)) == Fraction(1, 2)
    for bad in (-1.0, math.nan, math.inf, "1"):
        with pytest.raises(PrivacyError, match="value must be a finite number >= 0"):
            exact(bad)  # type: ignore[arg-type]


def test_fits_compares_the_exact_sum_without_slack() -> None:
    assert fits([], 1.0, 1.0) and fits([0.5], [0.25, 0.25], 1.0)
    assert not fits([1.0], 1e-12, 1.0)  # the old 1e-9 relative slack would have let this through
    assert not fits([], 1.0 + 1e-12, 1.0)
    assert not fits([0.1, 0.1], 0.1, 0.3)  # 3 x 0.1 > 0.3 exactly ...
    assert not fits([0.2] * 4, 0.2, 1.0)  # ... and 5 x 0.2 > 1 exactly: the float 0.2 is above 1/5
    assert fits([], (), 0.0) and fits([0.0], 0.0, 0.0)


def test_fits_infinity_rules() -> None:
    assert not fits([], math.inf, 1e308) and not fits([math.inf], 0.0, 1.0)
    assert fits([math.inf], math.inf, math.inf) and fits([1e308, 1e308], 1e308, math.inf)


@pytest.mark.parametrize(
    ("spent", "extra", "budget", "name"),
    [([math.nan], 0.0, 1.0, "spent"), ([], math.nan, 1.0, "extra"), ([], 0.5, math.nan, "budget"),
     ([-0.1], 0.5, 1.0, "spent"), ([], [0.1, -0.1], 1.0, "extra"), ([], 0.1, -1.0, "budget"),
     ([], "lots", 1.0, "extra")],
)
def test_fits_refuses_nan_and_negative_figures(spent: list, extra: object, budget: float, name: str) -> None:
    with pytest.raises(PrivacyError, match=f"{name} must be a number >= 0"):
        fits(spent, extra, budget)  # type: ignore[arg-type]


def test_total_is_the_exact_sum_rounded_to_nearest() -> None:
    assert total([]) == 0.0 and total([0.1] * 10) == 1.0 == math.fsum([0.1] * 10)
    assert total([1.0, math.inf]) == math.inf
    assert total([sys.float_info.max, sys.float_info.max]) == math.inf
    with pytest.raises(PrivacyError, match="values must be"):
        total([math.nan])


def test_share_rounds_down() -> None:
    assert share(1.0, parts=3) == 0.3333333333333333 and 3 * Fraction(share(1.0, parts=3)) <= 1
    assert share(1.0, parts=5) == math.nextafter(0.2, 0.0) < 0.2  # the float 0.2 is above 1/5
    assert share(0.3, parts=3) == math.nextafter(0.1, 0.0)
    assert share(4.0, 0.5) == 2.0 and share(6.0, Fraction(1, 3), parts=2) == 1.0  # exact stays exact
    assert share(math.inf, 0.5, parts=7) == math.inf and share(0.0, parts=3) == 0.0
    assert share(sys.float_info.max, 4) == sys.float_info.max  # the largest float below the quotient
    assert share(5e-324, parts=2) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"budget": -1.0}, "budget must be"), ({"budget": math.nan}, "budget must be"),
     ({"fraction": 0}, "fraction must be"), ({"fraction": -0.5}, "fraction must be"),
     ({"fraction": math.inf}, "fraction must be"), ({"fraction": True}, "fraction must be"),
     ({"parts": 0}, "parts must be"), ({"parts": 2.0}, "parts must be an integer")],
)
def test_share_validates_its_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(PrivacyError, match=match):
        share(**{"budget": 1.0, **kwargs})


fractions = st.one_of(
    st.floats(min_value=1e-300, max_value=1.0, allow_subnormal=False),
    st.fractions(min_value=Fraction(1, 10**6), max_value=1, max_denominator=10**6).filter(lambda f: f > 0),
    st.integers(1, 3),
)


@SETTINGS
@given(st.floats(min_value=0.0, max_value=1e300), fractions, st.integers(1, 10**6))
def test_share_is_the_largest_float_not_above_the_exact_quotient(budget: float, fraction: object, parts: int) -> None:
    result = share(budget, fraction, parts)  # type: ignore[arg-type]
    quotient = Fraction(budget) * Fraction(fraction) / parts  # type: ignore[arg-type]
    assert Fraction(result) <= quotient
    assert Fraction(math.nextafter(result, math.inf)) > quotient
    assert parts * Fraction(result) <= Fraction(budget) * Fraction(fraction)  # type: ignore[arg-type]


@pytest.mark.parametrize(("budget", "rounds"), [(1.0, 3), (1.0, 5), (0.3, 3), (1.0, 10), (2.5, 7)])
def test_rounds_of_a_share_are_all_charged_and_one_more_is_refused(budget: float, rounds: int) -> None:
    per_round = share(budget, parts=rounds)
    with tempfile.TemporaryDirectory() as folder:
        accountant = Accountant(Ledger(Path(folder) / "ledger.jsonl"), record_epsilon_budget=budget,
                                client_epsilon_budget=math.inf)
        for round_ in range(1, rounds + 1):
            accountant.charge([_vote(round_, per_round)])  # none refused
        spent = sum((Fraction(e.epsilon) for e in accountant.ledger.events), Fraction(0))
        assert len(accountant.ledger.events) == rounds and spent <= Fraction(budget)
        with pytest.raises(BudgetExceededError):
            accountant.charge([_vote(rounds + 1, per_round)])


@pytest.mark.parametrize(("budget", "rounds", "naive"), [(1.0, 5, 0.2), (0.3, 3, 0.1)])
def test_nearest_rounded_rounds_are_above_the_budget(budget: float, rounds: int, naive: float) -> None:
    """The case the old slack hid: the float of the decimal ``budget / rounds`` (0.2, 0.1) is above
    the exact quotient, so the last of those rounds does not fit; the :func:`share` rounds do."""
    assert rounds * Fraction(naive) > Fraction(budget) >= rounds * Fraction(share(budget, parts=rounds))
    with tempfile.TemporaryDirectory() as folder:
        accountant = Accountant(Ledger(Path(folder) / "ledger.jsonl"), record_epsilon_budget=budget,
                                client_epsilon_budget=math.inf)
        for round_ in range(1, rounds):
            accountant.charge([_vote(round_, naive)])
        assert accountant.would_exceed([_vote(rounds, naive)]) is not None
