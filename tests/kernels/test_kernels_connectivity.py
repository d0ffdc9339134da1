"""Connected tickets: ERK per-layer budgets, path-preserving kernel choice, and the path count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import KernelsError, connect_kernels, count_paths, erk_densities, select_kernels

CONV4 = {"conv1": (16, 1, 3, 3), "conv2": (32, 16, 3, 3), "conv3": (64, 32, 3, 3), "conv4": (64, 64, 3, 3)}


def test_erk_keeps_the_target_share_caps_each_layer_and_favours_small_layers():
    densities = erk_densities(CONV4, density=0.02, cap=4 / 9)
    sizes = {name: int(np.prod(shape)) for name, shape in CONV4.items()}
    kept = sum(densities[name] * sizes[name] for name in CONV4)
    assert kept == pytest.approx(0.02 * sum(sizes.values()))
    assert all(0 < d <= 4 / 9 for d in densities.values())
    assert densities["conv1"] > 10 * densities["conv4"]  # the first layer is not cut to one kernel
    capped = erk_densities(CONV4, density=0.3, cap=4 / 9)  # conv1 hits the cap, the others share the rest
    assert capped["conv1"] == pytest.approx(4 / 9)
    assert sum(capped[n] * sizes[n] for n in CONV4) == pytest.approx(0.3 * sum(sizes.values()))
    assert erk_densities(CONV4, density=4 / 9, cap=4 / 9) == dict.fromkeys(CONV4, 4 / 9)
    with pytest.raises(KernelsError, match="density must be in"):
        erk_densities(CONV4, density=0.5, cap=4 / 9)


def _chain(kept: list[list[list[int]]]) -> dict[str, torch.Tensor]:
    return {f"l{j}": torch.tensor(mask, dtype=torch.bool) for j, mask in enumerate(kept)}


def test_paths_are_counted_through_the_chain_and_zero_when_disconnected():
    connected = _chain([[[1], [1]], [[1, 0], [1, 1]]])  # 1 input -> 2 channels -> 2 outputs
    assert count_paths(connected) == 3.0
    broken = _chain([[[1], [0]], [[0, 1], [0, 1]]])  # layer 2 reads only the channel layer 1 drops
    assert count_paths(broken) == 0.0


def test_connecting_repairs_a_disconnected_ticket_with_the_same_counts_per_layer():
    scores = {"l0": torch.tensor([[2.0], [1.0]]), "l1": torch.tensor([[0.0, 5.0], [0.0, 4.0]])}
    kept = select_kernels(scores, keep_fraction={"l0": 0.5, "l1": 0.5}, scope="layer")
    assert count_paths(kept) == 0.0  # l0 keeps channel 0, l1 keeps kernels reading channel 1
    repaired = connect_kernels(kept, scores)
    assert {n: int(m.sum()) for n, m in repaired.items()} == {n: int(m.sum()) for n, m in kept.items()}
    assert count_paths(repaired) > 0
    assert repaired["l1"][:, 0].all() and not repaired["l1"][:, 1].any()  # the reachable channel, by score


def test_a_connected_ticket_is_left_as_it_is():
    scores = {"l0": torch.tensor([[2.0], [1.0]]), "l1": torch.tensor([[5.0, 0.0], [4.0, 0.0]])}
    kept = select_kernels(scores, keep_fraction={"l0": 0.5, "l1": 0.5}, scope="layer")
    repaired = connect_kernels(kept, scores)
    assert all(torch.equal(repaired[n], kept[n]) for n in kept)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), fraction=st.floats(0.001, 0.2))
def test_every_layer_keeping_a_kernel_gives_a_connected_ticket(seed, fraction):
    generator = torch.Generator().manual_seed(seed)
    scores = {name: torch.rand(shape[:2], generator=generator) for name, shape in CONV4.items()}
    kept = select_kernels(scores, keep_fraction=dict.fromkeys(CONV4, fraction), scope="layer")
    repaired = connect_kernels(kept, scores)
    assert {n: int(m.sum()) for n, m in repaired.items()} == {n: int(m.sum()) for n, m in kept.items()}
    assert count_paths(repaired) >= 1
