"""Weight initialisation shared by the architectures."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["TICKET_INITS", "init_kaiming", "rescale_to_kept_fan_in"]


def init_kaiming(model: nn.Module) -> None:
    """Kaiming-normal (fan-in, ReLU gain) weights and zero biases for every Conv2d and Linear.

    Pruning-at-initialisation work (Frankle & Carbin 2019, open_lth; Tanaka et al. 2020) uses
    Kaiming-normal initialisation; PyTorch's default (Kaiming-uniform with a=sqrt(5)) gives weights
    about 2.4x smaller, which makes networks without normalisation train slowly.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


TICKET_INITS = ("rescaled", "theta0")
"""How a ticket's kept weights start its training (config ``ticket-init``): ``rescaled`` by
:func:`rescale_to_kept_fan_in`, or ``theta0`` as drawn."""


@torch.no_grad()
def rescale_to_kept_fan_in(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scale each output unit's weights by sqrt(dense fan-in / kept fan-in), as Kaiming init would draw them.

    Kaiming init gives weights of variance 2 / fan-in so that a ReLU layer keeps its activations'
    scale. A mask that keeps a fraction d of an output unit's inputs divides that unit's
    pre-activation variance by 1 / d: at 98% sparsity a Conv4 ticket's signal shrinks by about 50x
    per layer, and a ticket without normalisation starts training from near-zero outputs and
    gradients (Evci et al. 2022, "Gradient flow in sparse neural networks and how lottery tickets
    win", whose sparse initialisation this is). Rescaling per output unit (a conv's output channel,
    a linear layer's row) restores the dense variance; it is a constant per unit, so the ranking of
    the kept weights inside a kernel, and the pattern of every kernel, is unchanged. It reads only
    the public θ0 and the ticket: ε = 0, post-processing.

    Parameters
    ----------
    model
        The model at θ0, masked by :func:`models.apply_masks` or not; modified in place (the raw
        weights under a mask's parametrization).
    masks
        Layer name -> bool mask of the layer's weight shape, True where kept. A unit that keeps
        nothing, and a layer that keeps everything, are left as they are.

    Returns
    -------
    dict[str, torch.Tensor]
        Each rescaled layer's per-unit factor, shape (out_units,).
    """
    layers = dict(model.named_modules())
    factors: dict[str, torch.Tensor] = {}
    for name, mask in masks.items():
        if bool(mask.all()):
            continue
        module = layers[name]
        weight = module.parametrizations["weight"].original if parametrize.is_parametrized(module, "weight") else module.weight
        kept = mask.reshape(mask.shape[0], -1).sum(dim=1).to(weight.dtype)
        dense = float(mask[0].numel())
        factor = torch.where(kept > 0, (dense / kept.clamp(min=1)).sqrt(), torch.ones_like(kept))
        weight.mul_(factor.reshape(-1, *([1] * (weight.dim() - 1))).to(weight.device))
        factors[name] = factor
    return factors
