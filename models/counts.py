"""Parameter and multiply-accumulate (MAC) counts, per prunable layer and in total."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from models.errors import MaskError
from models.layers import input_shape_of, prunable_layers
from models.masking import current_masks

__all__ = ["LayerCounts", "ModelCounts", "count_model"]


@dataclass(frozen=True, kw_only=True)
class LayerCounts:
    """Counts of one ``Conv2d`` / ``Linear`` layer for one input example.

    ``macs`` counts one multiply-accumulate per weight per output position it is applied at
    (``H_out * W_out * weight.numel()`` for a convolution, ``weight.numel()`` per input row for a
    linear layer); bias additions are not MACs. ``kept_macs`` counts the kept weights only.
    """

    name: str = field(metadata={"help": "qualified module name"})
    kind: str = field(metadata={"help": "'conv2d' or 'linear'"})
    weight_shape: tuple[int, ...] = field(metadata={"help": "shape of the layer's weight"})
    weight_params: int = field(metadata={"help": "entries of the weight"})
    bias_params: int = field(metadata={"help": "entries of the bias (0 without bias)"})
    kept_weight_params: int = field(metadata={"help": "kept entries of the weight under the mask"})
    macs: int = field(metadata={"help": "multiply-accumulates per example, dense"})
    kept_macs: int = field(metadata={"help": "multiply-accumulates per example of the kept weights"})

    @property
    def params(self) -> int:
        """Weight and bias entries."""
        return self.weight_params + self.bias_params

    @property
    def kept_params(self) -> int:
        """Kept weight entries plus the (never pruned) bias."""
        return self.kept_weight_params + self.bias_params

    @property
    def density(self) -> float:
        """Kept weight entries over all weight entries."""
        return self.kept_weight_params / self.weight_params


@dataclass(frozen=True, kw_only=True)
class ModelCounts:
    """Per-layer counts and totals. Totals of parameters include non-prunable ones (norms)."""

    layers: Mapping[str, LayerCounts] = field(metadata={"help": "layer name -> counts, module order"})
    total_params: int = field(metadata={"help": "all parameters of the model"})
    kept_params: int = field(metadata={"help": "total_params minus pruned weights"})
    total_macs: int = field(metadata={"help": "MACs of all Conv2d/Linear layers per example"})
    kept_macs: int = field(metadata={"help": "MACs of the kept weights per example"})

    @property
    def weight_density(self) -> float:
        """Kept over all entries of the prunable weights (all layers together)."""
        total = sum(c.weight_params for c in self.layers.values())
        return sum(c.kept_weight_params for c in self.layers.values()) / total


@torch.no_grad()
def count_model(
    model: nn.Module,
    *,
    masks: Mapping[str, torch.Tensor] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> ModelCounts:
    """Count parameters and MACs with forward hooks on one all-zero example.

    Parameters
    ----------
    model
        The model (left in its training/eval mode; nothing is changed).
    masks
        Layer name -> bool mask of the weight shape for the kept counts; ``None`` uses the
        model's own forward masks (:func:`models.current_masks`; none = dense).
    input_shape
        Per-example input shape; defaults to ``model.input_shape``.

    Raises
    ------
    MaskError
        If a mask names an unknown layer or has the wrong shape.
    """
    layers = prunable_layers(model)
    masks = current_masks(model) if masks is None else dict(masks)
    for name, mask in masks.items():
        if name not in layers:
            raise MaskError(f"mask layer names must be prunable layers of the model {list(layers)}. Found {name!r}.")
        if tuple(mask.shape) != tuple(layers[name].weight.shape):
            expected = tuple(layers[name].weight.shape)
            raise MaskError(f"mask shape of {name} must be {expected}. Found {tuple(mask.shape)}.")
    shape = input_shape if input_shape is not None else input_shape_of(model)
    applications: dict[str, int] = dict.fromkeys(layers, 0)

    def hook_for(name: str):  # noqa: ANN202 - torch hook signature
        def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                applications[name] += int(output.shape[-1] * output.shape[-2])
            else:
                applications[name] += int(output.numel() // output.shape[-1])

        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in layers.items()]
    was_training = model.training
    try:
        model.eval()
        reference = next(model.parameters())
        model(torch.zeros((1, *shape), dtype=reference.dtype, device=reference.device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    per_layer: dict[str, LayerCounts] = {}
    for name, module in layers.items():
        weight_params = module.weight.numel()
        kept = int(masks[name].sum()) if name in masks else weight_params
        bias = 0 if module.bias is None else module.bias.numel()
        per_layer[name] = LayerCounts(
            name=name,
            kind="conv2d" if isinstance(module, nn.Conv2d) else "linear",
            weight_shape=tuple(module.weight.shape),
            weight_params=weight_params,
            bias_params=bias,
            kept_weight_params=kept,
            macs=applications[name] * weight_params,
            kept_macs=applications[name] * kept,
        )
    total_params = sum(p.numel() for p in model.parameters())
    pruned = sum(c.weight_params - c.kept_weight_params for c in per_layer.values())
    return ModelCounts(
        layers=per_layer,
        total_params=total_params,
        kept_params=total_params - pruned,
        total_macs=sum(c.macs for c in per_layer.values()),
        kept_macs=sum(c.kept_macs for c in per_layer.values()),
    )
