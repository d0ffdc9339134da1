"""Forward masks on prunable layers, and plain state dicts for the wire.

A masked layer computes with ``weight * mask`` (a ``torch.nn.utils.parametrize``
parametrization), so the gradient of a pruned entry is exactly zero (forward masking implies
backward masking: dL/dW = M * (dL/dz h^T)). The raw pruned entries are also set to zero when a
mask is applied, so an optimiser never sees a non-zero pruned value either: weight decay
(``wd * 0``), momentum (fed only zeros) and Adam (``m = v = 0`` -> zero step) all leave them at
exactly zero, and the effective weight is zero in any case.

What is kept, and what is not
-----------------------------
The model never keeps the values of pruned weights: :func:`apply_masks` (and
:func:`apply_ticket`) return the weights of the masked layers as they were *before* the call
(detached copies), which is the way to keep dense weights for a comparison or a later restore
(``remove_masks`` then ``load_plain_state_dict``). A weight that a new mask revives comes back
at zero unless the caller loads values into it.

State dicts
-----------
``model.state_dict()`` of a masked model holds ``<layer>.parametrizations.weight.original`` and
``<layer>.parametrizations.weight.0.mask``; :func:`plain_state_dict` gives the effective weights
under the keys of the unmasked model (``<layer>.weight``), which is what federation code sends,
and :func:`load_plain_state_dict` loads such a dict whether the model is masked or not.

The parameter objects survive every operation here (``Tensor.set_`` / in-place updates), so an
optimiser built before a mask was applied or removed still holds the live parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import nn
from torch.nn.utils import parametrize

from models.errors import MaskError, StateDictError
from models.layers import prunable_layers

__all__ = [
    "TicketLike",
    "WeightMask",
    "apply_masks",
    "apply_ticket",
    "current_masks",
    "load_plain_state_dict",
    "plain_state_dict",
    "remove_masks",
]

_ORIGINAL = "parametrizations.weight.original"
_PREFIX = "parametrizations."


class TicketLike(Protocol):
    """What :func:`apply_ticket` needs from a ticket (``kernels.Ticket`` satisfies it)."""

    def validate_against(self, shapes: Mapping[str, tuple[int, ...]]) -> None: ...

    def masks(self) -> dict[str, torch.Tensor]: ...


class WeightMask(nn.Module):
    """Parametrization ``weight -> weight * mask`` with a boolean ``mask`` buffer.

    ``right_inverse`` also multiplies by the mask, so assigning ``module.weight = w`` (or
    registering the parametrization) stores ``w * mask``: raw pruned entries stay zero.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def _mask_of(module: nn.Module) -> WeightMask | None:
    """The module's :class:`WeightMask`, ``None`` if unmasked; raises for foreign parametrizations."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    chain = module.parametrizations["weight"]
    if len(chain) == 1 and isinstance(chain[0], WeightMask):
        return chain[0]
    raise MaskError(
        f"weight parametrization must be a single models.WeightMask. Found {[type(p).__name__ for p in chain]}."
    )


def _unmask(module: nn.Module) -> None:
    """Remove the module's mask, leaving its masked values, without touching any other module.

    NOTE: ``torch.nn.utils.parametrize`` gives each parametrized module a generated class that
    holds the ``weight`` property, and ``copy.deepcopy`` shares that class between the original
    and its copies; ``remove_parametrizations`` deletes the property from the class, which would
    break every copy (or the original). We first move the module onto a private clone of that
    class, so removing a mask from a deep copy never affects the model it was copied from.
    """
    cls = type(module)
    namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, namespace)
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def _masked_layers(model: nn.Module) -> dict[str, tuple[nn.Module, WeightMask]]:
    out = {}
    for name, module in prunable_layers(model).items():
        mask = _mask_of(module)
        if mask is not None:
            out[name] = (module, mask)
    return out


def _check_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, nn.Module]:
    if not isinstance(masks, Mapping):
        raise MaskError(f"masks must be a mapping from layer name to bool tensor. Found {type(masks).__name__}.")
    layers = prunable_layers(model)
    unknown = sorted(set(masks) - set(layers))
    if unknown:
        raise MaskError(f"mask layer names must be prunable layers of the model {list(layers)}. Found {unknown}.")
    for name, mask in masks.items():
        module = layers[name]
        _mask_of(module)  # raises on a foreign parametrization
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            found = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise MaskError(f"mask of {name} must be a bool tensor. Found {found}.")
        shape = tuple(module.weight.shape)
        if tuple(mask.shape) != shape:
            raise MaskError(f"mask shape of {name} must be {shape}. Found {tuple(mask.shape)}.")
    return layers


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Make ``masks`` the model's forward masks, exactly.

    Layers in ``masks`` get (or have replaced) a :class:`WeightMask` and their raw pruned weights
    are zeroed; masked layers not in ``masks`` are unmasked (keeping their masked values);
    other layers are untouched. A mask that keeps every entry (a dense layer of a ticket) leaves
    the layer plain, with no parametrization overhead. Everything is validated before anything
    changes. Applying the same masks twice changes nothing.

    Parameters
    ----------
    model
        The model; modified in place.
    masks
        Layer name (a key of :func:`models.prunable_layers`) -> bool tensor of the layer's weight
        shape, True where the weight is kept. Moved to the weight's device.

    Returns
    -------
    dict[str, torch.Tensor]
        For each layer in ``masks`` and each layer unmasked by this call, its effective weight
        just before the call (a detached copy): keep it to compare with or restore dense weights.

    Raises
    ------
    MaskError
        For an unknown layer name, a non-bool mask, a wrong shape or a foreign parametrization.
    """
    layers = _check_masks(model, masks)
    # A mask that keeps every entry is no mask: the layer is left (or made) plain.
    effective = {name: mask for name, mask in masks.items() if not bool(mask.all())}
    previous = _masked_layers(model)
    replaced = {name: layers[name].weight.detach().clone() for name in (*masks, *previous) if name in layers}
    for name in previous.keys() - effective.keys():
        _unmask(layers[name])
    for name, mask in effective.items():
        module = layers[name]
        mask = mask.to(module.weight.device)
        existing = _mask_of(module)
        if existing is None:
            # right_inverse zeroes the raw pruned weights; the Parameter object is kept.
            parametrize.register_parametrization(module, "weight", WeightMask(mask.clone()))
        else:
            existing.mask.copy_(mask)
            module.parametrizations["weight"].original.mul_(mask)
    return replaced


def apply_ticket(model: nn.Module, ticket: TicketLike) -> dict[str, torch.Tensor]:
    """Apply a ticket's masks: shapes are validated by ``ticket.validate_against`` first.

    The shapes passed are the weight shapes of all prunable layers; a mismatch raises
    ``kernels.TicketMismatchError`` before the model is changed. Then as :func:`apply_masks`
    with ``ticket.masks()`` (layers the ticket leaves out end up unmasked).
    """
    shapes = {name: tuple(module.weight.shape) for name, module in prunable_layers(model).items()}
    ticket.validate_against(shapes)
    return apply_masks(model, ticket.masks())


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The forward masks of the model's masked layers (copies), in module order."""
    return {name: mask.mask.detach().clone() for name, (_, mask) in _masked_layers(model).items()}


@torch.no_grad()
def remove_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Turn every masked layer back into a plain layer holding its masked (effective) weights.

    The pruned values are not recovered (they were zeroed when the mask was applied; keep the
    return value of :func:`apply_masks` for that). Returns the removed masks.
    """
    removed = {}
    for name, (module, mask) in _masked_layers(model).items():
        removed[name] = mask.mask.detach().clone()
        _unmask(module)
    return removed


def _owner(key: str, masked: Mapping[str, object]) -> str | None:
    """The masked layer that a state-dict key belongs to (its own tensors or its parametrization)."""
    head, _, _ = key.partition(_PREFIX)
    if head and head.endswith(".") and head[:-1] in masked:
        return head[:-1]
    layer, _, leaf = key.rpartition(".")
    return layer if layer in masked and leaf else None


@torch.no_grad()
def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict under the keys of the unmasked model, with effective weights.

    Keys and their order are those of the same architecture without masks; a masked layer's
    ``weight`` is ``weight * mask`` (a new tensor); other tensors are detached views of the
    model's own, as in ``state_dict()``. Masks are not included.
    """
    masked = _masked_layers(model)
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        owner = _owner(key, masked)
        if owner is not None:
            weight_key = f"{owner}.weight"
            if weight_key not in out:
                out[weight_key] = masked[owner][0].weight.detach()
            if key.startswith(f"{owner}.{_PREFIX}"):
                continue
        out[key] = value
    return out


def load_plain_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a plain state dict (see :func:`plain_state_dict`) into a masked or unmasked model.

    Masked layers keep their masks: the loaded weight is multiplied by the mask, so pruned
    entries stay exactly zero whatever the dict holds. Keys and shapes are checked first (exact
    match), so a bad dict changes nothing.

    Raises
    ------
    StateDictError
        If keys are missing or unexpected, or a shape differs.
    """
    expected = {key: tuple(value.shape) for key, value in plain_state_dict(model).items()}
    missing, unexpected = sorted(expected.keys() - state_dict.keys()), sorted(state_dict.keys() - expected.keys())
    if missing or unexpected:
        raise StateDictError(
            f"state_dict keys must match the model's plain keys. Found missing {missing}, unexpected {unexpected}."
        )
    for key, shape in expected.items():
        value = state_dict[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise StateDictError(f"state_dict[{key!r}] shape must be {shape}. Found {found}.")
    masked = _masked_layers(model)
    translated: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        layer, _, leaf = key.rpartition(".")
        if leaf == "weight" and layer in masked:
            mask = masked[layer][1].mask
            translated[f"{layer}.{_ORIGINAL}"] = value.to(mask.device) * mask
            translated[f"{layer}.parametrizations.weight.0.mask"] = mask
        else:
            translated[key] = value
    model.load_state_dict(translated, strict=True)
