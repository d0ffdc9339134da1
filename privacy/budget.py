"""Exact budget arithmetic (DESIGN.md 5.4): ε and δ sums compared with a budget in rationals.

Every finite float is exactly a rational number, so :class:`fractions.Fraction` adds ledger
figures and compares them with a budget without any rounding: a spend fits if and only if its
exact sum is at most the budget. There is no relative slack: a spend above the budget by one
unit in the last place is refused. Infinity is handled explicitly: an ε of ``inf`` (a release
without noise) fits only a budget of ``inf``, and a budget of ``inf`` fits every spend.

The other direction is :func:`share`: the pieces derived from a budget (its per-round ε, a
domain's part of a round) are rounded *down* to a float, so that they sum to at most the budget
exactly (``T`` rounds of ``share(B, parts=T)`` fit ``B``; ``5 * 0.2 > 1`` in exact arithmetic,
since the float 0.2 is above 1/5).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from numbers import Rational

from privacy._checks import _is_real, check_int, check_nonnegative
from privacy.errors import PrivacyError

__all__ = ["exact", "fits", "share", "total"]


def exact(value: float) -> Fraction:
    """The exact rational value of a finite float ``value >= 0``.

    Raises
    ------
    PrivacyError
        If ``value`` is not a number, is negative, NaN or infinite.
    """
    return Fraction(check_nonnegative("value", value))


def _values(name: str, values: Iterable[float] | float) -> list[float]:
    """``values`` (one number or an iterable) as floats >= 0, ``inf`` allowed, NaN refused."""
    items = [values] if _is_real(values) else list(values)  # type: ignore[arg-type]
    return [check_nonnegative(name, value, allow_inf=True) for value in items]


def fits(spent: Iterable[float], extra: Iterable[float] | float, budget: float) -> bool:
    """Whether ``Σ spent + Σ extra <= budget``, exactly.

    Parameters
    ----------
    spent
        Figures already spent (ε or δ values, each ``>= 0``, ``inf`` allowed).
    extra
        The figure(s) to add: one number or an iterable.
    budget
        The budget, ``>= 0``; ``inf`` = no budget (every spend fits).

    Returns
    -------
    bool
        ``True`` if the exact rational sum is at most ``budget``. An ``inf`` figure fits only an
        ``inf`` budget.

    Raises
    ------
    PrivacyError
        If a figure or the budget is NaN, negative or not a number.
    """
    limit = check_nonnegative("budget", budget, allow_inf=True)
    values = [*_values("spent", spent), *_values("extra", extra)]
    if math.isinf(limit):
        return True
    if any(math.isinf(value) for value in values):
        return False
    return sum((Fraction(value) for value in values), Fraction(0)) <= Fraction(limit)


def total(values: Iterable[float]) -> float:
    """The exact sum of ``values`` (each ``>= 0``) rounded to the nearest float, for display.

    ``inf`` if any value is ``inf`` (or the sum is beyond the largest float). Budgets are checked
    with :func:`fits`, never by comparing this rounded figure.
    """
    items = _values("values", values)
    if any(math.isinf(value) for value in items):
        return math.inf
    try:
        return float(sum((Fraction(value) for value in items), Fraction(0)))
    except OverflowError:
        return math.inf


def _fraction(value: Fraction | float) -> Fraction:
    if not _is_real(value):
        raise PrivacyError(f"fraction must be a finite number > 0. Found {value!r}.")
    if isinstance(value, Rational):  # int, Fraction, numpy integers: exact already
        result = Fraction(value.numerator, value.denominator)
    else:
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number):
            raise PrivacyError(f"fraction must be a finite number > 0. Found {value!r}.")
        result = Fraction(number)
    if result <= 0:
        raise PrivacyError(f"fraction must be a finite number > 0. Found {value!r}.")
    return result


def share(budget: float, fraction: Fraction | float = 1, parts: int = 1) -> float:
    """The largest float that is at most ``budget * fraction / parts``, exactly.

    How a piece of a budget is derived (a round's ε: ``share(B, parts=T)``; a domain's part of a
    round: ``share(ε_round, f_d)``): rounding down makes ``parts`` pieces sum to at most
    ``budget * fraction`` in exact arithmetic, so the accountant (:func:`fits`) never refuses the
    last of them for a rounding error. Nearest rounding would not: ``0.2 > 1/5``.

    Parameters
    ----------
    budget
        The budget, ``>= 0``; ``inf`` gives ``inf``.
    fraction
        Part of the budget, a finite number ``> 0`` (an int or a :class:`~fractions.Fraction`
        stays exact).
    parts
        Number of equal pieces, an integer ``>= 1``.

    Raises
    ------
    PrivacyError
        If an argument is out of range.
    """
    limit = check_nonnegative("budget", budget, allow_inf=True)
    part = _fraction(fraction)
    count = check_int("parts", parts, minimum=1)
    if math.isinf(limit):
        return math.inf
    quotient = Fraction(limit) * part / count
    try:
        result = float(quotient)  # nearest: at most one step above the quotient
    except OverflowError:
        result = math.inf
    if math.isinf(result) or Fraction(result) > quotient:
        result = math.nextafter(result, 0.0)
    return result
