"""The run report's plots, as PNG bytes (matplotlib's Agg canvas, no pyplot, no global state).

Infinite values (ε = inf: no noise) cannot be drawn on a linear axis: they are left out of the
curves and named in the plot instead, so a plot never hides that a run is not private.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from privacy import RoundTotal

# matplotlib is imported when a plot is drawn: importing the package (e.g. for privacy_totals,
# on a server) must not pay for it.
if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PNG_DPI",
    "accuracy_plot",
    "convergence_plot",
    "epsilon_per_client_plot",
    "epsilon_per_phase_plot",
    "epsilon_per_round_plot",
    "new_figure",
    "sparsity_plot",
    "to_png",
]

PNG_DPI: Final = 100
_MAX_TICK_LABELS: Final = 40


def new_figure(width: float = 7.0, height: float = 3.8) -> Figure:
    """A figure bound to the Agg (raster, file-only) canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def to_png(figure: Figure) -> bytes:
    """PNG bytes of ``figure`` (no timestamp metadata, so equal inputs give equal bytes)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _budget_line(axes: object, budget: float | None, label: str, color: str) -> None:
    if budget is not None and math.isfinite(budget):
        axes.axhline(budget, color=color, linestyle="--", linewidth=1, label=label)  # type: ignore[attr-defined]


def epsilon_per_round_plot(
    rounds: Sequence[RoundTotal], *, record_budget: float | None, client_budget: float | None,
    show_record: bool, show_client: bool,
) -> bytes:
    """Cumulative ε after each ledger round, per unit, with the finite budgets as dashed lines."""
    figure = new_figure()
    axes = figure.add_subplot()
    steps = list(range(1, len(rounds) + 1))
    notes: list[str] = []
    series = [
        ("record unit: max over clients", [r.record_epsilon_max for r in rounds], record_budget, "C0", show_record),
        ("client unit: server total", [r.client_epsilon for r in rounds], client_budget, "C1", show_client),
    ]
    for label, values, budget, color, show in series:
        if not show:
            continue
        points = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", markersize=3, color=color, label=label)
        if len(points) < len(values):
            notes.append(f"{label.split(':')[0]}: ε = inf (not private) from step {len(points) + 1}")
        _budget_line(axes, budget, f"{label.split(':')[0]} budget", color)
    single_phase = len({r.phase for r in rounds}) <= 1
    labels = [str(r.round) if single_phase else f"{r.phase} {r.round}" for r in rounds]
    stride = max(1, math.ceil(len(steps) / _MAX_TICK_LABELS))
    axes.set_xticks(steps[::stride], labels[::stride], rotation=0 if single_phase else 45)
    axes.set_xlabel("round" if single_phase else "phase and round (ledger order)")
    axes.set_ylim(bottom=0.0)
    axes.set_ylabel("cumulative ε (basic composition)")
    axes.set_title("Privacy budget spent per round")
    for note in notes:  # in the legend, where it cannot overlap a curve or a budget line
        axes.plot([], [], " ", label=note)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="best")
    axes.grid(alpha=0.3)
    return to_png(figure)


def epsilon_per_client_plot(epsilons: Sequence[float], *, budget: float | None) -> bytes:
    """Bar chart of the clients' record-level Σε, largest first, with the budget as a dashed line.

    The bars carry ranks, not client ids: the report names no client (DESIGN.md 5.4b).
    """
    values = sorted(epsilons, reverse=True)
    figure = new_figure(width=max(7.0, min(16.0, 0.25 * len(values))))
    axes = figure.add_subplot()
    positions = list(range(len(values)))
    axes.bar(positions, [v if math.isfinite(v) else 0.0 for v in values], color="C0")
    stride = max(1, math.ceil(len(values) / _MAX_TICK_LABELS))
    axes.set_xticks(positions[::stride], [str(p + 1) for p in positions[::stride]], fontsize=7)
    _budget_line(axes, budget, "record-level budget", "C3")
    infinite = sum(1 for v in values if not math.isfinite(v))
    if infinite:
        axes.plot([], [], " ", label=f"{infinite} client(s) with ε = inf (not private): bars not drawn")
    axes.set_xlabel("clients, ranked by Σε")
    axes.set_ylabel("Σε (record unit)")
    axes.set_title("Record-level ε spent per client")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    axes.grid(alpha=0.3, axis="y")
    return to_png(figure)


def epsilon_per_phase_plot(phases: Sequence[tuple[str, float]], *, whole: float) -> bytes:
    """Bars of each phase's record-level ε per client (one example replaced) and of the whole run, stacked.

    ``phases``: (label, ε) in release order; ``whole``: their basic composition. An infinite phase
    (a release without noise) is not drawn; the legend names it. The whole-run bar is drawn only
    when ``whole`` is finite (a seeded run's phases can be finite while no whole-run figure holds).
    """
    figure = new_figure(width=7.0, height=3.0)
    axes = figure.add_subplot()
    names = [label for label, _ in phases] + ["whole run"]
    bottom = 0.0
    for i, (label, epsilon) in enumerate(phases):
        if math.isfinite(epsilon):
            if math.isfinite(whole):
                axes.barh(len(phases), epsilon, left=bottom, color=f"C{i}")  # the whole run: the phases stacked
            axes.barh(i, epsilon, color=f"C{i}")
            bottom += epsilon
        else:
            axes.plot([], [], " ", label=f"{label}: ε = inf (released without noise): bar not drawn")
    if not math.isfinite(whole):
        axes.plot([], [], " ", label="whole run: ε = inf (not private)")
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlim(left=0.0)
    axes.set_xlabel("ε per client, record level (one example replaced)")
    axes.set_title("Privacy spent per phase, and the whole run (basic composition)")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="lower right")
    axes.grid(alpha=0.3, axis="x")
    return to_png(figure)


def accuracy_plot(series: Mapping[str, Sequence[tuple[int, float]]]) -> bytes:
    """Test accuracy against training round, one line per variant."""
    from matplotlib.ticker import MaxNLocator

    figure = new_figure()
    axes = figure.add_subplot()
    for variant, points in series.items():
        rounds, accuracy = zip(*points, strict=True)
        axes.plot(rounds, accuracy, marker="o", markersize=3, label=variant)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("training round")
    axes.set_ylabel("test accuracy")
    axes.set_title("Server-side test accuracy per variant")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return to_png(figure)


def convergence_plot(rounds: Sequence[int], jaccard: Sequence[float | None], density: Sequence[float | None]) -> bytes:
    """Jaccard index between consecutive tickets and density against search round."""
    from matplotlib.ticker import MaxNLocator

    figure = new_figure(height=5.0)
    top, bottom = figure.subplots(2, 1, sharex=True)
    for axes, values, label in ((top, jaccard, "Jaccard with previous ticket"), (bottom, density, "density")):
        points = [(r, v) for r, v in zip(rounds, values, strict=True) if v is not None and math.isfinite(v)]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", markersize=3)
        axes.set_ylabel(label)
        axes.set_ylim(-0.02, 1.02)
        axes.grid(alpha=0.3)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_title("Ticket convergence")
    bottom.set_xlabel("search round")
    return to_png(figure)


def sparsity_plot(names: Sequence[str], sparsity: Sequence[float]) -> bytes:
    """Horizontal bars: sparsity (removed / total weights) of every ticket layer."""
    figure = new_figure(height=max(2.5, 0.3 * len(names) + 1.2))
    axes = figure.add_subplot()
    positions = list(range(len(names)))
    axes.barh(positions, sparsity, color="C2")
    axes.set_yticks(positions, names, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("sparsity (removed / total weights)")
    axes.set_title("Sparsity per layer")
    axes.grid(alpha=0.3, axis="x")
    return to_png(figure)
