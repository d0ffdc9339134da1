"""Argument checks shared by the architectures."""

from __future__ import annotations

from models.errors import ModelConfigError

__all__ = ["check_architecture_args"]


def check_architecture_args(
    *, num_classes: int, in_channels: int, image_size: int, width: float, min_size: int
) -> None:
    """Raise :class:`ModelConfigError` unless the common constructor arguments are valid."""
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelConfigError(f"{name} must be a positive int. Found {value!r}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < min_size:
        raise ModelConfigError(f"image_size must be an int >= {min_size}. Found {image_size!r}.")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ModelConfigError(f"width must be a positive number. Found {width!r}.")
