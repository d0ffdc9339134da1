"""Replace-one sensitivity of data-dependent scores: every coordinate moves by at most C / n.

Checked numerically on real per-example gradients (SNIP via torch.func) of a small Conv4, with an
outlier replacing one example, for every domain vector; a negative control shows that without
the per-example bound the same replacement breaks the bound, so the check can fail.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kernels
import models
from models import scores
from models.scores import VECTOR_KEYS, ClipMode, Domain, ScoreRequest, ScoreResult

N = 12
CANDIDATES = kernels.enumerate_candidates(4)


def _neighbouring_datasets() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, 1, 12, 12, generator=gen), torch.randint(0, 10, (N,), generator=gen)
    x2, y2 = x.clone(), y.clone()
    x2[4] = 40.0 * torch.randn(1, 12, 12, generator=gen)  # an outlier with huge gradients
    y2[4] = (y[4] + 3) % 10
    return (x, y), (x2, y2)


def _vectors(result: ScoreResult) -> dict[tuple[str, str], torch.Tensor]:
    out = {}
    for key in ("weights", "kernels", "patterns"):
        for layer, values in getattr(result, key).items():
            out[(key, layer)] = values
    if result.pooled_patterns is not None:
        out[("pooled_patterns", "")] = result.pooled_patterns
    return out


def _max_moves(request: ScoreRequest) -> tuple[dict[tuple[str, str], float], ScoreResult]:
    model = models.get("conv4", num_classes=10, in_channels=1, image_size=12, width=0.125)
    models.apply_masks(model, {"conv2": torch.rand(8, 8, 3, 3) < 0.6})
    data, neighbour = _neighbouring_datasets()
    snip = scores.get("snip", chunk_size=5)
    first, second = snip.score(model, request, data), snip.score(model, request, neighbour)
    a, b = _vectors(first), _vectors(second)
    assert a.keys() == b.keys() and len(a) == 6 + 4 + 4 + 1  # 6 weight, 4 kernel, 4 pattern vectors, pooled
    return {k: float((a[k] - b[k]).abs().max()) for k in a}, first


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"clip_mode": "normalise"},
        {"clip_mode": "clip", "clip_bound": {"weights": 0.02, "kernels": 0.1, "patterns": 2.0, "pooled_patterns": 5.0}},
        {"clip_mode": "clip"},  # the calibrated defaults
    ],
    ids=["normalise", "clip-small", "clip-defaults"],
)
def test_replacing_one_example_moves_every_coordinate_by_at_most_c_over_n(request_kwargs: dict) -> None:
    request = ScoreRequest(domains=frozenset(Domain), candidates=CANDIDATES, **request_kwargs)
    moves, result = _max_moves(request)
    assert result.num_examples == N
    for (key, layer), move in moves.items():
        bound = result.sensitivity(key)
        assert bound == result.clip_bound[key] / N
        assert move <= bound * (1 + 1e-9), f"{key}/{layer} moved {move} > C/n = {bound}"
    # The bound is not vacuous: the outlier moves some coordinates by a sizeable part of it.
    assert max(moves[k] / result.sensitivity(k[0]) for k in moves) > 0.5


def test_negative_control_without_the_bound_the_outlier_breaks_c_over_n() -> None:
    small = {"weights": 0.02, "kernels": 0.1, "patterns": 2.0, "pooled_patterns": 5.0}
    unbounded = ScoreRequest(
        domains=frozenset(Domain), candidates=CANDIDATES, clip_mode="clip", clip_bound=dict.fromkeys(VECTOR_KEYS, 1e30)
    )
    moves, _ = _max_moves(unbounded)
    broken = [k for k, move in moves.items() if move > small[k[0]] / N]
    assert broken, "the outlier should move an unbounded mean by more than the small C/n"


@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(
        dtype="float64",
        shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=64),
    ),
    mode=st.sampled_from(list(ClipMode)),
    bound=st.floats(1e-6, 1e6),
)
def test_per_example_bound_lies_in_zero_c_for_any_input(values, mode: ClipMode, bound: float) -> None:
    c = 1.0 if mode is ClipMode.NORMALISE else bound
    out = scores.bound_per_example(torch.from_numpy(values), mode=mode, bound=c)
    assert out.shape == values.shape
    assert bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0.0 and float(out.max()) <= c
    if mode is ClipMode.L2:  # the whole example vector, not each coordinate
        assert float(torch.linalg.vector_norm(out.flatten(1), dim=1).max()) <= c
