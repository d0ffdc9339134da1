"""Which layers of a model can be pruned, and the default sparsity policy of each."""

from __future__ import annotations

from typing import Literal

from torch import nn

from kernels import LayerPolicy
from models.errors import ModelConfigError

__all__ = ["default_policies", "input_shape_of", "is_pattern_layer", "prunable_layers"]

FirstConvPolicy = Literal["pattern", "unstructured", "dense"]
OtherPolicy = Literal["unstructured", "dense"]


def prunable_layers(model: nn.Module) -> dict[str, nn.Conv2d | nn.Linear]:
    """Every ``Conv2d`` and ``Linear`` module, keyed by its qualified name, in module order.

    The masked tensor of a prunable layer is always its ``.weight``; biases are never pruned.
    Selection is by module type, never by parameter name.
    """
    return {name: module for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))}


def is_pattern_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a 3x3 ``Conv2d`` (the layers that pattern tickets apply to)."""
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (3, 3)


def _policy(name: str, value: str, allowed: tuple[str, ...]) -> LayerPolicy:
    if value not in allowed:
        raise ModelConfigError(f"{name} must be one of {list(allowed)}. Found {value!r}.")
    return LayerPolicy(value)


def default_policies(
    model: nn.Module,
    *,
    first_conv: FirstConvPolicy | None = None,
    linear: OtherPolicy = "unstructured",
    other_conv: OtherPolicy = "unstructured",
) -> dict[str, LayerPolicy]:
    """The sparsity policy of every prunable layer.

    3x3 convolutions get ``pattern``; convolutions of any other kernel size get ``other_conv``;
    linear layers get ``linear``. The first convolution (in module order) gets ``first_conv``
    when it is given, else the rule of its kernel size.

    Parameters
    ----------
    model
        The model.
    first_conv
        ``"pattern"`` (only valid for a 3x3 first conv), ``"unstructured"``, ``"dense"`` or
        ``None`` (same rule as the other convolutions).
    linear
        ``"unstructured"`` or ``"dense"``.
    other_conv
        Policy of non-3x3 convolutions: ``"unstructured"`` or ``"dense"``.

    Returns
    -------
    dict[str, kernels.LayerPolicy]
        Layer name -> policy, in module order.

    Raises
    ------
    ModelConfigError
        For an unknown policy, or ``first_conv="pattern"`` on a first conv that is not 3x3.
    """
    linear_policy = _policy("linear", linear, ("unstructured", "dense"))
    other_policy = _policy("other_conv", other_conv, ("unstructured", "dense"))
    first_policy = None
    if first_conv is not None:
        first_policy = _policy("first_conv", first_conv, ("pattern", "unstructured", "dense"))
    policies: dict[str, LayerPolicy] = {}
    seen_conv = False
    for name, module in prunable_layers(model).items():
        if isinstance(module, nn.Linear):
            policies[name] = linear_policy
            continue
        rule = LayerPolicy.PATTERN if is_pattern_layer(module) else other_policy
        if not seen_conv and first_policy is not None:
            if first_policy is LayerPolicy.PATTERN and not is_pattern_layer(module):
                raise ModelConfigError(
                    f"first_conv must be 'unstructured' or 'dense' when the first conv is not 3x3 "
                    f"({name} has kernel {tuple(module.kernel_size)}). Found 'pattern'."
                )
            rule = first_policy
        seen_conv = True
        policies[name] = rule
    return policies


def input_shape_of(model: nn.Module) -> tuple[int, ...]:
    """The per-example input shape ``(C, H, W)`` the model was built for (``model.input_shape``).

    Raises
    ------
    ModelConfigError
        If the model does not carry ``input_shape`` (models from :func:`models.get` always do).
    """
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, tuple) or not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ModelConfigError(
            f"model.input_shape must be a tuple of positive ints (pass input_shape=...). Found {shape!r}."
        )
    return shape
