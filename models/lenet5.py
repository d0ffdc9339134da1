"""LeNet-5 (LeCun et al. 1998) with ReLU and max pooling: a reference with 5x5 convolutions."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.initialisation import init_kaiming
from models.norms import scaled
from models.validation import check_architecture_args

__all__ = ["LeNet5"]


class LeNet5(nn.Module):
    """conv5x5(6w)-maxpool-conv5x5(16w)-maxpool-fc(120w)-fc(84w)-fc(classes).

    NOTE: LeCun et al. (1998) use scaled tanh and trainable average-pool subsampling; we use ReLU
    and max pooling, as most modern reimplementations do. The first convolution is zero-padded so
    that inputs smaller than 32x32 (MNIST's 28x28) see the original 32x32 geometry.

    The pattern policy does not apply here (no 3x3 kernels): both convolutions and the linear
    layers are unstructured or dense in a ticket. Prunable layers: ``conv1``, ``conv2``, ``fc1``,
    ``fc2``, ``fc3``.
    """

    def __init__(self, *, num_classes: int, in_channels: int, image_size: int, width: float = 1.0) -> None:
        super().__init__()
        check_architecture_args(
            num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width, min_size=12
        )
        c1, c2 = scaled(6, width), scaled(16, width)
        pad = max(0, (32 - image_size + 1) // 2)
        self.input_shape: tuple[int, int, int] = (in_channels, image_size, image_size)
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=pad)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        side = ((image_size + 2 * pad - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(c2 * side * side, scaled(120, width))
        self.fc2 = nn.Linear(scaled(120, width), scaled(84, width))
        self.fc3 = nn.Linear(scaled(84, width), num_classes)
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
