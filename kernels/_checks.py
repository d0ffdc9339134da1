"""Input checks shared by the modules of ``kernels`` (private: not part of the public API)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping

from kernels.errors import KernelsError


def check_fraction(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a real number in ``[0, 1]``, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise KernelsError(f"{name} must be a real number in [0, 1]. Found {value!r}.")
    return float(value)


def check_same_layers(name: str, given: Mapping[str, object], expected: Mapping[str, object]) -> None:
    """Raise unless ``given`` has exactly the keys of ``expected`` (order does not matter)."""
    if not isinstance(given, Mapping):
        raise KernelsError(f"{name} must be a mapping from layer name. Found {type(given).__name__}.")
    missing = [layer for layer in expected if layer not in given]
    extra = [layer for layer in given if layer not in expected]
    if missing or extra:
        raise KernelsError(
            f"{name} must have one entry per layer {list(expected)}. Found missing {missing}, extra {extra}."
        )


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    """Return ``shape`` as a tuple if it is a non-empty sequence of positive ints, else raise."""
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else None  # torch.Size is a tuple
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise KernelsError(f"{name} must be a non-empty tuple of positive ints. Found {shape!r}.")
    return dims
