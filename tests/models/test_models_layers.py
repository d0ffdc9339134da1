"""Prunable layers and default sparsity policies."""

from __future__ import annotations

import pytest

import models
from kernels import LayerPolicy


def test_prunable_layers_are_convs_and_linears_by_qualified_name() -> None:
    resnet = models.get("resnet20", num_classes=10, in_channels=3, image_size=32)
    names = list(models.prunable_layers(resnet))
    assert names[0] == "conv1" and names[-1] == "fc"
    assert "layer3.2.conv2" in names and len(names) == 20


def test_default_policies_conv4() -> None:
    model = models.get("conv4", num_classes=10, in_channels=1, image_size=28)
    assert models.default_policies(model) == {
        "conv1": LayerPolicy.PATTERN,
        "conv2": LayerPolicy.PATTERN,
        "conv3": LayerPolicy.PATTERN,
        "conv4": LayerPolicy.PATTERN,
        "fc1": LayerPolicy.UNSTRUCTURED,
        "fc2": LayerPolicy.UNSTRUCTURED,
    }
    custom = models.default_policies(model, first_conv="dense", linear="dense")
    assert custom["conv1"] is LayerPolicy.DENSE and custom["conv2"] is LayerPolicy.PATTERN
    assert custom["fc1"] is LayerPolicy.DENSE


def test_lenet5_has_no_pattern_layer() -> None:
    lenet = models.get("lenet5", num_classes=10, in_channels=1, image_size=28)
    policies = models.default_policies(lenet)
    assert LayerPolicy.PATTERN not in policies.values()
    assert models.default_policies(lenet, other_conv="dense")["conv2"] is LayerPolicy.DENSE
    with pytest.raises(models.ModelConfigError, match="first_conv must be 'unstructured' or 'dense'"):
        models.default_policies(lenet, first_conv="pattern")


def test_unknown_policy_is_rejected() -> None:
    model = models.get("conv4", num_classes=10, in_channels=1, image_size=28)
    with pytest.raises(models.ModelConfigError, match=r"linear must be one of \['unstructured', 'dense'\]"):
        models.default_policies(model, linear="pattern")  # type: ignore[arg-type]
