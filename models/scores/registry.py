"""The scorer registry: the single entry point that builds a scorer by name."""

from __future__ import annotations

from typing import Any

from models.errors import RegistrationError, UnknownNameError
from models.scores.base import Scorer
from models.scores.magnitude import Magnitude
from models.scores.snip import Snip
from models.scores.synflow import SynFlow

__all__ = ["get", "names", "reads_data", "register"]

_REGISTRY: dict[str, type[Scorer]] = {}


def register(name: str, scorer: type[Scorer], *, force: bool = False) -> None:
    """Register a :class:`Scorer` subclass under ``name``; refuses to overwrite unless ``force``."""
    if not isinstance(name, str) or not name:
        raise RegistrationError(f"name must be a non-empty str. Found {name!r}.")
    if not isinstance(scorer, type) or not issubclass(scorer, Scorer):
        raise RegistrationError(f"scorer must be a Scorer subclass. Found {scorer!r}.")
    if name in _REGISTRY and not force:
        raise RegistrationError(f"name must not be registered already (pass force=True to replace it). Found {name!r}.")
    _REGISTRY[name] = scorer


def names() -> tuple[str, ...]:
    """The registered scorer names, sorted."""
    return tuple(sorted(_REGISTRY))


def reads_data(name: str) -> bool:
    """Whether the scorer ``name`` reads private examples (``False``: a data-free score, ε = 0).

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered; the message lists the valid names.
    """
    try:
        return _REGISTRY[name].data_dependent
    except (KeyError, TypeError) as err:
        raise UnknownNameError(f"scorer must be one of {list(names())}. Found {name!r}.") from err


def get(name: str, **options: Any) -> Scorer:
    """Build the scorer ``name`` with its options (e.g. ``get("synflow", iterations=100)``).

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered; the message lists the valid names.
    TypeError
        For an option the scorer does not take (never silently ignored).
    """
    try:
        cls = _REGISTRY[name]
    except (KeyError, TypeError) as err:
        raise UnknownNameError(f"scorer must be one of {list(names())}. Found {name!r}.") from err
    return cls(**options)


register(Magnitude.name, Magnitude)
register(SynFlow.name, SynFlow)
register(Snip.name, Snip)
