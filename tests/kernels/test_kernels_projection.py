"""Pattern assignment, connectivity pruning, unstructured top-k and the projection's idempotence."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import (
    KernelsError,
    LayerPolicy,
    assign_patterns,
    enumerate_candidates,
    kept_count,
    kernel_keep_fraction,
    pattern_mask,
    project_onto_library,
    select_kernels,
    unstructured_mask,
)

FAST = settings(max_examples=40, deadline=None)


def _weights(shape: tuple[int, ...], kind: str, seed: int) -> torch.Tensor:
    """Random weights; ``discrete`` and ``sparse`` produce many exact ties and zeros."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "normal":
        return torch.randn(shape, generator=generator, dtype=torch.float64)
    if kind == "discrete":
        return torch.randint(-2, 3, shape, generator=generator).to(torch.float32)
    dense = torch.randn(shape, generator=generator)
    return dense * (torch.rand(shape, generator=generator) < 0.2)


def _library(entries: int, size: int, seed: int, centre_fixed: bool = True) -> torch.Tensor:
    candidates = enumerate_candidates(entries, centre_fixed=centre_fixed)
    size = min(size, candidates.shape[0])
    order = torch.randperm(candidates.shape[0], generator=torch.Generator().manual_seed(seed))
    return candidates[order[:size]]


def _kernels_follow_library(mask: torch.Tensor, library: torch.Tensor) -> bool:
    flat = mask.reshape(-1, 9)
    matches = (flat[:, None, :] == library.reshape(1, -1, 9)).all(dim=-1).any(dim=-1)
    return bool((matches | ~flat.any(dim=-1)).all())


layer_shapes = st.tuples(st.integers(1, 12), st.integers(1, 12))
weight_kinds = st.sampled_from(["normal", "discrete", "sparse"])


def test_layer_policy_values() -> None:
    assert [p.value for p in LayerPolicy] == ["pattern", "unstructured", "dense"]
    assert LayerPolicy("pattern") is LayerPolicy.PATTERN


@pytest.mark.parametrize(
    ("fraction", "total", "expected"),
    [(0.0, 10, 0), (1.0, 10, 10), (0.25, 10, 3), (0.35, 10, 4), (0.01, 10, 1), (0.5, 0, 0), (0.04, 100, 4)],
)
def test_kept_count_rounds_half_up_and_keeps_one(fraction: float, total: int, expected: int) -> None:
    assert kept_count(fraction, total) == expected


def test_kernel_keep_fraction() -> None:
    assert kernel_keep_fraction(0.2, 4) == pytest.approx(0.45)
    assert kernel_keep_fraction(4 / 9, 4) == 1.0
    assert kernel_keep_fraction(0.0, 4) == 0.0
    with pytest.raises(KernelsError, match="density must be at most entries / 9 = 0.444444"):
        kernel_keep_fraction(0.5, 4)
    with pytest.raises(KernelsError, match="density must be a real number in \\[0, 1\\]"):
        kernel_keep_fraction(1.5, 9)


def test_assign_patterns_ties_go_to_lower_library_index() -> None:
    library = enumerate_candidates(4)[:3]
    values = torch.zeros(1, 2, 3, 3)
    # Kernel 0 all zero: every pattern ties -> 0. Kernel 1 puts mass only on the centre,
    # which every centre-fixed pattern keeps -> 0.
    values[0, 1, 1, 1] = 5.0
    assert assign_patterns(values, library).tolist() == [[0, 0]]
    # Candidates 0, 1, 2 are (0, 1, 2), (0, 1, 3), (0, 1, 5) plus the centre.
    values[0, 0, 1, 0] = 1.0  # position 3: only candidate 1 keeps it
    assert assign_patterns(values, library).tolist() == [[1, 0]]
    values[0, 0, 1, 2] = 1.0  # position 5 as heavy: candidates 1 and 2 tie -> 1
    assert assign_patterns(values, library).tolist() == [[1, 0]]
    values[0, 0, 1, 2] = 1.5  # now candidate 2 keeps more
    assert assign_patterns(values, library).tolist() == [[2, 0]]


@FAST
@given(shape=layer_shapes, kind=weight_kinds, seed=st.integers(0, 10_000), entries=st.integers(1, 8),
       size=st.integers(1, 10), centre_fixed=st.booleans())
def test_assignment_takes_the_pattern_of_largest_energy(
    shape: tuple[int, int], kind: str, seed: int, entries: int, size: int, centre_fixed: bool
) -> None:
    library = _library(entries, size, seed, centre_fixed)
    weight = _weights((*shape, 3, 3), kind, seed)
    assignment = assign_patterns(weight.square(), library)
    assert assignment.shape == shape and assignment.dtype == torch.int64
    kept = (weight.square().unsqueeze(2) * library.to(weight.dtype)).sum(dim=(-1, -2))  # (O, I, P)
    chosen = kept.gather(-1, assignment.unsqueeze(-1)).squeeze(-1)
    assert bool((chosen >= kept.max(dim=-1).values - 1e-6 * (1 + kept.max(dim=-1).values)).all())


@FAST
@given(shape=layer_shapes, kind=weight_kinds, seed=st.integers(0, 10_000), entries=st.integers(1, 9),
       size=st.integers(1, 12), fraction=st.floats(0.0, 1.0), centre_fixed=st.booleans())
def test_projection_follows_library_has_exact_density_and_is_idempotent(
    shape: tuple[int, int], kind: str, seed: int, entries: int, size: int, fraction: float, centre_fixed: bool
) -> None:
    library = _library(entries, size, seed, centre_fixed)
    weight = _weights((*shape, 3, 3), kind, seed)
    assignment, connectivity = project_onto_library(weight, library, keep_fraction=fraction)
    mask = pattern_mask(library, assignment, connectivity)

    assert _kernels_follow_library(mask, library)
    kernels = shape[0] * shape[1]
    assert int(connectivity.sum()) == kept_count(fraction, kernels)
    if fraction * kernels >= 0.5:
        assert abs(int(connectivity.sum()) - fraction * kernels) <= 0.5 + 1e-9
    assert int(mask.sum()) == int(connectivity.sum()) * entries

    again_assignment, again_connectivity = project_onto_library(weight * mask, library, keep_fraction=fraction)
    assert torch.equal(pattern_mask(library, again_assignment, again_connectivity), mask)
    assert torch.equal(again_connectivity, connectivity)
    assert torch.equal(again_assignment[connectivity], assignment[connectivity])


def test_connectivity_keeps_the_most_energetic_kernels() -> None:
    library = enumerate_candidates(1)  # the centre only
    weight = torch.zeros(2, 2, 3, 3)
    weight[:, :, 1, 1] = torch.tensor([[1.0, -4.0], [3.0, 2.0]])
    _, connectivity = project_onto_library(weight, library, keep_fraction=0.5)
    assert connectivity.tolist() == [[False, True], [True, False]]


@FAST
@given(
    shapes=st.lists(layer_shapes, min_size=1, max_size=4),
    fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
    integer_scores=st.booleans(),
)
def test_select_kernels_exact_counts_and_top_scores(
    shapes: list[tuple[int, int]], fraction: float, seed: int, integer_scores: bool
) -> None:
    generator = torch.Generator().manual_seed(seed)
    scores = {
        f"layer{i}": (torch.randint(0, 4, s, generator=generator) if integer_scores else torch.rand(s, generator=generator))
        for i, s in enumerate(shapes)
    }
    per_layer = select_kernels(scores, keep_fraction=fraction, scope="layer")
    for name, keep in per_layer.items():
        assert keep.shape == scores[name].shape and keep.dtype == torch.bool
        assert int(keep.sum()) == kept_count(fraction, scores[name].numel())
        if bool(keep.any()) and not bool(keep.all()):
            assert scores[name][keep].min() >= scores[name][~keep].max()

    overall = select_kernels(scores, keep_fraction=fraction, scope="global")
    total = sum(s.numel() for s in scores.values())
    assert sum(int(k.sum()) for k in overall.values()) == kept_count(fraction, total)
    kept = torch.cat([scores[n][k] for n, k in overall.items()])
    dropped = torch.cat([scores[n][~k] for n, k in overall.items()])
    if kept.numel() and dropped.numel():
        assert kept.min() >= dropped.max()


def test_select_kernels_ties_follow_flat_index_and_layer_order() -> None:
    scores = {"a": torch.ones(2, 2), "b": torch.ones(1, 2)}
    per_layer = select_kernels(scores, keep_fraction=0.5, scope="layer")
    assert per_layer["a"].tolist() == [[True, True], [False, False]]
    assert per_layer["b"].tolist() == [[True, False]]
    overall = select_kernels(scores, keep_fraction=0.5, scope="global")  # 3 of 6
    assert overall["a"].tolist() == [[True, True], [True, False]]
    assert overall["b"].tolist() == [[False, False]]  # global scope may empty a layer


def test_select_kernels_per_layer_fractions_and_errors() -> None:
    scores = {"a": torch.rand(4, 4), "b": torch.rand(2, 5)}
    keep = select_kernels(scores, keep_fraction={"a": 0.25, "b": 0.0}, scope="layer")
    assert int(keep["a"].sum()) == 4 and int(keep["b"].sum()) == 0
    with pytest.raises(KernelsError, match="missing \\['b'\\]"):
        select_kernels(scores, keep_fraction={"a": 0.5}, scope="layer")
    with pytest.raises(KernelsError, match="extra \\['c'\\]"):
        select_kernels(scores, keep_fraction={"a": 0.5, "b": 0.5, "c": 0.5}, scope="layer")
    with pytest.raises(KernelsError, match="single float with scope='global'"):
        select_kernels(scores, keep_fraction={"a": 0.5, "b": 0.5}, scope="global")
    with pytest.raises(KernelsError, match="scope must be one of"):
        select_kernels(scores, keep_fraction=0.5, scope="model")  # type: ignore[arg-type]
    with pytest.raises(KernelsError, match="keep_fraction must be a real number in \\[0, 1\\]"):
        select_kernels(scores, keep_fraction=1.1, scope="layer")
    with pytest.raises(KernelsError, match="must have 2 dimensions"):
        select_kernels({"a": torch.rand(4)}, keep_fraction=0.5, scope="layer")
    with pytest.raises(KernelsError, match="NaN"):
        select_kernels({"a": torch.tensor([[math.nan, 1.0]])}, keep_fraction=0.5, scope="layer")


@FAST
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
    discrete=st.booleans(),
)
def test_unstructured_mask_is_an_exact_deterministic_top_k(
    shape: tuple[int, ...], density: float, seed: int, discrete: bool
) -> None:
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 3, shape, generator=generator).float() if discrete else torch.randn(shape, generator=generator)
    mask = unstructured_mask(scores, density=density)
    assert mask.shape == scores.shape and mask.dtype == torch.bool
    k = kept_count(density, scores.numel())
    assert int(mask.sum()) == k
    # Reference: stable descending sort (ties -> lower flat index).
    order = torch.sort(scores.reshape(-1), descending=True, stable=True).indices
    expected = torch.zeros(scores.numel(), dtype=torch.bool)
    expected[order[:k]] = True
    assert torch.equal(mask.reshape(-1), expected)


def test_unstructured_mask_errors() -> None:
    with pytest.raises(KernelsError, match="density must be a real number"):
        unstructured_mask(torch.rand(3), density=-0.1)
    with pytest.raises(KernelsError, match="scores dtype must be real"):
        unstructured_mask(torch.ones(3, dtype=torch.bool), density=0.5)


def test_project_onto_library_errors() -> None:
    library = enumerate_candidates(4)[:8]
    with pytest.raises(KernelsError, match="weight shape must be \\(O, I, 3, 3\\)"):
        project_onto_library(torch.rand(2, 2, 5, 5), library, keep_fraction=0.5)
    with pytest.raises(KernelsError, match="distinct"):
        project_onto_library(torch.rand(2, 2, 3, 3), library[[0, 0]], keep_fraction=0.5)
    with pytest.raises(KernelsError, match="energy_values shape must be"):
        assign_patterns(torch.rand(2, 3, 3), library)
    with pytest.raises(KernelsError, match="same \\(O, I\\) shape"):
        pattern_mask(library, torch.zeros(2, 2, dtype=torch.int64), torch.ones(2, 3, dtype=torch.bool))
