"""Model registry, shapes of every architecture, and argument validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models
from models import registry


@pytest.mark.parametrize(
    ("name", "in_channels", "image_size"),
    [("conv4", 1, 28), ("conv4", 3, 32), ("lenet5", 1, 28), ("lenet5", 3, 32), ("resnet20", 3, 32), ("resnet20", 1, 28)],
)
def test_every_model_maps_a_batch_to_logits(name: str, in_channels: int, image_size: int) -> None:
    model = models.get(name, num_classes=7, in_channels=in_channels, image_size=image_size)
    assert model.input_shape == (in_channels, image_size, image_size)
    out = model(torch.randn(3, in_channels, image_size, image_size))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


def test_names_lists_the_builtin_models() -> None:
    assert {"conv4", "lenet5", "resnet20"} <= set(models.names())
    assert list(models.names()) == sorted(models.names())


def test_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(models.UnknownNameError, match=r"model must be one of \[.*'conv4'.*\]\. Found 'vgg'\.") as info:
        models.get("vgg", num_classes=10, in_channels=1, image_size=28)
    assert isinstance(info.value, LookupError)


def test_unknown_option_is_not_ignored() -> None:
    with pytest.raises(TypeError):
        models.get("conv4", num_classes=10, in_channels=1, image_size=28, depth=7)


def test_registration_refuses_to_overwrite_unless_forced() -> None:
    with pytest.raises(models.RegistrationError, match="force=True"):
        models.register("conv4", models.LeNet5)
    assert isinstance(models.get("conv4", num_classes=10, in_channels=1, image_size=28), models.Conv4)
    name = "test-registry-tiny"
    try:
        models.register(name, lambda **kw: nn.Linear(1, 1))
        models.register(name, models.LeNet5, force=True)
        assert isinstance(models.get(name, num_classes=10, in_channels=1, image_size=28), models.LeNet5)
    finally:
        registry._REGISTRY.pop(name, None)


def test_width_scales_channels() -> None:
    narrow = models.get("conv4", num_classes=10, in_channels=1, image_size=28, width=0.25)
    wide = models.get("conv4", num_classes=10, in_channels=1, image_size=28, width=0.5)
    assert narrow.conv1.out_channels == 16 and wide.conv1.out_channels == 32
    assert models.get("conv4", num_classes=10, in_channels=1, image_size=28).conv1.out_channels == round(
        64 * models.CONV4_DEFAULT_WIDTH
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 0}, "num_classes must be a positive int. Found 0."),
        ({"in_channels": 1.5}, "in_channels must be a positive int. Found 1.5."),
        ({"image_size": 2}, r"image_size must be an int >= 4\. Found 2\."),
        ({"width": -1.0}, "width must be a positive number. Found -1.0."),
        ({"norm": "layer"}, r"norm must be one of \['none', 'group', 'batch'\]. Found 'layer'."),
    ],
)
def test_bad_architecture_arguments_raise(kwargs: dict, match: str) -> None:
    args = {"num_classes": 10, "in_channels": 1, "image_size": 28} | kwargs
    with pytest.raises(models.ModelConfigError, match=match):
        models.get("conv4", **args)


def test_conv4_uses_no_batch_norm_by_default_and_group_norm_on_request() -> None:
    plain = models.get("conv4", num_classes=10, in_channels=1, image_size=28)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in plain.modules())
    grouped = models.get("conv4", num_classes=10, in_channels=1, image_size=28, norm="group")
    assert sum(isinstance(m, nn.GroupNorm) for m in grouped.modules()) == 4
    resnet = models.get("resnet20", num_classes=10, in_channels=3, image_size=32)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in resnet.modules())


def test_per_example_outputs_do_not_depend_on_the_batch() -> None:
    # No batch statistics anywhere by default: a prerequisite of per-example gradients.
    for name, shape in (("conv4", (1, 28)), ("resnet20", (3, 32))):
        model = models.get(name, num_classes=10, in_channels=shape[0], image_size=shape[1]).train()
        x = torch.randn(4, shape[0], shape[1], shape[1])
        torch.testing.assert_close(model(x)[:1], model(x[:1]))
