"""Building the configured model and moving plain weights in and out of it."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from federation.config import Config
from federation.data import dataset_info


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
