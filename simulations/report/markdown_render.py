"""Render report blocks as Markdown (plots referenced as ``plots/<name>``)."""

from __future__ import annotations

from collections.abc import Sequence

from simulations.report.document import Block, BulletList, Heading, Image, Paragraph, Table
from simulations.report.outputs import PLOTS_DIR

__all__ = ["to_markdown"]


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> str:
    lines = [
        "| " + " | ".join(_cell(h) for h in table.headers) + " |",
        "|" + "|".join("---" for _ in table.headers) + "|",
    ]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows)
    return "\n".join(lines)


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, BulletList):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Image):
        return f"![{block.alt}]({PLOTS_DIR}/{block.name})"
    raise TypeError(f"block must be a report block. Found {type(block).__name__}.")


def to_markdown(blocks: Sequence[Block]) -> str:
    """The Markdown text of ``blocks``, blocks separated by blank lines, ending with a newline."""
    return "\n\n".join(_block(block) for block in blocks) + "\n"
