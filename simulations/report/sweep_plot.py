"""Plot of a sweep: accuracy of the DP ticket against ε (log axis, ε = inf at the right edge)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import fmean

from simulations.report.formatting import format_float
from simulations.report.plots import new_figure, to_png

__all__ = ["INF_LABEL", "infinity_position", "sweep_accuracy_plot"]

INF_LABEL = "∞"


def infinity_position(finite: Sequence[float]) -> float:
    """Where ε = inf is drawn: half a decade (or a fifth of the span) right of the largest finite ε."""
    if not finite:
        return 1.0
    low, high = min(finite), max(finite)
    span = math.log10(high) - math.log10(low)
    return high * 10.0 ** max(0.5, 0.2 * span)


def sweep_accuracy_plot(
    epsilons: Sequence[float], accuracy: Sequence[float], *, references: Sequence[tuple[str, float]]
) -> bytes:
    """DP-ticket accuracy of every run against its ε (> 0, may be inf), with horizontal references.

    Parameters
    ----------
    epsilons, accuracy
        One pair per run (several runs may share an ε: all are drawn, their mean is joined).
    references
        ``(label, value)`` horizontal lines, e.g. the mean dense accuracy over runs.
    """
    from matplotlib.ticker import NullLocator

    finite = sorted({e for e in epsilons if math.isfinite(e)})
    x_inf = infinity_position(finite)
    xs = [e if math.isfinite(e) else x_inf for e in epsilons]
    figure = new_figure()
    axes = figure.add_subplot()
    axes.set_xscale("log")
    if xs:
        axes.scatter(xs, accuracy, color="C0", s=18, alpha=0.6, zorder=3)
        by_x: dict[float, list[float]] = {}
        for x, a in zip(xs, accuracy, strict=True):
            by_x.setdefault(x, []).append(a)
        keys = sorted(by_x)
        means = [fmean(by_x[k]) for k in keys]
        has_inf = len(keys) > len(finite)
        solid = len(keys) - 1 if has_inf else len(keys)
        axes.plot(keys[:solid], means[:solid], color="C0", marker="o", label="DP ticket (mean per ε)", zorder=4)
        if has_inf:  # ε = inf is not on the axis's continuum: a dotted link, not a solid line
            axes.plot(keys[-2:] if solid else keys[-1:], means[-2:] if solid else means[-1:], color="C0",
                      linestyle=":", marker="o", zorder=4, **({} if solid else {"label": "DP ticket (mean per ε)"}))
    for index, (label, value) in enumerate(references):
        axes.axhline(value, color=f"C{index + 1}", linestyle="--", linewidth=1, label=label)
    ticks = [*finite, *([x_inf] if any(not math.isfinite(e) for e in epsilons) else [])]
    labels = [format_float(e, digits=3) for e in finite] + ([INF_LABEL] if len(ticks) > len(finite) else [])
    if ticks:
        axes.set_xticks(ticks, labels)
        axes.xaxis.set_minor_locator(NullLocator())
        axes.set_xlim(min(ticks) / 10**0.25, max(ticks) * 10**0.25)
    axes.set_xlabel("ε of the run (swept budget; log scale)")
    axes.set_ylabel("test accuracy")
    axes.set_title("Accuracy of the DP ticket against ε")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="best")
    axes.grid(alpha=0.3)
    return to_png(figure)
