"""Shared argument checks (private). Messages use ``"<name> must be <constraint>. Found <value>."``."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from privacy.errors import PrivacyError


def _is_real(value: object) -> bool:
    return isinstance(value, (Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_epsilon(epsilon: object, *, allow_inf: bool = True) -> float:
    """Return ``epsilon`` as a float after checking ``0 < epsilon`` (``inf`` only if allowed)."""
    constraint = "a number > 0 (inf = no noise)" if allow_inf else "a finite number > 0"
    if not _is_real(epsilon):
        raise PrivacyError(f"epsilon must be {constraint}. Found {epsilon!r}.")
    value = float(epsilon)  # type: ignore[arg-type]
    if math.isnan(value) or value <= 0.0 or (math.isinf(value) and not allow_inf):
        raise PrivacyError(f"epsilon must be {constraint}. Found {epsilon!r}.")
    return value


def check_positive_finite(name: str, value: object) -> float:
    """Return ``value`` as a float after checking it is finite and > 0."""
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) <= 0.0:  # type: ignore[arg-type]
        raise PrivacyError(f"{name} must be a finite number > 0. Found {value!r}.")
    return float(value)  # type: ignore[arg-type]


def check_nonnegative(name: str, value: object, *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float after checking it is >= 0 (and finite unless allowed)."""
    ok = _is_real(value) and not math.isnan(float(value)) and float(value) >= 0.0  # type: ignore[arg-type]
    if ok and not allow_inf and math.isinf(float(value)):  # type: ignore[arg-type]
        ok = False
    if not ok:
        kind = "a number >= 0" if allow_inf else "a finite number >= 0"
        raise PrivacyError(f"{name} must be {kind}. Found {value!r}.")
    return float(value)  # type: ignore[arg-type]


def check_int(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` as an int after checking ``minimum <= value (<= maximum)``."""
    if not isinstance(value, (Integral, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise PrivacyError(f"{name} must be an integer. Found {value!r}.")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise PrivacyError(f"{name} must be {bound}. Found {number}.")
    return number


def check_rng(rng: object) -> np.random.Generator:
    """Check that ``rng`` is a numpy Generator (see :func:`privacy.rng.make_rng`)."""
    if not isinstance(rng, np.random.Generator):
        raise PrivacyError(
            f"rng must be a numpy.random.Generator (use privacy.make_rng()). Found {type(rng).__name__}."
        )
    return rng


def check_scores(scores: object) -> np.ndarray:
    """Return ``scores`` as a 1-D float64 array after checking it is non-empty and finite."""
    if isinstance(scores, np.ndarray) and scores.dtype == np.bool_:
        raise PrivacyError("scores must be a 1-D array of real numbers. Found dtype bool.")
    try:
        array = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise PrivacyError(f"scores must be a 1-D array of real numbers. Found {type(scores).__name__}.") from err
    if array.ndim != 1 or array.size == 0:
        raise PrivacyError(f"scores must be a non-empty 1-D array. Found shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise PrivacyError(f"scores must be finite (no NaN or inf). Found {bad} non-finite value(s).")
    return array


def check_counts(counts: object) -> np.ndarray:
    """Return histogram counts as a 1-D int64 array after checking they are non-negative integers."""
    array = np.asarray(counts)
    if array.ndim != 1 or array.size == 0:
        raise PrivacyError(f"counts must be a non-empty 1-D integer array. Found shape {array.shape}.")
    if array.dtype == np.bool_ or array.dtype.kind not in "iu":
        raise PrivacyError(f"counts must be a non-empty 1-D integer array. Found dtype {array.dtype}.")
    if np.any(array < 0):
        raise PrivacyError(f"counts must be >= 0. Found minimum {int(array.min())}.")
    return array.astype(np.int64, copy=False)
