"""Normalisation layers that are safe for federated, per-example (DP) training."""

from __future__ import annotations

import math
from enum import StrEnum

from torch import nn

from models.errors import ModelConfigError

__all__ = ["Norm", "make_norm", "scaled"]


class Norm(StrEnum):
    """Normalisation after a convolution.

    ``none``: nothing. ``group``: GroupNorm, statistics per example (no running state, no mixing
    of the examples of a batch). ``batch``: BatchNorm, only for centralised non-private baselines:
    its running statistics are skewed per client under non-IID partitions and averaging them is
    not meaningful, and batch statistics couple the examples of a batch, so per-example gradients
    (Opacus, torch.func) are undefined; Opacus refuses BatchNorm for that reason.
    """

    NONE = "none"
    GROUP = "group"
    BATCH = "batch"


def _num_groups(channels: int, max_groups: int = 8) -> int:
    # The largest divisor of `channels` that is at most `max_groups` (GroupNorm needs a divisor).
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


def make_norm(norm: Norm | str, channels: int) -> nn.Module:
    """Return the normalisation layer for ``channels`` feature maps (``nn.Identity`` for ``none``)."""
    try:
        kind = Norm(norm)
    except ValueError as err:
        raise ModelConfigError(f"norm must be one of {[n.value for n in Norm]}. Found {norm!r}.") from err
    if kind is Norm.NONE:
        return nn.Identity()
    if kind is Norm.GROUP:
        return nn.GroupNorm(_num_groups(channels), channels)
    return nn.BatchNorm2d(channels)


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1."""
    return max(1, int(math.floor(channels * width + 0.5)))
