"""``render_sweep``: one table and one plot over the runs of an ε sweep.

Each run is given by its ``summary.json`` (as a mapping) plus ``"run-dir"``. The swept ε of a
run is, in order: the mapping's ``"sweep-epsilon"`` when given; the client-level budget
(``epsilon.client.budget``) when ``run-dir/config.json`` says ``"unit": "client"``; else the
record-level budget (``epsilon.record.budget``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any, Final

from federation.layout import CONFIG_FILE, SUMMARY_FILE, VARIANTS
from storage import encode_float, write_atomic
from simulations.report.document import Block, Heading, Image, Paragraph, Table
from simulations.report.errors import ReportError
from simulations.report.formatting import format_float, format_int
from simulations.report.markdown_render import to_markdown
from simulations.report.outputs import PLOTS_DIR
from simulations.report.run_inputs import read_config
from simulations.report.sweep_plot import sweep_accuracy_plot
from simulations.report.values import as_number, nested

__all__ = ["SWEEP_JSON", "SWEEP_MARKDOWN", "SWEEP_PLOT", "SweepPaths", "SweepRow", "render_sweep"]

SWEEP_MARKDOWN: Final = "sweep.md"
SWEEP_JSON: Final = "sweep.json"
SWEEP_PLOT: Final = "sweep_accuracy.png"
_REFERENCES: Final = (
    ("dense", "dense"), ("nonprivate_ticket", "non-private ticket"), ("random_ticket", "random ticket"),
)


@dataclass(frozen=True, kw_only=True)
class SweepPaths:
    """Files written by :func:`render_sweep`."""

    markdown: Path = field(metadata={"help": "out_dir/sweep.md"})
    json: Path = field(metadata={"help": "out_dir/sweep.json"})
    plot: Path | None = field(metadata={"help": "out_dir/plots/sweep_accuracy.png; None without a plottable run"})


@dataclass(frozen=True, kw_only=True)
class SweepRow:
    """One run of the sweep."""

    run_dir: str = field(metadata={"help": "the run directory"})
    epsilon: float | None = field(metadata={"help": "the swept ε"})
    accuracy: Mapping[str, float | None] = field(metadata={"help": "variant -> final test accuracy"})
    conv_sparsity: float | None = field(metadata={"help": "sparsity of the conv layers"})
    record_epsilon_max: float | None = field(metadata={"help": "largest client Σε spent (record unit)"})
    rounds_completed: int | None = field(metadata={"help": "search rounds completed"})
    stop_reason: str | None = field(metadata={"help": "why the search stopped early, None if it did not"})

    def to_json(self) -> dict[str, Any]:
        """The row as written to sweep.json (``inf`` as ``"inf"``, missing as ``null``)."""
        return {
            "run-dir": self.run_dir, "epsilon": encode_float(self.epsilon),
            **{variant: encode_float(self.accuracy.get(variant)) for variant in VARIANTS},
            "conv-sparsity": encode_float(self.conv_sparsity), "record-epsilon-max": encode_float(self.record_epsilon_max),
            "rounds-completed": self.rounds_completed, "stop-reason": self.stop_reason,
        }


def _row(index: int, summary: Mapping[str, Any]) -> SweepRow:
    if not isinstance(summary, Mapping):
        raise ReportError(
            f"summaries[{index}] must be a mapping (a {SUMMARY_FILE} plus 'run-dir'). Found {type(summary).__name__}."
        )
    run_dir = summary.get("run-dir")
    if not isinstance(run_dir, (str, os.PathLike)):
        raise ReportError(f"summaries[{index}] must have a 'run-dir' (the run directory). Found {run_dir!r}.")
    where = f"{SUMMARY_FILE} of {run_dir}"

    def number(*keys: str) -> float | None:
        return as_number(nested(summary, *keys), where=f"{where} key {'.'.join(keys)!r}", fix="regenerate it")

    if "sweep-epsilon" in summary:
        epsilon = number("sweep-epsilon")
    else:
        config = read_config(Path(run_dir) / CONFIG_FILE, required=False, fix="regenerate it or pass 'sweep-epsilon'")
        unit = "client" if config is not None and config.unit == "client" else "record"
        epsilon = number("epsilon", unit, "budget")
    rounds = number("search", "rounds-completed")
    stop = nested(summary, "search", "stop-reason")
    return SweepRow(
        run_dir=str(run_dir), epsilon=epsilon, accuracy={v: number("accuracy", v) for v in VARIANTS},
        conv_sparsity=number("sparsity", "conv"), record_epsilon_max=number("epsilon", "record", "max"),
        rounds_completed=None if rounds is None or not math.isfinite(rounds) else int(rounds),
        stop_reason=None if stop is None else str(stop),
    )


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _sort_key(row: SweepRow) -> tuple[bool, float, str]:
    return (row.epsilon is None, row.epsilon if row.epsilon is not None else 0.0, row.run_dir)


def _mean(rows: Sequence[SweepRow], variant: str) -> tuple[float, int] | None:
    values = [float(v) for r in rows if (v := r.accuracy.get(variant)) is not None and math.isfinite(v)]
    return (fmean(values), len(values)) if values else None


def render_sweep(summaries: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str]) -> SweepPaths:
    """Write ``sweep.md``, ``sweep.json`` and ``plots/sweep_accuracy.png`` for an ε sweep.

    Parameters
    ----------
    summaries
        One mapping per run: its summary.json plus ``"run-dir"`` (module docstring for the ε used).
    out_dir
        Folder to write into (created if needed); files are written atomically.

    Returns
    -------
    SweepPaths

    Raises
    ------
    ReportError
        If ``summaries`` is empty or a summary is malformed.
    """

    if isinstance(summaries, Mapping) or not isinstance(summaries, Sequence) or not summaries:
        raise ReportError(f"summaries must be a non-empty sequence of run summaries. Found {summaries!r:.80}.")
    rows = sorted((_row(i, s) for i, s in enumerate(summaries)), key=_sort_key)
    out = Path(out_dir)
    table = Table.of(
        ("epsilon", *(f"{v} accuracy" for v in VARIANTS), "conv sparsity", "record ε max spent", "rounds completed",
         "stop reason", "run"),
        [(format_float(r.epsilon), *(format_float(r.accuracy.get(v)) for v in VARIANTS), format_float(r.conv_sparsity),
          format_float(r.record_epsilon_max), format_int(r.rounds_completed), r.stop_reason or "none", r.run_dir)
         for r in rows],
    )
    blocks: list[Block] = [Heading(level=1, text="dppt ε sweep"), table]
    plotted = [
        r for r in rows
        if r.epsilon is not None and r.epsilon > 0 and _finite(r.accuracy.get("dp_ticket"))
    ]
    left_out = [r.run_dir for r in rows if r not in plotted]
    references = [
        (f"{label} (mean of {mean[1]} runs)", mean[0])
        for variant, label in _REFERENCES
        if (mean := _mean(rows, variant)) is not None
    ]
    plot_path = None
    if plotted:
        epsilons = [float(r.epsilon) for r in plotted]  # type: ignore[arg-type]  (filtered: not None)
        accuracy = [float(r.accuracy["dp_ticket"]) for r in plotted]  # type: ignore[arg-type]
        png = sweep_accuracy_plot(epsilons, accuracy, references=references)
        plot_path = out / PLOTS_DIR / SWEEP_PLOT
        blocks.append(Image(name=SWEEP_PLOT, alt="DP-ticket accuracy against ε (∞: no noise)", png=png))
        write_atomic(plot_path, png)
    elif (out / PLOTS_DIR / SWEEP_PLOT).is_file():  # never leave a plot of an earlier sweep beside this table
        (out / PLOTS_DIR / SWEEP_PLOT).unlink()
    if left_out:
        blocks.append(Paragraph(text=(
            "Not plotted (no DP-ticket accuracy, or ε missing or 0, which a log axis cannot show): "
            + ", ".join(left_out) + "."
        )))
    write_atomic(out / SWEEP_MARKDOWN, to_markdown(blocks).encode("utf-8"))
    payload = {"rows": [r.to_json() for r in rows]}
    write_atomic(out / SWEEP_JSON, (json.dumps(payload, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    return SweepPaths(markdown=out / SWEEP_MARKDOWN, json=out / SWEEP_JSON, plot=plot_path)
