"""Typed errors of the ``kernels`` package.

Every error is a :class:`ValueError`, so callers that only care about bad input can catch that;
callers that need to tell a damaged ticket file from a ticket that does not fit a model catch the
specific subclass. Messages follow the house phrasing
``"<name> must be <constraint>. Found <value>."``.
"""

from __future__ import annotations

__all__ = ["EdgeFormatError", "KernelsError", "TicketFormatError", "TicketMismatchError"]


class KernelsError(ValueError):
    """Invalid input to the pattern math or to a ticket."""


class TicketMismatchError(KernelsError):
    """A ticket does not fit a model or another ticket (missing, extra or reshaped layers)."""


class TicketFormatError(KernelsError):
    """A ticket file is not a readable ``dppt-ticket`` file of a supported version."""


class EdgeFormatError(KernelsError):
    """An exported edge model (``dppt-edge`` file or graph) is damaged, of another format, or inconsistent."""
