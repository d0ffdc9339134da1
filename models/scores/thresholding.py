"""Thresholding of weight scores into masks (kept apart from scoring, as in Synaptic-Flow)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from kernels import kept_count
from models.errors import ScoreError

__all__ = ["global_topk_masks"]


def global_topk_masks(scores: Mapping[str, torch.Tensor], *, density: float) -> dict[str, torch.Tensor]:
    """Keep the globally largest scores over all layers together.

    Exactly ``kernels.kept_count(density, total)`` weights are kept (round half up, at least one
    when ``density > 0``); ties are broken towards the earlier layer and the lower flat index.

    Parameters
    ----------
    scores
        Layer -> real scores of the weight shape (no NaN).
    density
        Fraction of all scored weights to keep, in ``[0, 1]``.

    Returns
    -------
    dict[str, torch.Tensor]
        Layer -> bool mask of the weight shape.
    """
    if not scores:
        raise ScoreError("scores must hold at least one layer. Found none.")
    flat = torch.cat([s.detach().reshape(-1).to(torch.float64) for s in scores.values()])
    if bool(torch.isnan(flat).any()):
        raise ScoreError("scores must not contain NaN. Found NaN.")
    keep = kept_count(density, flat.numel())
    if keep == 0:
        kept = torch.zeros_like(flat, dtype=torch.bool)
    else:
        # O(n) selection instead of a full sort: everything above the k-th largest value, then
        # the first entries (in flat order) equal to it until exactly k are kept.
        threshold = torch.kthvalue(flat.cpu(), flat.numel() - keep + 1).values.to(flat.device)
        above = flat > threshold
        tied = flat == threshold
        kept = above | (tied & (torch.cumsum(tied, 0) <= keep - int(above.sum())))
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = kept[start : start + s.numel()].reshape(s.shape)
        start += s.numel()
    return out
