"""Projection of layers onto a pattern library, connectivity pruning and unstructured masks.

Scoring is kept apart from thresholding (as in Synaptic-Flow): callers pass energies or scores,
these functions only decide which kernels or weights are kept.

Counting rule (shared by every function here): keeping a fraction ``f`` of ``n`` items keeps
exactly ``kept_count(f, n) = floor(f * n + 1/2)`` items (round half up), except that a positive
``f`` always keeps at least one item, so that no layer is emptied by rounding. ``f = 0`` keeps
none. Ties in a score are always broken towards the lower flat (row-major) index.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Literal

import torch

from kernels._checks import check_fraction, check_same_layers
from kernels.errors import KernelsError
from kernels.patterns import KERNEL_ENTRIES, KERNEL_SIZE, pattern_energy, validate_library

__all__ = [
    "LayerPolicy",
    "Scope",
    "assign_patterns",
    "kept_count",
    "kernel_keep_fraction",
    "pattern_mask",
    "project_onto_library",
    "select_kernels",
    "unstructured_mask",
]

Scope = Literal["layer", "global"]


class LayerPolicy(enum.StrEnum):
    """How a layer is sparsified.

    ``pattern``: 3x3 conv whose kept kernels follow library patterns (plus connectivity pruning);
    ``unstructured``: any weight tensor with an exact top-k mask; ``dense``: left untouched.
    """

    PATTERN = "pattern"
    UNSTRUCTURED = "unstructured"
    DENSE = "dense"


def kept_count(fraction: float, total: int) -> int:
    """Number of items kept when keeping ``fraction`` of ``total`` (see the module's counting rule).

    Parameters
    ----------
    fraction : float
        Fraction to keep, in ``[0, 1]``.
    total : int
        Number of items, ``>= 0``.

    Returns
    -------
    int
        ``floor(fraction * total + 1/2)``, raised to 1 when ``fraction > 0`` and ``total > 0``.
    """
    fraction = check_fraction("fraction", fraction)
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise KernelsError(f"total must be a non-negative int. Found {total!r}.")
    if fraction == 0.0 or total == 0:
        return 0
    return min(total, max(1, math.floor(fraction * total + 0.5)))


def kernel_keep_fraction(density: float, entries: int) -> float:
    """Fraction of kernels to keep so that a pattern layer reaches a weight density.

    A kept kernel keeps ``entries`` of its 9 weights, so ``density = fraction * entries / 9``.

    Parameters
    ----------
    density : float
        Target weight density (kept / total) of the layer, in ``[0, entries / 9]``.
    entries : int
        Kept entries per library pattern, ``m`` in ``[1, 9]``.

    Returns
    -------
    float
        ``density * 9 / entries``, in ``[0, 1]``.

    Raises
    ------
    KernelsError
        If ``density > entries / 9``: patterns of ``m`` entries cannot keep more than ``m / 9``
        of a layer's weights.
    """
    density = check_fraction("density", density)
    if isinstance(entries, bool) or not isinstance(entries, int) or not 1 <= entries <= KERNEL_ENTRIES:
        raise KernelsError(f"entries must be an int in [1, {KERNEL_ENTRIES}]. Found {entries!r}.")
    fraction = density * KERNEL_ENTRIES / entries
    # A density given as m / 9 may land a rounding error above 1.
    if fraction > 1.0 + 1e-9:
        raise KernelsError(
            f"density must be at most entries / 9 = {entries / KERNEL_ENTRIES:.6g} for patterns of "
            f"{entries} entries. Found {density}."
        )
    return min(fraction, 1.0)


def _check_scores(name: str, scores: object, *, dims: int | None = None) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor):
        raise KernelsError(f"{name} must be a torch.Tensor. Found {type(scores).__name__}.")
    if scores.dtype == torch.bool or scores.is_complex():
        raise KernelsError(f"{name} dtype must be real. Found {scores.dtype}.")
    if dims is not None and scores.dim() != dims:
        raise KernelsError(f"{name} must have {dims} dimensions. Found shape {tuple(scores.shape)}.")
    if scores.is_floating_point() and bool(torch.isnan(scores).any()):
        raise KernelsError(f"{name} must not contain NaN. Found NaN.")
    return scores


def _top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Exact top-``k`` of a flat NaN-free tensor, ties broken towards the lower index.

    ``torch.topk`` alone does not say which of equal scores it keeps, so it only finds the
    threshold (the k-th largest score); everything above it is kept, and the remaining places go
    to the threshold's ties in index order.
    """
    n = scores.numel()
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    threshold = torch.topk(scores, k, sorted=False).values.min()
    keep = scores > threshold
    needed = k - int(keep.sum())
    if needed > 0:
        ties = torch.nonzero(scores == threshold).squeeze(1)
        keep[ties[:needed]] = True
    return keep


def assign_patterns(energy_values: torch.Tensor, library: torch.Tensor) -> torch.Tensor:
    """Give every kernel the library pattern that keeps the most energy.

    Parameters
    ----------
    energy_values : torch.Tensor
        Non-negative, finite floating tensor of shape ``(O, I, 3, 3)``: ``w ** 2`` of public
        weights or an already released saliency.
    library : torch.Tensor
        Valid library (see :func:`kernels.patterns.validate_library`) of shape ``(P, 3, 3)``.

    Returns
    -------
    torch.Tensor
        Int64 tensor of shape ``(O, I)`` with values in ``[0, P)``; ties go to the lower library
        index.
    """
    validate_library(library)
    if not isinstance(energy_values, torch.Tensor) or energy_values.dim() != 4:
        found = tuple(energy_values.shape) if isinstance(energy_values, torch.Tensor) else type(energy_values).__name__
        raise KernelsError(f"energy_values shape must be (O, I, 3, 3). Found {found}.")
    # torch.argmax returns the first maximal index, which is the documented tie rule.
    return pattern_energy(energy_values, library).argmax(dim=-1)


def pattern_mask(library: torch.Tensor, assignment: torch.Tensor, connectivity: torch.Tensor) -> torch.Tensor:
    """Weight mask of a pattern layer: ``mask[o, i] = connectivity[o, i] & library[assignment[o, i]]``.

    Parameters
    ----------
    library : torch.Tensor
        Bool ``(P, 3, 3)``.
    assignment : torch.Tensor
        Integer ``(O, I)`` with values in ``[0, P)``.
    connectivity : torch.Tensor
        Bool ``(O, I)``.

    Returns
    -------
    torch.Tensor
        Bool ``(O, I, 3, 3)``.
    """
    if assignment.shape != connectivity.shape or assignment.dim() != 2:
        raise KernelsError(
            f"assignment and connectivity must have the same (O, I) shape. Found "
            f"{tuple(assignment.shape)} and {tuple(connectivity.shape)}."
        )
    return library[assignment.long()] & connectivity.bool()[..., None, None]


def select_kernels(
    kernel_scores: Mapping[str, torch.Tensor],
    *,
    keep_fraction: float | Mapping[str, float],
    scope: Scope,
) -> dict[str, torch.Tensor]:
    """Connectivity pruning: keep the kernels with the highest scores.

    With ``scope="layer"`` each layer keeps exactly ``kept_count(f, O * I)`` kernels (at least one
    when ``f > 0``), ``f`` being ``keep_fraction`` or its entry for the layer. With
    ``scope="global"`` the layers compete: exactly ``kept_count(f, sum of O * I)`` kernels are kept
    overall, so scores must be comparable across layers, and a layer may keep no kernel at all
    (layer collapse, Tanaka et al. 2020, "Pruning neural networks without any data by iteratively
    conserving synaptic flow"). Ties go to the lower flat index, layers taken in mapping order.

    Parameters
    ----------
    kernel_scores : Mapping[str, torch.Tensor]
        Real ``(O, I)`` score per kernel (for example vote counts), per layer.
    keep_fraction : float or Mapping[str, float]
        Fraction of kernels to keep, in ``[0, 1]``; a mapping (one entry per layer, no more, no
        less) only with ``scope="layer"``.
    scope : {"layer", "global"}
        Where the top fraction is taken.

    Returns
    -------
    dict[str, torch.Tensor]
        Bool ``(O, I)`` connectivity per layer, in the order of ``kernel_scores``.
    """
    if scope not in ("layer", "global"):
        raise KernelsError(f"scope must be one of 'layer', 'global'. Found {scope!r}.")
    for name, scores in kernel_scores.items():
        _check_scores(f"kernel_scores[{name!r}]", scores, dims=2)
    if isinstance(keep_fraction, Mapping):
        if scope == "global":
            raise KernelsError("keep_fraction must be a single float with scope='global'. Found a mapping.")
        check_same_layers("keep_fraction", keep_fraction, kernel_scores)
        fractions = {name: check_fraction(f"keep_fraction[{name!r}]", keep_fraction[name]) for name in kernel_scores}
    else:
        fraction = check_fraction("keep_fraction", keep_fraction)
        fractions = dict.fromkeys(kernel_scores, fraction)

    if scope == "layer":
        return {
            name: _top_k_mask(scores.reshape(-1), kept_count(fractions[name], scores.numel())).reshape(scores.shape)
            for name, scores in kernel_scores.items()
        }
    if not kernel_scores:
        return {}
    flat = torch.cat([scores.reshape(-1) for scores in kernel_scores.values()])
    keep = _top_k_mask(flat, kept_count(fraction, flat.numel()))
    pieces = torch.split(keep, [scores.numel() for scores in kernel_scores.values()])
    return {name: piece.reshape(scores.shape) for (name, scores), piece in zip(kernel_scores.items(), pieces)}


def unstructured_mask(scores: torch.Tensor, *, density: float) -> torch.Tensor:
    """Exact top-k mask of any weight tensor.

    Parameters
    ----------
    scores : torch.Tensor
        Real score per weight (for example ``|w|`` or vote counts), any shape.
    density : float
        Fraction of weights to keep, in ``[0, 1]``; exactly ``kept_count(density, numel)`` weights
        are kept, ties going to the lower flat index.

    Returns
    -------
    torch.Tensor
        Bool tensor of the shape of ``scores``.
    """
    _check_scores("scores", scores)
    k = kept_count(check_fraction("density", density), scores.numel())
    return _top_k_mask(scores.reshape(-1), k).reshape(scores.shape)


def project_onto_library(
    weight: torch.Tensor, library: torch.Tensor, *, keep_fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude projection of one 3x3 conv weight onto a library (PatDNN's projection step).

    Each kernel gets the pattern keeping the most squared magnitude; its kernel score is that
    kept energy, and the top ``keep_fraction`` of kernels (per layer, see
    :func:`select_kernels`) stay connected. Projecting ``weight * mask`` again returns the same
    mask: a kept kernel keeps its energy and pattern, a removed one has none.

    Parameters
    ----------
    weight : torch.Tensor
        Floating ``(O, I, 3, 3)`` weight.
    library : torch.Tensor
        Bool ``(P, 3, 3)`` library.
    keep_fraction : float
        Fraction of kernels to keep, in ``[0, 1]``.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        Int64 assignment ``(O, I)`` and bool connectivity ``(O, I)``.
    """
    validate_library(library)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4 or weight.shape[2:] != (KERNEL_SIZE, KERNEL_SIZE):
        found = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise KernelsError(f"weight shape must be (O, I, 3, 3). Found {found}.")
    energy = pattern_energy(weight.square(), library)
    assignment = energy.argmax(dim=-1)
    kept_energy = energy.gather(-1, assignment.unsqueeze(-1)).squeeze(-1)
    connectivity = select_kernels({"weight": kept_energy}, keep_fraction=keep_fraction, scope="layer")["weight"]
    return assignment, connectivity

