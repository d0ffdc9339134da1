"""Building the configured model and moving plain weights in and out of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from federation.config import Config
from federation.data import dataset_info

if TYPE_CHECKING:
    from kernels import LayerPolicy


def build_model(config: Config, *, seed: int | None = None) -> nn.Module:
    """The configured architecture for the configured dataset; seeded init when ``seed`` is given (θ0)."""
    from models import registry

    info = dataset_info(config.dataset)
    if seed is not None:
        torch.manual_seed(seed)
    return registry.get(
        config.model,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        image_size=info.image_size,
        width=config.width or None,
    )


def plain_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Effective weights under plain key names (masks applied), as sent over the wire."""
    from models.masking import plain_state_dict

    return {k: v.detach().clone() for k, v in plain_state_dict(model).items()}


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    from models.masking import load_plain_state_dict

    load_plain_state_dict(model, state)


def ticket_policies(model: nn.Module, *, other_layers: str = "dense") -> dict[str, LayerPolicy]:
    """Layer policies of a dppt ticket: 3x3 convolutions follow patterns, every other layer gets ``other_layers``.

    ``other_layers`` is the config's ``other-layers``: ``"dense"`` (the default: the search's
    sparsity target is the conv weights', DESIGN.md 3) or ``"unstructured"`` (those layers keep
    their largest ``|w|`` of the public weights at the round's density: post-processing, ε = 0).
    The server and every client must use the same policies, so both call this with the run's config.
    """
    from models import default_policies

    return default_policies(model, linear=other_layers, other_conv=other_layers)  # type: ignore[arg-type]
