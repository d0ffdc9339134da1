"""Record-level sensitivity of clipped mean scores (DESIGN.md 4 and 5.1).

A client's score for a domain is the mean over its ``n`` examples of per-example contributions
clipped to ``[0, C]`` per coordinate. Replacing one example changes one clipped contribution by at
most ``C`` per coordinate, so the mean moves by at most ``Δ = C / n`` per coordinate (L∞), ``n``
being treated as public. This module is numpy-only; the caller computes the contributions.
"""

from __future__ import annotations

import numpy as np

from privacy._checks import check_int, check_positive_finite
from privacy.errors import PrivacyError

__all__ = ["clipped_mean", "record_sensitivity"]


def record_sensitivity(*, clip_bound: float, num_examples: int) -> float:
    """L∞ sensitivity ``Δ = C / n`` of a mean of ``n`` contributions clipped to ``[0, C]``."""
    clip_bound = check_positive_finite("clip_bound", clip_bound)
    num_examples = check_int("num_examples", num_examples, minimum=1)
    return clip_bound / num_examples


def clipped_mean(contributions: np.ndarray, *, clip_bound: float) -> np.ndarray:
    """Mean over examples of contributions clipped to ``[0, clip_bound]`` per coordinate.

    Parameters
    ----------
    contributions
        Array of shape ``(n, d)``: one row of per-coordinate contributions per example.
    clip_bound
        ``C > 0``.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(d,)`` whose coordinates move by at most ``C / n`` when one row
        is replaced (:func:`record_sensitivity`).

    Raises
    ------
    PrivacyError
        If ``contributions`` is not a non-empty 2-D real array or holds NaN (infinities are
        clipped like any other value).
    """
    clip_bound = check_positive_finite("clip_bound", clip_bound)
    array = np.asarray(contributions)
    if array.ndim != 2 or array.shape[0] == 0 or array.dtype == np.bool_ or array.dtype.kind not in "iuf":
        raise PrivacyError(
            f"contributions must be a non-empty 2-D real array (examples x coordinates). Found"
            f" dtype {array.dtype}, shape {array.shape}."
        )
    array = array.astype(np.float64, copy=False)
    if np.isnan(array).any():
        raise PrivacyError("contributions must not contain NaN. Found NaN.")
    return np.clip(array, 0.0, clip_bound).mean(axis=0)
