"""Candidate patterns for 3x3 kernels, their energy, and library selection.

A *pattern* is a boolean 3x3 mask. Positions are numbered in flat row-major order::

    0 1 2
    3 4 5
    6 7 8

so the centre is position 4. A *library* is a stack of ``P`` distinct patterns with the same
number ``m`` of kept entries; a pattern ticket keeps every 3x3 kernel in one library shape or
removes it (Niu et al. 2020, "PatDNN", ASPLOS; Ma et al. 2020, "PCONV", AAAI).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch

from kernels.errors import KernelsError

__all__ = [
    "CENTRE_POSITION",
    "KERNEL_ENTRIES",
    "KERNEL_SIZE",
    "candidate_count",
    "enumerate_candidates",
    "pattern_energy",
    "select_library",
    "validate_library",
]

KERNEL_SIZE = 3
"""Side of the kernels that patterns apply to."""

KERNEL_ENTRIES = KERNEL_SIZE * KERNEL_SIZE
"""Number of entries of a 3x3 kernel."""

CENTRE_POSITION = KERNEL_ENTRIES // 2
"""Flat row-major index of the centre entry (4)."""


def _describe(obj: object) -> str:
    """Dtype of a tensor, else the type name: what an error message shows for a wrong input."""
    return str(obj.dtype) if isinstance(obj, torch.Tensor) else type(obj).__name__


def _check_entries(entries: int) -> None:
    if isinstance(entries, bool) or not isinstance(entries, int) or not 1 <= entries <= KERNEL_ENTRIES:
        raise KernelsError(f"entries must be an int in [1, {KERNEL_ENTRIES}]. Found {entries!r}.")


def candidate_count(entries: int, *, centre_fixed: bool = True) -> int:
    """Number of candidate patterns with ``entries`` kept positions.

    Parameters
    ----------
    entries : int
        Kept positions per pattern, ``m`` in ``[1, 9]``.
    centre_fixed : bool
        Whether the centre is always kept.

    Returns
    -------
    int
        ``C(8, m - 1)`` when the centre is fixed, else ``C(9, m)``.
    """
    _check_entries(entries)
    if centre_fixed:
        return math.comb(KERNEL_ENTRIES - 1, entries - 1)
    return math.comb(KERNEL_ENTRIES, entries)


@functools.lru_cache(maxsize=32)
def _candidates_array(entries: int, centre_fixed: bool) -> np.ndarray:
    if centre_fixed:
        others = [p for p in range(KERNEL_ENTRIES) if p != CENTRE_POSITION]
        combos = [(*c, CENTRE_POSITION) for c in itertools.combinations(others, entries - 1)]
    else:
        combos = list(itertools.combinations(range(KERNEL_ENTRIES), entries))
    # At most C(9, 4) = 126 rows: building the index table in Python is not a per-weight loop.
    rows = np.repeat(np.arange(len(combos)), entries)
    cols = np.asarray(combos, dtype=np.int64).reshape(-1)
    flat = np.zeros((len(combos), KERNEL_ENTRIES), dtype=bool)
    flat[rows, cols] = True
    flat.setflags(write=False)
    return flat


def enumerate_candidates(entries: int, *, centre_fixed: bool = True) -> torch.Tensor:
    """All 3x3 patterns with ``entries`` kept positions, in a stable order.

    Order: with ``centre_fixed`` the candidates follow
    ``itertools.combinations(non_centre_positions, entries - 1)`` over the eight non-centre flat
    row-major positions ``(0, 1, 2, 3, 5, 6, 7, 8)``, the centre being added to each; without it
    they follow ``itertools.combinations(range(9), entries)``. Both orders are lexicographic in the
    sorted kept positions, so candidate ``j`` means the same pattern in every run and version.

    Parameters
    ----------
    entries : int
        Kept positions per pattern, ``m`` in ``[1, 9]``.
    centre_fixed : bool
        Keep the centre in every candidate (default), as PatDNN does.

    Returns
    -------
    torch.Tensor
        Bool tensor of shape ``(N, 3, 3)`` with ``N = candidate_count(entries, centre_fixed=...)``.
        A fresh tensor on every call.

    Raises
    ------
    KernelsError
        If ``entries`` is not an int in ``[1, 9]``.
    """
    _check_entries(entries)
    flat = _candidates_array(entries, bool(centre_fixed))
    return torch.from_numpy(flat.copy()).reshape(-1, KERNEL_SIZE, KERNEL_SIZE)


def validate_library(library: torch.Tensor) -> int:
    """Check that ``library`` is a valid pattern library and return its entries per pattern.

    A valid library is a bool tensor of shape ``(P, 3, 3)`` with ``P >= 1`` distinct patterns,
    all keeping the same number ``m >= 1`` of positions. Equal ``m`` makes energies comparable
    across patterns (a larger pattern would otherwise always win the energy argmax), and
    distinctness makes the assignment unambiguous.

    Parameters
    ----------
    library : torch.Tensor
        Candidate library to check.

    Returns
    -------
    int
        The common number ``m`` of kept entries per pattern.

    Raises
    ------
    KernelsError
        If any of the conditions above fails.
    """
    if not isinstance(library, torch.Tensor):
        raise KernelsError(f"library must be a torch.Tensor. Found {type(library).__name__}.")
    if library.dtype != torch.bool:
        raise KernelsError(f"library dtype must be torch.bool. Found {library.dtype}.")
    if library.dim() != 3 or library.shape[1:] != (KERNEL_SIZE, KERNEL_SIZE) or library.shape[0] < 1:
        raise KernelsError(f"library shape must be (P, 3, 3) with P >= 1. Found {tuple(library.shape)}.")
    counts = library.reshape(library.shape[0], -1).sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise KernelsError(
            f"library patterns must all keep the same number of entries. Found {counts.tolist()}."
        )
    entries = int(counts[0])
    if entries < 1:
        raise KernelsError(f"library patterns must keep at least 1 entry. Found {entries}.")
    flat = library.reshape(library.shape[0], -1)
    if torch.unique(flat, dim=0).shape[0] != flat.shape[0]:
        raise KernelsError(f"library patterns must be distinct. Found {flat.shape[0]} patterns with duplicates.")
    return entries


def pattern_energy(values: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Mass of ``values`` inside every candidate pattern, for any number of kernels at once.

    ``energy[..., j] = sum_{r, s} values[..., r, s] * candidates[j, r, s]``, computed as one
    matrix product over the flattened nine entries.

    Parameters
    ----------
    values : torch.Tensor
        Floating tensor of shape ``(..., 3, 3)``, already non-negative and finite: callers pass
        ``w ** 2`` (squared-magnitude energy) or a saliency score.
    candidates : torch.Tensor
        Bool tensor of shape ``(N, 3, 3)`` (candidates or a library).

    Returns
    -------
    torch.Tensor
        Tensor of shape ``(..., N)`` and the dtype of ``values``.

    Raises
    ------
    KernelsError
        If a shape or dtype is wrong, or ``values`` has a negative or non-finite entry.
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise KernelsError(f"values must be a floating-point torch.Tensor. Found {_describe(values)}.")
    if values.dim() < 2 or values.shape[-2:] != (KERNEL_SIZE, KERNEL_SIZE):
        raise KernelsError(f"values shape must be (..., 3, 3). Found {tuple(values.shape)}.")
    if not isinstance(candidates, torch.Tensor) or candidates.dtype != torch.bool:
        raise KernelsError(f"candidates must be a bool torch.Tensor. Found {_describe(candidates)}.")
    if candidates.dim() != 3 or candidates.shape[1:] != (KERNEL_SIZE, KERNEL_SIZE):
        raise KernelsError(f"candidates shape must be (N, 3, 3). Found {tuple(candidates.shape)}.")
    # One reduction pass: min and max propagate NaN, and NaN fails both comparisons; +inf is
    # refused too, since inf * 0 would put NaN in the product below.
    if values.numel():
        lowest, highest = torch.aminmax(values)
        if not (bool(lowest >= 0) and bool(highest < math.inf)):
            bad = lowest if not bool(lowest >= 0) else highest
            raise KernelsError(
                f"values must be non-negative and finite (pass w ** 2 or a saliency). Found {bad.item()}."
            )
    flat = values.reshape(-1, KERNEL_ENTRIES)
    weights = candidates.reshape(-1, KERNEL_ENTRIES).to(device=values.device, dtype=values.dtype)
    return (flat @ weights.T).reshape(*values.shape[:-2], candidates.shape[0])


def select_library(counts: torch.Tensor | np.ndarray, size: int) -> torch.Tensor:
    """Indices of the ``size`` candidates with the largest counts.

    Ties are broken towards the lower candidate index. The result is returned sorted in
    ascending candidate index, so the same winning set always yields the same library (and
    ``candidates[select_library(counts, P)]`` keeps the candidate order of
    :func:`enumerate_candidates`).

    Parameters
    ----------
    counts : torch.Tensor or numpy.ndarray
        1-D real vote histogram over the candidates (plain or noisy counts).
    size : int
        Library size ``P``, in ``[1, len(counts)]``.

    Returns
    -------
    torch.Tensor
        Int64 tensor of shape ``(size,)``, strictly increasing.

    Raises
    ------
    KernelsError
        If ``counts`` is not 1-D real without NaN, or ``size`` is out of range.
    """
    counts_t = torch.as_tensor(counts)
    if counts_t.dim() != 1 or counts_t.numel() == 0:
        raise KernelsError(f"counts shape must be (N,) with N >= 1. Found {tuple(counts_t.shape)}.")
    if counts_t.dtype == torch.bool or counts_t.is_complex():
        raise KernelsError(f"counts dtype must be real. Found {counts_t.dtype}.")
    if counts_t.is_floating_point() and bool(torch.isnan(counts_t).any()):
        raise KernelsError("counts must not contain NaN. Found NaN.")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= counts_t.numel():
        raise KernelsError(f"size must be an int in [1, {counts_t.numel()}]. Found {size!r}.")
    # A stable descending sort keeps the lower index first among equal counts.
    order = torch.sort(counts_t, descending=True, stable=True).indices
    return torch.sort(order[:size]).values.to(torch.int64)
