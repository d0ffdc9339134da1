"""Typed error of the report package."""

from __future__ import annotations

__all__ = ["ReportError"]


class ReportError(ValueError):
    """An input of a run directory is missing or malformed.

    The message is always one line: it names the file and says how to fix it. Whitespace
    (newlines included) in the message given is collapsed to single spaces.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
