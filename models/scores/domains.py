"""From per-weight scores to the domain vectors, and the bounded per-example mean.

Privacy note (DESIGN sections 4 and 5.1). For data-dependent scores every released vector is

    v = (1/n) * sum_e bound(u_e),   bound(u) in [0, C]^d per coordinate,

where ``u_e`` is example e's own contribution to that vector (one vector per domain and layer,
plus the pooled pattern vector, each bounded on its own). Replacing one example changes one term,
so every coordinate of ``v`` moves by at most ``C / n`` (n treated as public). Under
``ClipMode.L2`` each term is instead non-negative with L2 norm ``<= C`` over the whole vector
(per key and layer, and the pooled pattern vector as one), and ``v`` moves by at most
``√2·C / n`` in L2. The bound is applied
*before* the mean, per example, which is what makes the statement hold; the tests check it on
real per-example gradients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import torch

from kernels import LayerPolicy, pattern_energy
from models.scores.result import ClipMode, Domain, ScoreResult

__all__ = ["BoundedMean", "bound_per_example", "domain_vectors", "freeze", "single_vectors"]

Vectors = dict[str, dict[str, torch.Tensor]]
"""Vector key -> layer -> tensor; the pooled pattern vector is stored under layer ``""``."""


def domain_vectors(
    weight_scores: Mapping[str, torch.Tensor],
    *,
    domains: frozenset[Domain],
    policies: Mapping[str, LayerPolicy],
    candidates: torch.Tensor | None,
) -> Vectors:
    """Batched domain vectors from per-weight scores of shape ``(B, *weight_shape)``.

    Non-finite scores are set to 0 first, so that sums are defined (the later bound holds for any
    values). ``kernels``: the sum over each 3x3 kernel, ``(B, O, I)``; ``patterns``: the pattern
    energy of every kernel summed over the layer's kernels, ``(B, N)``; ``pooled_patterns``: the
    sum of those over the pattern layers. Only requested domains are built.
    """
    out: Vectors = {"weights": {}, "kernels": {}, "patterns": {}, "pooled_patterns": {}}
    pooled: torch.Tensor | None = None
    for name, raw in weight_scores.items():
        scores = torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
        if Domain.WEIGHTS in domains:
            out["weights"][name] = scores
        if policies[name] is not LayerPolicy.PATTERN:
            continue
        if Domain.KERNELS in domains:
            out["kernels"][name] = scores.sum(dim=(-2, -1))
        if Domain.PATTERNS in domains:
            assert candidates is not None  # checked by ScoreRequest
            energy = pattern_energy(scores, candidates.to(scores.device)).sum(dim=(1, 2))
            out["patterns"][name] = energy
            pooled = energy if pooled is None else pooled + energy
    if pooled is not None:
        out["pooled_patterns"][""] = pooled
    return out


def bound_per_example(values: torch.Tensor, *, mode: ClipMode, bound: float) -> torch.Tensor:
    """Bound each example's vector (dim 0 indexes examples) to ``[0, bound]`` per coordinate.

    ``clip``: clamp to ``[0, bound]`` (NaN -> 0, +inf -> bound). ``normalise``: divide by the
    example's own largest finite coordinate (an all-zero vector stays zero; +inf -> 1), so the
    result lies in ``[0, 1]`` and ``bound`` must be 1. ``l2``: negatives and NaN -> 0, then each
    example's whole vector (all dims after the first) scaled to L2 norm ``<= bound``; a vector
    with ``+inf`` entries becomes those entries, equal, at norm ``bound`` (the limit of scaling).

    The result is float64: clamping a float32 tensor at ``bound`` would round the bound itself
    (float32(0.1) > 0.1) and let a contribution exceed C by a few ulps.
    """
    values = values.to(torch.float64)
    if mode is ClipMode.L2:
        return _bound_l2(values, bound)
    if mode is ClipMode.CLIP:
        return torch.nan_to_num(values, nan=0.0).clamp(min=0.0, max=bound)
    finite = torch.isfinite(values)
    clean = torch.where(finite, values, torch.zeros_like(values)).clamp(min=0.0)
    peak = clean.flatten(1).amax(dim=1).reshape(-1, *([1] * (values.dim() - 1)))
    scaled = torch.where(peak > 0, clean / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(clean))
    return torch.where(torch.isposinf(values), torch.ones_like(scaled), scaled)


_L2_MARGIN = 1e-9  # relative: the float64 norm is exact to far less, so the scaled norm stays <= C


def _bound_l2(values: torch.Tensor, bound: float) -> torch.Tensor:
    flat = torch.nan_to_num(values.flatten(1), nan=0.0, posinf=math.inf, neginf=0.0).clamp(min=0.0)
    infinite = torch.isinf(flat)
    has_inf = infinite.any(dim=1, keepdim=True)
    flat = torch.where(has_inf, infinite.to(flat.dtype), flat)  # the +inf direction, equal entries
    norm = torch.linalg.vector_norm(flat, dim=1, keepdim=True)
    limit = bound * (1.0 - _L2_MARGIN)
    factor = torch.where(norm > limit, limit / torch.where(norm > 0, norm, torch.ones_like(norm)), torch.ones_like(norm))
    return (flat * factor).reshape(values.shape)


class BoundedMean:
    """Running sum of bounded per-example domain vectors (float64), divided by n at the end."""

    def __init__(self, *, mode: ClipMode, bounds: Mapping[str, float]) -> None:
        self.mode = mode
        self.bounds = dict(bounds)
        self.sums: Vectors = {}
        self.count = 0

    def add(self, vectors: Vectors) -> None:
        """Add a chunk of examples (every tensor has the chunk's examples along dim 0)."""
        sizes = {t.shape[0] for table in vectors.values() for t in table.values()}
        if len(sizes) != 1:
            raise ValueError(f"chunk sizes must agree across vectors. Found {sorted(sizes)}.")
        for key, table in vectors.items():
            target = self.sums.setdefault(key, {})
            for layer, values in table.items():
                bounded = bound_per_example(values, mode=self.mode, bound=self.bounds[key])
                total = bounded.sum(dim=0, dtype=torch.float64)
                target[layer] = total if layer not in target else target[layer] + total
        self.count += sizes.pop()

    def means(self) -> Vectors:
        """Vector key -> layer -> mean over all examples added (float64)."""
        return {key: {layer: s / self.count for layer, s in table.items()} for key, table in self.sums.items()}


def single_vectors(vectors: Vectors) -> Vectors:
    """Drop the leading example dimension of size 1 (data-free scores are not bounded)."""
    return {key: {layer: t[0] for layer, t in table.items()} for key, table in vectors.items()}


def freeze(vectors: Vectors) -> dict[str, object]:
    """ScoreResult fields from vectors: read-only mappings and the pooled tensor (or None)."""
    pooled = vectors.get("pooled_patterns", {}).get("")
    return {
        "weights": MappingProxyType(dict(vectors.get("weights", {}))),
        "kernels": MappingProxyType(dict(vectors.get("kernels", {}))),
        "patterns": MappingProxyType(dict(vectors.get("patterns", {}))),
        "pooled_patterns": pooled,
    }


def data_free_result(
    scorer: str,
    scores: Mapping[str, torch.Tensor],
    *,
    domains: frozenset[Domain],
    policies: Mapping[str, LayerPolicy],
    candidates: torch.Tensor,
) -> ScoreResult:
    """The `ScoreResult` of a data-free scorer from one per-weight score tensor per layer.

    Data-free scores read no private data: no clipping, no examples (``num_examples = 0``), and the
    privacy code records their releases as ε = 0 events.
    """
    vectors = domain_vectors(
        {name: s.unsqueeze(0) for name, s in scores.items()},
        domains=domains,
        policies=policies,
        candidates=candidates,
    )
    return ScoreResult(
        scorer=scorer,
        data_dependent=False,
        num_examples=0,
        clip_mode=None,
        clip_bound=None,
        **freeze(single_vectors(vectors)),
    )
