"""Typed errors of the ``models`` package.

Every error derives from :class:`ModelsError`; each also derives from the builtin that callers
would naturally catch (``LookupError`` for failed registry look-ups, ``ValueError`` for bad input),
so ``except ValueError`` keeps working. Messages follow the house phrasing
``"<name> must be <constraint>. Found <value>."``.
"""

from __future__ import annotations

__all__ = [
    "MaskError",
    "ModelConfigError",
    "ModelsError",
    "RegistrationError",
    "ScoreError",
    "StateDictError",
    "UnknownNameError",
]


class ModelsError(Exception):
    """Base class of every error raised by ``models``."""


class UnknownNameError(ModelsError, LookupError):
    """A registry (models or scorers) was asked for a name it does not hold; the message lists the valid names."""


class ModelConfigError(ModelsError, ValueError):
    """Invalid architecture arguments (number of classes, input size, width, normalisation)."""


class RegistrationError(ModelsError, ValueError):
    """A registration would overwrite an existing entry without ``force=True``, or is malformed."""


class MaskError(ModelsError, ValueError):
    """Masks that do not fit a model: unknown layer, wrong shape, non-boolean values, unsupported module."""


class StateDictError(ModelsError, ValueError):
    """A plain state dict whose keys or shapes do not match the model it is loaded into."""


class ScoreError(ModelsError, ValueError):
    """Invalid input to a scorer (domains, layers, candidates, clipping, data)."""
