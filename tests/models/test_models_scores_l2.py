"""L2 per-example bounding (``ClipMode.L2``): the mean's replace-one L2 sensitivity is √2·C/n.

Checked numerically on real per-example SNIP gradients (torch.func) of a small Conv4 on random
MNIST-like data: many seeded replacements of one example (random ones and outliers with another
label) move every released vector of the mean (each layer's weights and kernels, each layer's
patterns, the pooled pattern vector as one vector) by at most √2·C/n in L2, and the largest move
comes close to it (the bound is not vacuous). The bounding rule on any input is the hypothesis
test of test_models_scores_sensitivity (every ClipMode).
"""

from __future__ import annotations

import math

import pytest
import torch

import kernels
import models
from models import scores
from models.scores import ClipMode, Domain, ScoreRequest, ScoreResult

N = 12
CANDIDATES = kernels.enumerate_candidates(4)
REPLACEMENTS = 10


def _vectors(result: ScoreResult) -> dict[tuple[str, str], torch.Tensor]:
    out = {(key, layer): v for key in ("weights", "kernels", "patterns") for layer, v in getattr(result, key).items()}
    out[("pooled_patterns", "")] = result.pooled_patterns
    return out


def test_replacing_one_example_moves_the_mean_by_at_most_sqrt2_c_over_n_in_l2() -> None:
    model = models.get("conv4", num_classes=10, in_channels=1, image_size=12, width=0.125)
    request = ScoreRequest(
        domains=frozenset(Domain), candidates=CANDIDATES, clip_mode="l2",
        clip_bound={"weights": 0.05, "kernels": 0.5, "patterns": 5.0, "pooled_patterns": 20.0},
    )
    snip = scores.get("snip", chunk_size=6)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, 1, 12, 12, generator=gen), torch.randint(0, 10, (N,), generator=gen)
    base = snip.score(model, request, (x, y))
    assert base.sensitivity_norm == "l2"
    reference = _vectors(base)
    worst: dict[tuple[str, str], float] = dict.fromkeys(reference, 0.0)
    for trial in range(REPLACEMENTS):
        x2, y2 = x.clone(), y.clone()
        i = int(torch.randint(0, N, (1,), generator=gen))
        scale = 40.0 if trial % 2 else 1.0  # outliers (huge gradients) and ordinary new examples
        x2[i] = scale * torch.randn(1, 12, 12, generator=gen)
        y2[i] = (y[i] + 1 + trial % 9) % 10
        moved = _vectors(snip.score(model, request, (x2, y2)))
        for key, vector in reference.items():
            bound = base.sensitivity(key[0])
            assert bound == math.sqrt(2.0) * base.clip_bound[key[0]] / N
            move = float(torch.linalg.vector_norm(moved[key] - vector))
            assert move <= bound * (1 + 1e-9), f"{key} moved {move} > √2·C/n = {bound}"
            worst[key] = max(worst[key], move / bound)
    print("L2 worst move / (√2·C/n):", {f"{k}/{l}": round(r, 3) for (k, l), r in worst.items()})
    assert max(worst.values()) > 0.8, "the bound should be nearly reached by some replacement"


def test_small_vectors_are_kept_and_the_norm_is_over_the_whole_vector() -> None:
    small = torch.tensor([[[0.1, 0.2], [0.0, -0.3]]])
    assert torch.equal(scores.bound_per_example(small, mode=ClipMode.L2, bound=1.0)[0, 0], torch.tensor([0.1, 0.2]).double())
    big = torch.full((1, 4, 4), 1.0)  # per-row norm 2, whole-vector norm 4
    out = scores.bound_per_example(big, mode=ClipMode.L2, bound=1.0)
    assert float(torch.linalg.vector_norm(out)) == pytest.approx(1.0, rel=1e-8)

