"""Top-k selection on noisy values with data-independent tie-breaking (private helper).

Ties between noisy values are broken uniformly at random with fresh randomness, so the choice
among tied items depends on nothing but the noisy values (post-processing of the noisy vector).
Linear time per row: one partition to find the k-th largest value, one partial sort of keys.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def topk_rows(values: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``k`` largest entries of every row, ordered by decreasing value.

    Parameters
    ----------
    values
        Array of shape ``(num_rows, d)`` with no NaN.
    k
        Number of indices per row, ``1 <= k <= d``.
    rng
        Source of the tie-breaking randomness.

    Returns
    -------
    numpy.ndarray
        int64 array of shape ``(num_rows, k)``.
    """
    num_rows, d = values.shape
    kth = np.partition(values, d - k, axis=1)[:, d - k : d - k + 1]
    above = values > kth
    tied = values == kth
    # Keys: -1 for items certainly selected, uniform(0, 1) for items tied with the k-th value
    # (a uniformly random subset of them fills the remaining places), 2 for the others.
    keys = np.where(above, -1.0, 2.0)
    tied_at = np.nonzero(tied)
    keys[tied_at] = rng.random(tied_at[0].size)
    chosen = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < d else np.tile(np.arange(d), (num_rows, 1))
    chosen_values = np.take_along_axis(values, chosen, axis=1)
    order = np.lexsort((rng.random(chosen.shape), -chosen_values), axis=-1)
    return np.take_along_axis(chosen, order, axis=1).astype(np.int64, copy=False)


_MAX_CHUNK_ELEMENTS = 1 << 23  # bounds the memory of num_draws x d noise draws


def noisy_topk_rows(
    values: np.ndarray,
    *,
    k: int,
    rng: np.random.Generator,
    num_draws: int,
    noise: Callable[[tuple[int, int]], np.ndarray] | None,
) -> np.ndarray:
    """``num_draws`` independent top-k of ``values + noise((rows, d))`` (no noise if ``None``).

    Draws in chunks so that memory stays bounded; returns an int64 ``(num_draws, k)`` array.
    """
    d = values.size
    rows_per_chunk = max(1, _MAX_CHUNK_ELEMENTS // d)
    out = np.empty((num_draws, k), dtype=np.int64)
    for start in range(0, num_draws, rows_per_chunk):
        rows = min(rows_per_chunk, num_draws - start)
        noisy = np.broadcast_to(values, (rows, d)) if noise is None else values + noise((rows, d))
        out[start : start + rows] = topk_rows(noisy, k, rng)
    return out
