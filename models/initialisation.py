"""Weight initialisation shared by the architectures."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["PROBE_EXAMPLES", "TICKET_INIT_RESCALED", "TICKET_INITS", "gaussian_probe", "init_kaiming", "match_dense_signal"]


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


TICKET_INIT_RESCALED = "rescaled"
TICKET_INITS = (TICKET_INIT_RESCALED, "theta0")
"""How a ticket's kept weights start its training (config ``ticket-init``): ``rescaled`` by
:func:`match_dense_signal`, or ``theta0`` as drawn."""

PROBE_EXAMPLES = 64
"""Gaussian inputs of the probe that :func:`match_dense_signal` propagates."""


def gaussian_probe(input_shape: tuple[int, ...], *, seed: int) -> torch.Tensor:
    """``PROBE_EXAMPLES`` standard-normal inputs of ``input_shape``: no data, seeded for reproducibility."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((PROBE_EXAMPLES, *input_shape), generator=generator)


def _weight_part(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    bias = getattr(module, "bias", None)
    return output if bias is None else output - bias.reshape(1, -1, *([1] * (output.dim() - 2)))


def _keep(store: dict[str, torch.Tensor], name: str):  # type: ignore[no-untyped-def]
    def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        store[name] = _weight_part(module, output)
    return hook


def _raw_weight(module: nn.Module) -> torch.Tensor:
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations["weight"].original
    return module.weight


@torch.no_grad()
def match_dense_signal(
    model: nn.Module, masks: Mapping[str, torch.Tensor], *, dense: nn.Module, probe: torch.Tensor
) -> dict[str, float]:
    """Scale each sparse layer's kept weights by one factor so its output has the dense model's scale.

    Kaiming init draws weights of variance 2 / fan-in so that a ReLU network keeps its signal's
    scale from layer to layer; a mask that keeps a fraction d of a layer's weights shrinks that
    layer's output by about sqrt(d), and the shrinkage compounds: at 98% conv sparsity a Conv4
    ticket (no normalisation) starts from near-zero logits and gradients and trains slowly
    (docs/design.md 2, step 4). Evci et al. 2022 ("Gradient flow in sparse neural networks and how
    lottery tickets win") rescale by each unit's kept fan-in instead; measured here, that blew up
    the logits of some 98%-sparse tickets (initial loss 10, training stuck at chance), because a
    unit that keeps 4 of 576 inputs gets a 12x factor on heavy-tailed sums. So the factor is
    measured, layer by layer in forward order: the root mean square of the layer's output
    (bias left out) on ``probe`` in the masked model is set to that of ``dense`` at the same layer.

    One positive constant per layer: every kernel's pattern and the ranking of the kept weights
    are unchanged, and pruned weights stay zero. It reads the public θ0, the ticket and a Gaussian
    probe, never data: ε = 0, post-processing.

    Parameters
    ----------
    model
        The model at θ0 with the ticket's masks applied (:func:`models.apply_masks`); its raw
        weights are scaled in place.
    masks
        Layer name -> bool mask, True where kept; a layer that keeps everything is left as it is.
    dense
        The same architecture at the same θ0, unmasked.
    probe
        A batch of inputs (:func:`gaussian_probe`).

    Returns
    -------
    dict[str, float]
        Each rescaled layer's factor (1.0 for a layer whose masked output is all zero).
    """
    layers, dense_layers = dict(model.named_modules()), dict(dense.named_modules())
    sparse = [name for name in layers if name in masks and not bool(masks[name].all())]  # forward (module) order
    modes = {module: module.training for module in (*model.modules(), *dense.modules())}
    model.eval()  # a BatchNorm must not fold the probe into its running statistics
    dense.eval()
    try:
        return _match(model, dense, sparse, layers, dense_layers, probe)
    finally:
        for module, training in modes.items():
            module.train(training)


def _match(model: nn.Module, dense: nn.Module, sparse: list[str], layers: dict[str, nn.Module],
           dense_layers: dict[str, nn.Module], probe: torch.Tensor) -> dict[str, float]:
    targets: dict[str, torch.Tensor] = {}
    handles = [dense_layers[name].register_forward_hook(_keep(targets, name)) for name in sparse]
    try:
        dense(probe)
    finally:
        for handle in handles:
            handle.remove()
    factors: dict[str, float] = {}
    for name in sparse:
        seen: dict[str, torch.Tensor] = {}
        handle = layers[name].register_forward_hook(_keep(seen, name))
        try:
            model(probe)
        finally:
            handle.remove()
        ours, theirs = seen[name].pow(2).mean().sqrt(), targets[name].pow(2).mean().sqrt()
        factor = float(theirs / ours) if float(ours) > 0 else 1.0
        _raw_weight(layers[name]).mul_(factor)
        factors[name] = factor
    return factors
