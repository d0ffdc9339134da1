"""The sparse initialisation of a ticket (config ``ticket-init=rescaled``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from models import apply_masks
from models.initialisation import init_kaiming, rescale_to_kept_fan_in


def _sparse_conv_masks(conv: nn.Conv2d, keep_inputs: int, generator: torch.Generator) -> torch.Tensor:
    """Each output channel keeps ``keep_inputs`` random input kernels with a 4-entry pattern."""
    out_ch, in_ch = conv.weight.shape[:2]
    pattern = torch.zeros(3, 3, dtype=torch.bool)
    pattern[1, :] = True
    pattern[0, 1] = True
    mask = torch.zeros(conv.weight.shape, dtype=torch.bool)
    for o in range(out_ch):
        for i in torch.randperm(in_ch, generator=generator)[:keep_inputs]:
            mask[o, i] = pattern
    return mask


def test_a_sparse_conv_gets_the_dense_output_scale_back_and_keeps_its_patterns():
    torch.manual_seed(0)
    dense, sparse = nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1)
    init_kaiming(dense)
    init_kaiming(sparse)
    mask = _sparse_conv_masks(sparse, keep_inputs=3, generator=torch.Generator().manual_seed(1))
    apply_masks(sparse, {"": mask})  # the module itself is the layer: its name is ""
    before = sparse.weight.detach().clone()
    x = torch.relu(torch.randn(16, 64, 12, 12))
    shrunk = sparse(x).var().item() / dense(x).var().item()

    factors = rescale_to_kept_fan_in(sparse, {"": mask})

    restored = sparse(x).var().item() / dense(x).var().item()
    assert shrunk < 0.05  # 12 of 576 inputs kept: the signal fell by about 48x
    assert 0.6 < restored < 1.6
    after = sparse.weight.detach()
    assert torch.equal(after[~mask], torch.zeros_like(after[~mask]))  # pruned weights stay exactly zero
    expected = math.sqrt(64 * 9 / 12)
    assert torch.allclose(factors[""], torch.full((64,), expected))
    assert torch.allclose(after, before * expected)  # one constant per unit: every kernel's ranking is unchanged


def test_dense_layers_and_empty_units_are_left_as_they_are():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Linear(4, 2))
    masks = {"0": torch.ones(3, 2, 3, 3, dtype=torch.bool), "1": torch.zeros(2, 4, dtype=torch.bool)}
    masks["1"][0, :2] = True  # row 0 keeps 2 of 4 inputs, row 1 keeps none
    conv_before, linear_before = model[0].weight.detach().clone(), model[1].weight.detach().clone()

    factors = rescale_to_kept_fan_in(model, masks)

    assert torch.equal(model[0].weight, conv_before)
    assert set(factors) == {"1"}
    assert torch.allclose(factors["1"], torch.tensor([math.sqrt(2.0), 1.0]))
    assert torch.allclose(model[1].weight[0], linear_before[0] * math.sqrt(2.0))
    assert torch.equal(model[1].weight[1], linear_before[1])
