"""How numbers are written in reports: parseable back with ``float`` (``"inf"`` for infinity)."""

from __future__ import annotations

import math
from typing import Final

__all__ = ["NOT_AVAILABLE", "SIGNIFICANT_DIGITS", "format_float", "format_int", "format_seconds"]

SIGNIFICANT_DIGITS: Final = 6
NOT_AVAILABLE: Final = "n/a"


def format_float(value: float | None, *, digits: int = SIGNIFICANT_DIGITS) -> str:
    """``value`` with ``digits`` significant digits; ``"inf"`` for infinity, ``"n/a"`` for ``None``.

    ``float(format_float(x))`` equals ``x`` to ``digits`` significant digits.
    """
    if value is None:
        return NOT_AVAILABLE
    number = float(value)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return f"{number:.{digits}g}"


def format_int(value: int | float | None) -> str:
    """An integer count, ``"n/a"`` for ``None``."""
    if value is None:
        return NOT_AVAILABLE
    if isinstance(value, float) and not value.is_integer():
        return format_float(value)  # inf, nan or a fraction: show it rather than truncate it
    return str(int(value))


def format_seconds(seconds: float | None) -> str:
    """Wall time as ``"754.2 s (12 min 34 s)"``; ``"n/a"`` for ``None``."""
    if seconds is None or math.isnan(seconds):
        return NOT_AVAILABLE
    if math.isinf(seconds):
        return "inf"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        clock = f"{hours} h {minutes} min {secs} s"
    elif minutes:
        clock = f"{minutes} min {secs} s"
    else:
        return f"{seconds:.1f} s"
    return f"{seconds:.1f} s ({clock})"
