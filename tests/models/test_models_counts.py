"""Parameter and MAC counts, checked against counts done by hand."""

from __future__ import annotations

import pytest
import torch

import models


def test_conv4_second_conv_counted_by_hand() -> None:
    model = models.get("conv4", num_classes=10, in_channels=1, image_size=28, width=0.25)
    counts = models.count_model(model)
    conv2 = counts.layers["conv2"]
    # 16 -> 16 channels, 3x3, bias; padding 1 keeps 28x28 outputs.
    assert conv2.weight_shape == (16, 16, 3, 3)
    assert conv2.params == 16 * 16 * 9 + 16
    assert conv2.macs == 28 * 28 * 16 * 16 * 9
    fc1 = counts.layers["fc1"]
    assert fc1.params == 32 * 7 * 7 * 64 + 64 and fc1.macs == 32 * 7 * 7 * 64
    assert counts.total_params == sum(p.numel() for p in model.parameters())
    assert counts.total_macs == sum(c.macs for c in counts.layers.values())
    assert counts.kept_params == counts.total_params and counts.kept_macs == counts.total_macs


def test_resnet20_has_the_published_size() -> None:
    # He et al. 2016 (option A shortcuts): 0.27 M parameters, about 41 M MACs on 32x32 inputs.
    counts = models.count_model(models.get("resnet20", num_classes=10, in_channels=3, image_size=32))
    assert counts.total_params == 269_722
    assert 40e6 < counts.total_macs < 42e6
    assert len(counts.layers) == 20  # 19 convolutions and the classifier
    strided = counts.layers["layer2.0.conv1"]
    assert strided.macs == 16 * 16 * 32 * 16 * 9


def test_lenet5_counts() -> None:
    counts = models.count_model(models.get("lenet5", num_classes=10, in_channels=1, image_size=28))
    assert counts.total_params == 61_706  # the classic LeNet-5 size
    assert counts.layers["conv1"].macs == 28 * 28 * 6 * 25
    assert counts.layers["conv2"].macs == 10 * 10 * 16 * 6 * 25


def test_kept_counts_follow_the_masks() -> None:
    model = models.get("conv4", num_classes=10, in_channels=1, image_size=28, width=0.25)
    mask = torch.zeros(16, 16, 3, 3, dtype=torch.bool)
    mask[:, :, 1, 1] = True  # 256 kept weights
    explicit = models.count_model(model, masks={"conv2": mask})
    assert explicit.layers["conv2"].kept_weight_params == 256
    assert explicit.layers["conv2"].kept_macs == 256 * 28 * 28
    assert explicit.layers["conv2"].kept_params == 256 + 16
    assert explicit.layers["conv1"].kept_macs == explicit.layers["conv1"].macs
    assert explicit.kept_params == explicit.total_params - (2304 - 256)
    models.apply_masks(model, {"conv2": mask})
    implicit = models.count_model(model)  # the model's own masks
    assert implicit == explicit
    assert implicit.layers["conv2"].density == pytest.approx(1 / 9)


def test_counts_reject_unknown_mask_layers() -> None:
    model = models.get("conv4", num_classes=10, in_channels=1, image_size=28)
    with pytest.raises(models.MaskError, match="Found 'conv9'"):
        models.count_model(model, masks={"conv9": torch.ones(1, dtype=torch.bool)})
