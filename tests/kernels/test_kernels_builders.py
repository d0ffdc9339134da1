"""build_ticket (the server's post-processing) and the random baseline tickets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import (
    KernelsError,
    LayerPolicy,
    Ticket,
    TicketMetadata,
    assign_patterns,
    build_ticket,
    enumerate_candidates,
    kept_count,
    kernel_keep_fraction,
    random_ticket,
    random_ticket_like,
    select_kernels,
    unstructured_mask,
)

LIBRARY = enumerate_candidates(4)[[0, 5, 11, 17, 23, 31, 40, 55]]
METADATA = TicketMetadata(config_hash="cfg", epsilon_spent={"record": 0.5}, round=2)
SHAPES = {"stem": (8, 3, 5, 5), "conv1": (16, 8, 3, 3), "conv2": (16, 16, 3, 3), "bn": (16,), "fc": (10, 64)}
POLICIES = {"stem": "unstructured", "conv1": "pattern", "conv2": "pattern", "bn": "dense", "fc": "unstructured"}


def _inputs(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    weights = {name: torch.randn(shape, generator=generator) for name, shape in SHAPES.items()}
    return {
        "energy": {n: weights[n].square() for n in ("conv1", "conv2")},
        "kernel_scores": {n: torch.randint(0, 5, SHAPES[n][:2], generator=generator) for n in ("conv1", "conv2")},
        "weight_scores": {n: weights[n].abs() for n in ("stem", "fc")},
    }


def _follows_library(mask: torch.Tensor, library: torch.Tensor) -> bool:
    flat = mask.reshape(-1, 9)
    matches = (flat[:, None, :] == library.reshape(1, -1, 9)).all(dim=-1).any(dim=-1)
    return bool((matches | ~flat.any(dim=-1)).all())


def test_build_ticket_composes_assignment_connectivity_and_unstructured(tmp_path: Path) -> None:
    inputs = _inputs()
    ticket = build_ticket(shapes=SHAPES, policies=POLICIES, library=LIBRARY, density=0.2, scope="layer", metadata=METADATA, **inputs)
    assert list(ticket.layers) == list(SHAPES) and ticket.metadata == METADATA
    fraction = kernel_keep_fraction(0.2, 4)
    expected = select_kernels(inputs["kernel_scores"], keep_fraction=fraction, scope="layer")
    for name in ("conv1", "conv2"):
        layer = ticket.layers[name]
        assert layer.policy is LayerPolicy.PATTERN and torch.equal(layer.library, LIBRARY)
        assert torch.equal(layer.assignment, assign_patterns(inputs["energy"][name], LIBRARY))
        assert torch.equal(layer.connectivity, expected[name])
        assert _follows_library(layer.mask(), LIBRARY)
        assert abs(layer.density - 0.2) <= 4 / (9 * SHAPES[name][0] * SHAPES[name][1]) / 2 + 1e-12
    for name in ("stem", "fc"):
        assert torch.equal(ticket.layers[name].unstructured_mask, unstructured_mask(inputs["weight_scores"][name], density=0.2))
    assert ticket.layers["bn"].policy is LayerPolicy.DENSE
    ticket.save(tmp_path / "t")
    assert Ticket.load(tmp_path / "t") == ticket


def test_build_ticket_without_kernel_scores_prunes_by_kept_energy() -> None:
    inputs = _inputs()
    inputs["kernel_scores"] = None
    ticket = build_ticket(shapes=SHAPES, policies=POLICIES, library=LIBRARY, density=0.1, scope="layer", metadata=METADATA, **inputs)
    layer = ticket.layers["conv2"]
    kept_energy = (inputs["energy"]["conv2"] * layer.library[layer.assignment]).sum(dim=(-1, -2))
    assert kept_energy[layer.connectivity].min() >= kept_energy[~layer.connectivity].max()


def test_build_ticket_global_scope_keeps_the_total_count(tmp_path: Path) -> None:
    inputs = _inputs()
    ticket = build_ticket(shapes=SHAPES, policies=POLICIES, library=LIBRARY, density=0.3, scope="global", metadata=METADATA, **inputs)
    kernels = 16 * 8 + 16 * 16
    kept = ticket.layers["conv1"].kept_kernels + ticket.layers["conv2"].kept_kernels
    assert kept == kept_count(kernel_keep_fraction(0.3, 4), kernels)
    ticket.save(tmp_path / "t")  # connectivities are views of one tensor; saving must still work
    assert Ticket.load(tmp_path / "t") == ticket


def test_build_ticket_per_layer_densities() -> None:
    density = {"stem": 0.5, "conv1": 0.1, "conv2": 0.4, "fc": 0.05, "bn": 1.0}
    ticket = build_ticket(shapes=SHAPES, policies=POLICIES, library=LIBRARY, density=density, scope="layer", metadata=METADATA, **_inputs())
    assert ticket.layers["conv2"].kept_kernels == kept_count(0.9, 256)
    assert ticket.layers["fc"].kept == kept_count(0.05, 640)
    assert ticket.layers["stem"].kept == kept_count(0.5, 600)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"density": 0.5}, "layer 'conv1': density must be at most entries / 9"),
        ({"density": {"conv1": 0.1}}, "density must have one entry per layer .* missing \\['stem', 'conv2', 'fc'\\]"),
        ({"density": {"stem": 0.1, "conv1": 0.1, "conv2": 0.1, "fc": 0.1, "bn": 0.5}}, "density of dense layers \\['bn'\\] must be 1.0"),
        ({"density": {"stem": 0.1, "conv1": 0.1, "conv2": 0.1, "fc": 0.1}, "scope": "global"}, "density must be a single float with scope='global'"),
        ({"library": None}, "library must be a bool \\(P, 3, 3\\) tensor"),
        ({"policies": {**POLICIES, "stem": "pattern"}}, "shape of pattern layer 'stem' must be \\(O, I, 3, 3\\)"),
        ({"policies": {**POLICIES, "fc": "sparse"}}, "policies\\['fc'\\] must be one of"),
        ({"policies": {k: v for k, v in POLICIES.items() if k != "fc"}}, "policies must have one entry per layer .* missing \\['fc'\\]"),
        ({"energy": {"conv1": torch.rand(16, 8, 3, 3)}}, "energy must have one entry per layer .* missing \\['conv2'\\]"),
        ({"energy": {"conv1": torch.rand(16, 8, 3, 3), "conv2": torch.rand(16, 8, 3, 3)}}, "energy\\['conv2'\\] shape must be \\(16, 16, 3, 3\\)"),
        ({"kernel_scores": {"conv1": torch.rand(16, 8), "conv2": torch.rand(8, 16)}}, "kernel_scores\\['conv2'\\] shape must be \\(16, 16\\)"),
        ({"weight_scores": {"stem": torch.rand(8, 3, 5, 5), "fc": torch.rand(10, 64), "bn": torch.rand(16)}}, "extra \\['bn'\\]"),
        ({"scope": "net"}, "scope must be one of"),
        ({"metadata": None}, "metadata must be a TicketMetadata"),
    ],
)
def test_build_ticket_refuses_bad_input(change: dict, message: str) -> None:
    kwargs = {"shapes": SHAPES, "policies": POLICIES, "library": LIBRARY, "density": 0.2, "scope": "layer", "metadata": METADATA, **_inputs()}
    kwargs.update(change)
    with pytest.raises(KernelsError, match=message):
        build_ticket(**kwargs)


@settings(max_examples=25, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 10), st.integers(1, 10)), min_size=1, max_size=3),
    density=st.floats(0.0, 4 / 9),
    seed=st.integers(0, 10_000),
)
def test_random_ticket_structure_and_density(shapes: list[tuple[int, int]], density: float, seed: int) -> None:
    layer_shapes = {f"conv{i}": (*s, 3, 3) for i, s in enumerate(shapes)}
    layer_shapes.update({"fc": (7, shapes[0][0] * 3), "bias": (7,)})
    policies = {name: LayerPolicy.PATTERN for name in layer_shapes}
    policies.update({"fc": LayerPolicy.UNSTRUCTURED, "bias": LayerPolicy.DENSE})
    ticket = random_ticket(layer_shapes, policies=policies, density=density, library=LIBRARY, generator=torch.Generator().manual_seed(seed))
    assert ticket.shapes() == layer_shapes
    assert {name: layer.policy for name, layer in ticket.layers.items()} == policies
    for name, shape in layer_shapes.items():
        layer = ticket.layers[name]
        if layer.policy is LayerPolicy.PATTERN:
            kernels = shape[0] * shape[1]
            assert layer.kept_kernels == kept_count(kernel_keep_fraction(density, 4), kernels)
            assert _follows_library(layer.mask(), LIBRARY)
            assert bool((layer.assignment >= 0).all() and (layer.assignment < 8).all())
        elif layer.policy is LayerPolicy.UNSTRUCTURED:
            assert layer.kept == kept_count(density, layer.total)
        else:
            assert layer.density == 1.0
    assert ticket.metadata.epsilon_spent == {}


def test_random_ticket_is_reproducible_and_seed_dependent() -> None:
    kwargs = {"policies": POLICIES, "density": 0.2, "library": LIBRARY}
    first = random_ticket(SHAPES, generator=torch.Generator().manual_seed(1), **kwargs)
    again = random_ticket(SHAPES, generator=torch.Generator().manual_seed(1), **kwargs)
    other = random_ticket(SHAPES, generator=torch.Generator().manual_seed(2), **kwargs)
    assert first.masks().keys() == again.masks().keys()
    assert all(torch.equal(first.masks()[n], again.masks()[n]) for n in SHAPES)
    assert not torch.equal(first.masks()["conv2"], other.masks()["conv2"])
    with pytest.raises(KernelsError, match="generator must be a torch.Generator"):
        random_ticket(SHAPES, generator=1, **kwargs)  # type: ignore[arg-type]


def test_random_ticket_is_uniform_within_bounds() -> None:
    # 512 x 512 kernels: each of 8 patterns expects 32768 assignments (sd ~ 170), and half of
    # the kept kernels are expected in each half of the layer (sd ~ 166); bounds of 6 sd.
    shapes = {"conv": (512, 512, 3, 3)}
    ticket = random_ticket(shapes, policies={"conv": "pattern"}, density=0.2, library=LIBRARY, generator=torch.Generator().manual_seed(0))
    layer = ticket.layers["conv"]
    counts = torch.bincount(layer.assignment.reshape(-1), minlength=8)
    assert bool(((counts - 32768).abs() < 6 * 170).all())
    kept = layer.connectivity.reshape(-1)
    half = kept.numel() // 2
    assert abs(int(kept[:half].sum()) - int(kept.sum()) / 2) < 6 * 166


def test_random_ticket_like_copies_structure_and_counts() -> None:
    built = build_ticket(shapes=SHAPES, policies=POLICIES, library=LIBRARY, density=0.15, scope="global", metadata=METADATA, **_inputs())
    twin = random_ticket_like(built, generator=torch.Generator().manual_seed(3))
    assert twin.shapes() == built.shapes()
    for name, layer in built.layers.items():
        other = twin.layers[name]
        assert other.policy is layer.policy and other.kept == layer.kept and other.kept_kernels == layer.kept_kernels
        if layer.library is not None:
            assert torch.equal(other.library, layer.library)
    assert twin.metadata.config_hash == "" and twin.jaccard(built) < 1.0
