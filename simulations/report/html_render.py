"""Render report blocks as one self-contained HTML page (plots embedded as base64 data URIs)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape

from simulations.report.document import Block, BulletList, Heading, Image, Paragraph, Table

__all__ = ["to_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 1em auto; padding: 0 1em; color: #222; }
body > p:first-child { background: #f4f7fb; border-left: 4px solid #36c; padding: 0.5em 0.8em; margin-top: 0; }
h1 { font-size: 1.6em; margin: 0.6em 0 0.3em; }
h2 { margin: 1em 0 0.4em; }
h3 { margin: 0.8em 0 0.3em; }
table { border-collapse: collapse; margin: 0.3em 0 0.9em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
th { background: #f0f0f0; }
td { font-variant-numeric: tabular-nums; }
figure { margin: 0.5em 0 1.5em; }
img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
"""


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "\n".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{escape(block.text)}</p>"
    if isinstance(block, BulletList):
        return "<ul>\n" + "\n".join(f"<li>{escape(item)}</li>" for item in block.items) + "\n</ul>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Image):
        data = base64.b64encode(block.png).decode("ascii")
        return (
            f'<figure><img alt="{escape(block.alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(block.alt)}</figcaption></figure>"
        )
    raise TypeError(f"block must be a report block. Found {type(block).__name__}.")


def to_html(blocks: Sequence[Block], *, title: str) -> str:
    """A complete HTML5 page holding ``blocks``; it loads nothing from outside the file."""
    body = "\n".join(_block(block) for block in blocks)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
