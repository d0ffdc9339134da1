"""Conv4: a small VGG-style network of 3x3 convolutions (Frankle & Carbin 2019, scaled by ``width``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.initialisation import init_kaiming
from models.norms import Norm, make_norm, scaled
from models.validation import check_architecture_args

__all__ = ["DEFAULT_WIDTH", "Conv4"]

# Width multiplier of the default Conv4. At width 1 the network is Frankle & Carbin's Conv-4
# (64-64-pool-128-128-pool-256-classes; 1.87 M parameters, 74 M MACs per 28x28 example). Measured
# on one CPU thread of the project's shared 2-core machine, one client-epoch (6000 MNIST-shaped
# images, batch 32, SGD) takes 18.8 s at width 1, 4.8 s at width 0.5 and 1.8 s at width 0.25
# (117 k parameters, 4.7 M MACs). Width 0.25 (16-16-32-32, fc 64) keeps the topology and leaves
# room for 10+ simulated clients per round on two cores; it still reaches ~97-98% on MNIST.
DEFAULT_WIDTH = 0.25


class Conv4(nn.Module):
    """conv3x3(64w)-conv3x3(64w)-maxpool-conv3x3(128w)-conv3x3(128w)-maxpool-fc(256w)-fc(classes).

    Convolutions use padding 1, so a 28x28 input gives 7x7 maps before the classifier. There is
    no normalisation by default (``norm="none"``): batch statistics mix the examples of a batch,
    which breaks per-example gradients (Opacus, SNIP via ``torch.func``), and BatchNorm's running
    statistics are per client under non-IID federated data. ``norm="group"`` adds GroupNorm, which
    normalises each example on its own and is safe for both.

    Prunable layers: ``conv1`` .. ``conv4`` (3x3, ``conv1`` is the first conv), ``fc1``, ``fc2``.

    Parameters
    ----------
    num_classes, in_channels, image_size
        Output classes, input channels and (square) input side; ``image_size >= 4``.
    width
        Channel multiplier (default :data:`DEFAULT_WIDTH`).
    norm
        ``"none"`` (default), ``"group"`` or ``"batch"`` (see :class:`models.norms.Norm`).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: int,
        width: float = DEFAULT_WIDTH,
        norm: Norm | str = Norm.NONE,
    ) -> None:
        super().__init__()
        check_architecture_args(
            num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width, min_size=4
        )
        c1, c2, hidden = scaled(64, width), scaled(128, width), scaled(256, width)
        self.input_shape: tuple[int, int, int] = (in_channels, image_size, image_size)
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.norm1 = make_norm(norm, c1)
        self.conv2 = nn.Conv2d(c1, c1, 3, padding=1)
        self.norm2 = make_norm(norm, c1)
        self.conv3 = nn.Conv2d(c1, c2, 3, padding=1)
        self.norm3 = make_norm(norm, c2)
        self.conv4 = nn.Conv2d(c2, c2, 3, padding=1)
        self.norm4 = make_norm(norm, c2)
        side = image_size // 2 // 2
        self.fc1 = nn.Linear(c2 * side * side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.norm2(self.conv2(x))), 2)
        x = F.relu(self.norm3(self.conv3(x)))
        x = F.max_pool2d(F.relu(self.norm4(self.conv4(x))), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)
