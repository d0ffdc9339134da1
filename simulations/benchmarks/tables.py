"""Small helpers the benchmarks' Markdown tables share."""

from __future__ import annotations

import statistics


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` to four places; one value as itself; ``n/a`` for none."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"
