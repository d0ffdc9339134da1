"""Reading JSON values of a run directory: numbers that may be written ``"inf"``, nested keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulations.report.errors import ReportError
from storage import decode_float

__all__ = ["as_number", "nested"]


def as_number(value: object, *, where: str, fix: str = "regenerate the file with the run") -> float | None:
    """``value`` as a float (``"inf"`` strings accepted); ``None`` stays ``None``.

    Parameters
    ----------
    value
        A JSON value.
    where
        Names the file and key for the error message, e.g. ``"summary.json key 'wall-time-s'"``.
    fix
        How to fix the file, for the error message.

    Raises
    ------
    ReportError
        If ``value`` is neither a number, ``None`` nor one of the strings ``inf``, ``-inf``, ``nan``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ReportError(f"{where} must be a number or \"inf\". Found {value!r}; {fix}.")
    if isinstance(value, (int, float)):
        return float(value)
    decoded = decode_float(value)  # the one spelling of inf, -inf and nan (storage.encode_float)
    if isinstance(decoded, float):
        return decoded
    raise ReportError(f"{where} must be a number or \"inf\". Found {value!r}; {fix}.")


def nested(data: Mapping[str, Any] | None, *keys: str) -> Any:
    """``data[k1][k2]...``, or ``None`` where a key or a mapping is missing."""
    current: Any = data
    for key in keys:
        if not isinstance(current, Mapping) or key not in current:
            return None
        current = current[key]
    return current
