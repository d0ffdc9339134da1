"""A report as a list of blocks, rendered to Markdown and to HTML from the same content."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from simulations.report.errors import ReportError

__all__ = ["Block", "BulletList", "Heading", "Image", "Paragraph", "Table"]


@dataclass(frozen=True, kw_only=True)
class Heading:
    """A section title."""

    level: int = field(metadata={"help": "1 (title) to 4"})
    text: str = field(metadata={"help": "plain text"})

    def __post_init__(self) -> None:
        if not 1 <= self.level <= 4:
            raise ReportError(f"level must be in [1, 4]. Found {self.level}.")


@dataclass(frozen=True, kw_only=True)
class Paragraph:
    """A paragraph of plain text."""

    text: str = field(metadata={"help": "plain text"})


@dataclass(frozen=True, kw_only=True)
class BulletList:
    """An unordered list of plain-text items."""

    items: tuple[str, ...] = field(metadata={"help": "one plain-text item per bullet"})


@dataclass(frozen=True, kw_only=True)
class Table:
    """A table of plain-text cells; every row has one cell per header."""

    headers: tuple[str, ...] = field(metadata={"help": "column titles"})
    rows: tuple[tuple[str, ...], ...] = field(metadata={"help": "cells, row by row"})

    def __post_init__(self) -> None:
        rows = tuple(tuple(row) for row in self.rows)
        bad = [index for index, row in enumerate(rows) if len(row) != len(self.headers)]
        if bad:
            raise ReportError(
                f"every row must have {len(self.headers)} cells (one per header). Found rows {bad[:5]} differ."
            )
        object.__setattr__(self, "headers", tuple(self.headers))
        object.__setattr__(self, "rows", rows)

    @classmethod
    def of(cls, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
        """Build a table from any sequences."""
        return cls(headers=tuple(headers), rows=tuple(tuple(row) for row in rows))


@dataclass(frozen=True, kw_only=True)
class Image:
    """A PNG plot, written to ``plots/<name>`` and embedded in the HTML."""

    name: str = field(metadata={"help": "file name under plots/, e.g. accuracy.png"})
    alt: str = field(metadata={"help": "caption and alternative text"})
    png: bytes = field(repr=False, metadata={"help": "PNG bytes"})

    def __post_init__(self) -> None:
        if not self.png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ReportError(f"png of {self.name} must be PNG bytes. Found another format.")


Block = Heading | Paragraph | BulletList | Table | Image
