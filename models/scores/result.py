"""What a scorer returns: per-domain score vectors, with the clipping that bounds their sensitivity."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import torch

from models.errors import ScoreError

__all__ = ["VECTOR_KEYS", "ClipMode", "Domain", "ScoreResult", "check_clip_bound"]


class Domain(StrEnum):
    """What the scores are about.

    ``weights``: one score per weight (every scored layer, the weight's shape).
    ``kernels``: one score per 3x3 kernel of a pattern layer, ``(O, I)``: the kernel's mass.
    ``patterns``: one score per candidate pattern, ``(N,)``: the mass of the layer's weight scores
    inside each candidate (``kernels.pattern_energy`` summed over the kernels), per pattern layer,
    and pooled over the pattern layers.
    """

    WEIGHTS = "weights"
    KERNELS = "kernels"
    PATTERNS = "patterns"


class ClipMode(StrEnum):
    """How one example's contribution to a score vector is bounded before the mean.

    ``clip``: every coordinate clamped to ``[0, C]``. ``normalise``: the vector divided by its own
    maximum, so it lies in ``[0, 1]`` (``C = 1``). Either way, replacing one of ``n`` examples
    moves every coordinate of the mean by at most ``C / n`` (L-infinity, DESIGN section 5.1).

    ``l2``: negatives clamped to 0, then the whole vector (the vector a vote releases from: one
    layer's kernels, or the pattern vector pooled over the layers) scaled down to L2 norm ``<= C``.
    Replacing example ``a`` by ``b`` moves the mean by ``(a - b) / n`` with
    ``‖a − b‖² = ‖a‖² + ‖b‖² − 2a·b <= 2C²`` (``a·b >= 0``): L2 sensitivity ``√2·C / n``
    (DESIGN section 5.1, Gaussian noisy top-k).
    """

    CLIP = "clip"
    NORMALISE = "normalise"
    L2 = "l2"

    @property
    def sensitivity_norm(self) -> str:
        """Norm of the replace-one sensitivity: ``"l2"`` for ``l2``, ``"linf"`` otherwise.

        The spelling is ``privacy.events.SENSITIVITY_NORMS``'s (models may not import privacy).
        """
        return "l2" if self is ClipMode.L2 else "linf"


VECTOR_KEYS: tuple[str, ...] = ("weights", "kernels", "patterns", "pooled_patterns")
"""The released vector kinds; ``pooled_patterns`` is clipped on its own (it is one vector)."""


@dataclass(frozen=True, kw_only=True)
class ScoreResult:
    """Scores of one model (and, for data-dependent scorers, one client's examples).

    Only the requested domains are filled; the others are empty mappings (``pooled_patterns`` is
    ``None`` unless ``patterns`` was requested).

    For a data-dependent scorer every vector (one per domain and layer, plus the pooled pattern
    vector) is the mean over ``num_examples`` examples of per-example contributions bounded to
    ``[0, clip_bound[key]]`` per coordinate, so its replace-one sensitivity per coordinate is
    ``clip_bound[key] / num_examples`` (:meth:`sensitivity`); under ``clip_mode = l2`` each
    contribution is non-negative with L2 norm at most ``clip_bound[key]`` and the vector's L2
    sensitivity is ``√2·clip_bound[key] / num_examples``. Data-free scores read no private
    data: ``clip_bound`` is ``None``, ``num_examples`` is 0 and their sensitivity is 0.
    """

    scorer: str = field(metadata={"help": "registry name of the scorer"})
    data_dependent: bool = field(metadata={"help": "whether the scores read private examples"})
    weights: Mapping[str, torch.Tensor] = field(metadata={"help": "layer -> scores of the weight shape"})
    kernels: Mapping[str, torch.Tensor] = field(metadata={"help": "pattern layer -> (O, I) kernel scores"})
    patterns: Mapping[str, torch.Tensor] = field(metadata={"help": "pattern layer -> (N,) pattern scores"})
    pooled_patterns: torch.Tensor | None = field(metadata={"help": "(N,) pattern scores summed over layers"})
    num_examples: int = field(metadata={"help": "n: examples averaged over (0 when data-free)"})
    clip_mode: ClipMode | None = field(metadata={"help": "per-example bounding; None when data-free"})
    clip_bound: Mapping[str, float] | None = field(metadata={"help": "vector key -> C; None when data-free"})

    def __post_init__(self) -> None:
        if self.data_dependent:
            if self.num_examples < 1 or self.clip_bound is None or self.clip_mode is None:
                raise ScoreError(
                    f"a data-dependent result must have num_examples >= 1, clip_mode and clip_bound. "
                    f"Found {self.num_examples}, {self.clip_mode}, {self.clip_bound}."
                )
        elif self.num_examples != 0 or self.clip_bound is not None or self.clip_mode is not None:
            raise ScoreError(
                f"a data-free result must have num_examples 0 and no clipping. Found {self.num_examples}, "
                f"{self.clip_mode}, {self.clip_bound}."
            )

    def sensitivity(self, key: str) -> float:
        """Replace-one sensitivity of vector ``key``, in the norm :attr:`sensitivity_norm`.

        L-infinity ``C / n`` (every coordinate) under ``clip`` and ``normalise``; L2 ``√2·C / n``
        (the whole vector) under ``l2`` (:class:`ClipMode`). ``key`` is one of
        :data:`VECTOR_KEYS`; 0.0 for data-free scores.
        """
        if key not in VECTOR_KEYS:
            raise ScoreError(f"key must be one of {list(VECTOR_KEYS)}. Found {key!r}.")
        if not self.data_dependent:
            return 0.0
        assert self.clip_bound is not None
        if key not in self.clip_bound:
            raise ScoreError(f"key must be a computed vector {sorted(self.clip_bound)}. Found {key!r}.")
        factor = math.sqrt(2.0) if self.clip_mode is ClipMode.L2 else 1.0
        return factor * self.clip_bound[key] / self.num_examples

    @property
    def sensitivity_norm(self) -> str | None:
        """``"l2"`` or ``"linf"``: the norm of :meth:`sensitivity`; ``None`` for data-free scores."""
        return None if self.clip_mode is None else self.clip_mode.sensitivity_norm

    def vector(self, key: str, layer: str | None = None) -> torch.Tensor:
        """One released vector: ``vector("pooled_patterns")`` or ``vector("kernels", "conv2")``."""
        if key == "pooled_patterns":
            if self.pooled_patterns is None:
                raise ScoreError("pooled_patterns must have been requested (domain 'patterns'). Found None.")
            return self.pooled_patterns
        if key not in VECTOR_KEYS:
            raise ScoreError(f"key must be one of {list(VECTOR_KEYS)}. Found {key!r}.")
        table: Mapping[str, torch.Tensor] = getattr(self, key)
        if layer not in table:
            raise ScoreError(f"layer must be one of {list(table)} for {key}. Found {layer!r}.")
        return table[layer]


def check_clip_bound(key: str, value: object) -> float:
    """A clip bound must be a finite positive real."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) < math.inf:
        raise ScoreError(f"clip_bound[{key!r}] must be a finite positive number. Found {value!r}.")
    return float(value)
