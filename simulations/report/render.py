"""``render_report``: the privacy-budget report of one run directory (Markdown, HTML, PNG plots)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from storage import write_atomic
from simulations.report.document import Block, Image
from simulations.report.html_render import to_html
from simulations.report.ledger_reader import ledger_accountant
from simulations.report.markdown_render import to_markdown
from simulations.report.outputs import HTML_FILE, MARKDOWN_FILE, PLOT_FILES, PLOTS_DIR
from simulations.report.run_inputs import load_run
from simulations.report.sections_privacy import (
    delta_section,
    epsilon_per_client_section,
    epsilon_per_round_section,
    guarantee_line,
    header_section,
    mechanisms_section,
    report_title,
    statement_section,
    title_line,
)
from simulations.report.sections_overview import overview_section
from simulations.report.sections_training import accuracy_section, sparsity_section, vote_quality_section

__all__ = ["HTML_FILE", "MARKDOWN_FILE", "PLOT_FILES", "ReportPaths", "render_report"]

@dataclass(frozen=True, kw_only=True)
class ReportPaths:
    """Files written by :func:`render_report`."""

    markdown: Path = field(metadata={"help": "run_dir/report.md"})
    html: Path = field(metadata={"help": "run_dir/report.html, self-contained"})
    plots: tuple[Path, ...] = field(metadata={"help": "run_dir/plots/*.png written this time"})


def _blocks(run_dir: Path) -> list[Block]:
    inputs = load_run(run_dir)
    accountant = ledger_accountant(inputs.ledger, inputs.config)
    totals = accountant.totals()
    return [
        *guarantee_line(inputs, totals),  # the first line: what is private and what is not
        *title_line(inputs),
        *overview_section(inputs, totals),  # the first screen: accuracy, rounds to accuracy, sparsity, ε
        *header_section(inputs),
        *statement_section(inputs, totals),
        *epsilon_per_round_section(inputs, totals),
        *epsilon_per_client_section(inputs, totals),
        *mechanisms_section(inputs),
        *delta_section(inputs, totals, accountant),
        *accuracy_section(inputs),
        *sparsity_section(inputs, totals),
        *vote_quality_section(inputs),
    ]


def render_report(run_dir: str | os.PathLike[str]) -> ReportPaths:
    """Write the privacy-budget report of a run from its directory alone.

    Reads ``config.json``, ``ledger.jsonl`` (never modified) and, when present, ``metrics.jsonl``,
    ``summary.json`` and the ticket; no Flower, network or dataset. The first line is the run's
    guarantee in words (``summary.json``'s ``"guarantee"``, else
    :func:`federation.statement.guarantee_statement` of the same config and ledger); then one
    screen, "At a glance" (:func:`simulations.report.sections_overview.overview_section`: test
    accuracy beside dense with rounds to accuracy, the ticket's sparsity and MACs kept, ε spent of
    the budget per unit); then the detailed sections. The report names no client.
    Writes ``report.md``, ``report.html`` (plots embedded as base64 data URIs) and
    ``plots/*.png``, each atomically (temporary file, then ``os.replace``). Re-running overwrites
    those files only; a plot of this report that has no data any more is removed, so the folder
    never shows a stale figure. Sections without data (partial run) say so.

    Parameters
    ----------
    run_dir
        The run directory.

    Returns
    -------
    ReportPaths

    Raises
    ------
    ReportError
        On a missing or malformed input, with one line naming the file and the fix. Nothing is
        written in that case.
    """

    root = Path(run_dir)
    blocks = _blocks(root)  # every input is read and checked before anything is written
    images = [block for block in blocks if isinstance(block, Image)]
    plots_dir = root / PLOTS_DIR
    written = []
    for image in images:
        path = plots_dir / image.name
        write_atomic(path, image.png)
        written.append(path)
    for name in PLOT_FILES:
        stale = plots_dir / name
        if stale not in written and stale.is_file():
            stale.unlink()
    title = report_title(root)
    markdown, html = root / MARKDOWN_FILE, root / HTML_FILE
    write_atomic(markdown, to_markdown(blocks).encode("utf-8"))
    write_atomic(html, to_html(blocks, title=title).encode("utf-8"))
    return ReportPaths(markdown=markdown, html=html, plots=tuple(written))
