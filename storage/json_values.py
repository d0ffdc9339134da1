"""The JSON spelling of non-finite floats, one for every file dppt writes.

JSON has no infinity (``json.dumps`` writes the non-standard ``Infinity``), and an ε of ``inf``
(a non-private release) is an ordinary value in dppt's ledgers, configs and summaries. Every file
therefore writes ``inf``, ``-inf`` and ``nan`` as those strings, which any JSON tool reads and
``float()`` parses back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["decode_float", "encode_float", "jsonable"]

_NON_FINITE: Final = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_float(value: float) -> float | str:
    """``value``, or ``"inf"`` / ``"-inf"`` / ``"nan"`` for the non-finite floats."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def decode_float(value: object) -> object:
    """The inverse of :func:`encode_float`: ``"inf"``, ``"-inf"``, ``"nan"`` become floats.

    Any other value is returned unchanged (the caller checks its type), so a string that merely
    looks numeric (``"1.0"``) is not silently accepted as a number.
    """
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    return value


def jsonable(value: Any) -> Any:
    """``value`` with every float encoded (:func:`encode_float`), in mappings, lists and tuples.

    numpy and torch scalars (anything with a callable ``item``) become Python numbers first;
    mapping keys become strings.
    """
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if not isinstance(value, (str, bytes, int)) and callable(getattr(value, "item", None)):
        return jsonable(value.item())
    return value
