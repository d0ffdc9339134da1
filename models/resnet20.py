"""ResNet-20 for 32x32 inputs (He et al. 2016, section 4.2: CIFAR-10 variant, n = 3)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.initialisation import init_kaiming
from models.norms import Norm, make_norm, scaled
from models.validation import check_architecture_args

__all__ = ["BasicBlock", "ResNet20"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity shortcut (option A: subsample + zero-pad channels)."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: Norm | str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, planes)
        self.stride = stride
        self.extra_planes = planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # He et al. 2016 option A: parameter-free, so every convolution of the network is a 3x3 one.
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_planes > 0:
            half = self.extra_planes // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra_planes - half))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """conv3x3(16w) - 3 stages x 3 basic blocks (16w, 32w, 64w; stride 2 at stages 2, 3) - avgpool - fc.

    Normalisation defaults to GroupNorm (``norm="group"``): BatchNorm's batch statistics break
    per-example gradients (DP-SGD, SNIP) and its running statistics do not average across non-IID
    clients. ``norm="batch"`` gives the original network for centralised baselines.

    Prunable layers: ``conv1`` (first conv), ``layer{1,2,3}.{0,1,2}.conv{1,2}`` (all 3x3), ``fc``.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: int,
        width: float = 1.0,
        norm: Norm | str = Norm.GROUP,
    ) -> None:
        super().__init__()
        check_architecture_args(
            num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width, min_size=8
        )
        planes = [scaled(16, width), scaled(32, width), scaled(64, width)]
        self.input_shape: tuple[int, int, int] = (in_channels, image_size, image_size)
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, padding=1, bias=False)
        self.norm1 = make_norm(norm, planes[0])
        in_planes = planes[0]
        stages = []
        for index, out_planes in enumerate(planes):
            blocks = []
            for block in range(3):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(in_planes, out_planes, stride, norm))
                in_planes = out_planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(planes[2], num_classes)
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))
