"""The model registry: the single entry point that builds an architecture by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import nn

from models.conv4 import Conv4
from models.errors import RegistrationError, UnknownNameError
from models.lenet5 import LeNet5
from models.resnet20 import ResNet20

__all__ = ["ModelBuilder", "get", "names", "register"]


class ModelBuilder(Protocol):
    """Builds a fresh, initialised model; ``width`` is only passed when the caller set it."""

    def __call__(self, *, num_classes: int, in_channels: int, image_size: int, **options: Any) -> nn.Module: ...


_REGISTRY: dict[str, ModelBuilder] = {}


def register(name: str, builder: ModelBuilder | Callable[..., nn.Module], *, force: bool = False) -> None:
    """Register ``builder`` under ``name``.

    Raises
    ------
    RegistrationError
        If ``name`` is empty or already registered and ``force`` is false.
    """
    if not isinstance(name, str) or not name:
        raise RegistrationError(f"name must be a non-empty str. Found {name!r}.")
    if not callable(builder):
        raise RegistrationError(f"builder must be callable. Found {builder!r}.")
    if name in _REGISTRY and not force:
        raise RegistrationError(
            f"name must not be registered already (pass force=True to replace it). Found {name!r}."
        )
    _REGISTRY[name] = builder


def names() -> tuple[str, ...]:
    """The registered model names, sorted."""
    return tuple(sorted(_REGISTRY))


def get(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    width: float | None = None,
    **options: Any,
) -> nn.Module:
    """Build a freshly initialised model.

    Parameters
    ----------
    name
        A registered name (see :func:`names`): ``"conv4"``, ``"lenet5"``, ``"resnet20"``.
    num_classes, in_channels, image_size
        Output classes, input channels and square input side (e.g. 10, 1, 28 for MNIST).
    width
        Channel multiplier; ``None`` uses the architecture's default.
    **options
        Architecture-specific keyword arguments (e.g. ``norm="group"``); an unknown option raises
        ``TypeError`` from the builder, it is never ignored.

    Returns
    -------
    nn.Module
        The model; it carries ``input_shape`` = ``(in_channels, image_size, image_size)``.

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered; the message lists the valid names.
    """
    try:
        builder = _REGISTRY[name]
    except (KeyError, TypeError) as err:
        raise UnknownNameError(f"model must be one of {list(names())}. Found {name!r}.") from err
    if width is not None:
        options["width"] = width
    return builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **options)


register("conv4", Conv4)
register("lenet5", LeNet5)
register("resnet20", ResNet20)
