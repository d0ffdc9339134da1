"""The sparse start of a ticket's training (config ``ticket-init=rescaled``)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from models import apply_masks, prunable_layers, registry
from models.initialisation import gaussian_probe, match_dense_signal


def _ticket_masks(model: nn.Module, keep: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Every 3x3 conv keeps a random ``keep`` of its kernels, each with the same 4-entry pattern."""
    pattern = torch.zeros(3, 3, dtype=torch.bool)
    pattern[1, :] = True
    pattern[0, 1] = True
    masks = {}
    for name, module in prunable_layers(model).items():
        if isinstance(module, nn.Conv2d):
            kernels = torch.rand(module.weight.shape[:2], generator=generator) < keep
            kernels[:, 0] |= ~kernels.any(dim=1)  # every output channel keeps one kernel at least
            masks[name] = kernels[:, :, None, None] & pattern
    return masks


@pytest.fixture
def conv4_at_theta0() -> nn.Module:
    torch.manual_seed(0)
    return registry.get("conv4", num_classes=10, in_channels=1, image_size=28)


def test_a_98_percent_sparse_ticket_gets_the_dense_logit_scale_back(conv4_at_theta0):
    dense = copy.deepcopy(conv4_at_theta0)
    ticket = conv4_at_theta0
    masks = _ticket_masks(ticket, keep=0.045, generator=torch.Generator().manual_seed(1))
    apply_masks(ticket, masks)
    probe = gaussian_probe((1, 28, 28), seed=0)
    held_out = gaussian_probe((1, 28, 28), seed=1)  # the scale carries over to inputs the probe did not see
    with torch.no_grad():
        shrunk = float(ticket(held_out).std() / dense(held_out).std())

    factors = match_dense_signal(ticket, masks, dense=dense, probe=probe)

    with torch.no_grad():
        restored = float(ticket(held_out).std() / dense(held_out).std())
    assert shrunk < 0.01  # four sparse layers: the logits start about 100x too small
    assert 0.5 < restored < 2.0
    assert set(factors) == set(masks) and all(f > 1 for f in factors.values())


def test_the_rescale_is_one_constant_per_layer_and_keeps_pruned_weights_zero(conv4_at_theta0):
    dense = copy.deepcopy(conv4_at_theta0)
    ticket = conv4_at_theta0
    masks = _ticket_masks(ticket, keep=0.1, generator=torch.Generator().manual_seed(2))
    apply_masks(ticket, masks)
    before = {name: module.weight.detach().clone() for name, module in prunable_layers(ticket).items()}

    factors = match_dense_signal(ticket, masks, dense=dense, probe=gaussian_probe((1, 28, 28), seed=0))

    for name, module in prunable_layers(ticket).items():
        after = module.weight.detach()
        if name in masks:
            assert torch.equal(after[~masks[name]], torch.zeros_like(after[~masks[name]]))
            assert torch.allclose(after, before[name] * factors[name])  # kernel patterns and rankings unchanged
        else:
            assert torch.equal(after, before[name])  # fc layers are dense: left as they are
    assert ticket.training and dense.training  # the modes the caller had are restored


def test_batch_norm_statistics_are_not_touched_by_the_probe():
    torch.manual_seed(0)
    ticket = registry.get("conv4", num_classes=10, in_channels=1, image_size=28, norm="batch")
    dense = copy.deepcopy(ticket)
    masks = _ticket_masks(ticket, keep=0.1, generator=torch.Generator().manual_seed(3))
    apply_masks(ticket, masks)
    buffers = {name: b.clone() for name, b in ticket.named_buffers()}

    match_dense_signal(ticket, masks, dense=dense, probe=gaussian_probe((1, 28, 28), seed=0))

    assert all(torch.equal(b, buffers[name]) for name, b in ticket.named_buffers())
