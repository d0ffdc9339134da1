"""Sparsity reports of a ticket, per layer and in total."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from kernels.projection import LayerPolicy

__all__ = ["LayerSparsity", "SparsityReport", "compression_ratio"]


def compression_ratio(total: int, kept: int) -> float:
    """``total / kept``, the compression ratio ``|θ| / |θ_kept|``; ``inf`` when nothing is kept.

    As defined by Blalock et al. 2020 ("What is the state of neural network pruning?", MLSys):
    original size over compressed size, counted in parameters.
    """
    return math.inf if kept == 0 else total / kept


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerSparsity:
    """Counts of one layer. ``density = kept / total`` and ``sparsity = 1 - density``."""

    name: str = dataclasses.field(metadata={"help": "layer name"})
    policy: LayerPolicy = dataclasses.field(metadata={"help": "the layer's policy"})
    total: int = dataclasses.field(metadata={"help": "weights in the layer"})
    kept: int = dataclasses.field(metadata={"help": "weights kept by the ticket"})
    total_kernels: int | None = dataclasses.field(default=None, metadata={"help": "O * I for pattern layers"})
    kept_kernels: int | None = dataclasses.field(
        default=None, metadata={"help": "connected kernels for pattern layers"}
    )

    @property
    def density(self) -> float:
        """Kept over total weights."""
        return self.kept / self.total

    @property
    def sparsity(self) -> float:
        """Removed over total weights."""
        return 1.0 - self.density

    @property
    def compression_ratio(self) -> float:
        """``total / kept``."""
        return compression_ratio(self.total, self.kept)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON row (``compression_ratio`` is ``None`` when nothing is kept)."""
        ratio = self.compression_ratio
        return {
            "name": self.name,
            "policy": self.policy.value,
            "total": self.total,
            "kept": self.kept,
            "density": self.density,
            "sparsity": self.sparsity,
            "compression_ratio": None if math.isinf(ratio) else ratio,
            "total_kernels": self.total_kernels,
            "kept_kernels": self.kept_kernels,
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class SparsityReport:
    """Per-layer counts and their total over the ticket's layers.

    ``dense_parameters`` counts parameters outside the ticket (biases, norm layers) that the
    model keeps; they enter the total compression ratio, as Blalock et al. 2020 count every
    parameter, but not the layer densities.
    """

    layers: tuple[LayerSparsity, ...] = dataclasses.field(metadata={"help": "one row per ticket layer"})
    dense_parameters: int = dataclasses.field(default=0, metadata={"help": "kept parameters outside the ticket"})

    @property
    def total(self) -> int:
        """Weights in the ticket's layers."""
        return sum(layer.total for layer in self.layers)

    @property
    def kept(self) -> int:
        """Kept weights in the ticket's layers."""
        return sum(layer.kept for layer in self.layers)

    @property
    def density(self) -> float:
        """Kept over total weights of the ticket's layers."""
        return self.kept / self.total

    @property
    def sparsity(self) -> float:
        """``1 - density``."""
        return 1.0 - self.density

    @property
    def compression_ratio(self) -> float:
        """``(total + dense_parameters) / (kept + dense_parameters)``."""
        return compression_ratio(self.total + self.dense_parameters, self.kept + self.dense_parameters)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form: the layer rows and the totals."""
        ratio = self.compression_ratio
        return {
            "layers": [layer.to_json() for layer in self.layers],
            "total": self.total,
            "kept": self.kept,
            "dense_parameters": self.dense_parameters,
            "density": self.density,
            "sparsity": self.sparsity,
            "compression_ratio": None if math.isinf(ratio) else ratio,
        }

    def format_table(self) -> str:
        """Fixed-width text table, one line per layer and a total line."""
        width = max([len("total"), *(len(layer.name) for layer in self.layers)])
        lines = [f"{'layer':<{width}}  {'policy':<12} {'kept':>10} {'total':>10} {'density':>8} {'ratio':>8}"]
        for row in (*self.layers, None):
            name, policy = ("total", "") if row is None else (row.name, row.policy.value)
            source = self if row is None else row
            lines.append(
                f"{name:<{width}}  {policy:<12} {source.kept:>10d} {source.total:>10d} "
                f"{source.density:>8.4f} {source.compression_ratio:>8.2f}"
            )
        return "\n".join(lines)
