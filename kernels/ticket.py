"""A ticket: per-layer sparsity decisions plus provenance, its masks, statistics and file.

Tickets are constructed by :mod:`kernels.builders` (which imports this module, never the other
way round); the public entry point is the :mod:`kernels` package.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Mapping

import torch

from kernels.connectivity import count_paths
from kernels.errors import KernelsError, TicketMismatchError
from kernels.layer_ticket import LayerTicket
from kernels.metadata import TicketMetadata
from kernels.projection import LayerPolicy
from kernels.report import LayerSparsity, SparsityReport
from kernels.ticket_file import read_ticket_file, write_ticket_file

__all__ = ["LayerTicket", "Ticket", "TicketMetadata"]


def _shape_str(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


@dataclasses.dataclass(frozen=True, eq=False)
class Ticket:
    """Per-layer :class:`LayerTicket` s, in layer order, and a :class:`TicketMetadata`.

    Densities are ``kept / total`` weights and sparsities ``1 - density``, counted over the
    ticket's layers. Two tickets are equal when every layer and the metadata are equal.
    """

    layers: Mapping[str, LayerTicket] = dataclasses.field(metadata={"help": "layer name -> layer ticket"})
    metadata: TicketMetadata = dataclasses.field(metadata={"help": "provenance and privacy cost"})

    def __post_init__(self) -> None:
        if not isinstance(self.layers, Mapping) or not self.layers:
            raise KernelsError(f"layers must be a non-empty mapping. Found {self.layers!r}.")
        for name, layer in self.layers.items():
            if not isinstance(name, str) or not name:
                raise KernelsError(f"layer names must be non-empty str. Found {name!r}.")
            if not isinstance(layer, LayerTicket):
                raise KernelsError(f"layers[{name!r}] must be a LayerTicket. Found {type(layer).__name__}.")
        if not isinstance(self.metadata, TicketMetadata):
            raise KernelsError(f"metadata must be a TicketMetadata. Found {type(self.metadata).__name__}.")
        object.__setattr__(self, "layers", types.MappingProxyType(dict(self.layers)))

    # -- masks and shapes ---------------------------------------------------------------------

    def masks(self) -> dict[str, torch.Tensor]:
        """Bool mask of every layer's weight, in layer order (True = kept)."""
        return {name: layer.mask() for name, layer in self.layers.items()}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Weight shape of every layer, in layer order."""
        return {name: layer.shape for name, layer in self.layers.items()}

    def validate_against(self, shapes: Mapping[str, tuple[int, ...] | torch.Size]) -> None:
        """Check that the ticket fits a model whose prunable weights have ``shapes``.

        Raises
        ------
        TicketMismatchError
            Naming every layer the ticket lacks, every layer the model lacks, and every shape
            that differs (with the ticket's and the model's shape).
        """
        problems: list[str] = []
        missing = [name for name in shapes if name not in self.layers]
        extra = [name for name in self.layers if name not in shapes]
        if missing:
            problems.append(f"layers {missing} of the model must be in the ticket. Found them missing.")
        if extra:
            problems.append(f"layers {extra} of the ticket must be in the model. Found them missing from the model.")
        for name, layer in self.layers.items():
            if name in shapes and tuple(shapes[name]) != layer.shape:
                problems.append(
                    f"shape of layer {name!r} must be {_shape_str(layer.shape)} as in the ticket. "
                    f"Found {_shape_str(tuple(shapes[name]))} in the model."
                )
        if problems:
            raise TicketMismatchError(" ".join(problems))

    # -- statistics ----------------------------------------------------------------------------

    def total(self) -> int:
        """Number of weights in the ticket's layers."""
        return sum(layer.total for layer in self.layers.values())

    def kept(self) -> int:
        """Number of kept weights in the ticket's layers."""
        return sum(layer.kept for layer in self.layers.values())

    def density(self) -> float:
        """Kept over total weights, over all layers of the ticket."""
        return self.kept() / self.total()

    def sparsity(self) -> float:
        """``1 - density()``."""
        return 1.0 - self.density()

    def layer_density(self) -> dict[str, float]:
        """Kept over total weights, per layer."""
        return {name: layer.density for name, layer in self.layers.items()}

    def layer_sparsity(self) -> dict[str, float]:
        """``1 - density``, per layer."""
        return {name: layer.sparsity for name, layer in self.layers.items()}

    def sparsity_report(self, *, dense_parameters: int = 0) -> SparsityReport:
        """Per-layer and total counts; ``dense_parameters`` as in :meth:`compression_ratio`."""
        if isinstance(dense_parameters, bool) or not isinstance(dense_parameters, int) or dense_parameters < 0:
            raise KernelsError(f"dense_parameters must be a non-negative int. Found {dense_parameters!r}.")
        rows = tuple(
            LayerSparsity(
                name=name,
                policy=layer.policy,
                total=layer.total,
                kept=layer.kept,
                total_kernels=layer.shape[0] * layer.shape[1] if layer.policy is LayerPolicy.PATTERN else None,
                kept_kernels=layer.kept_kernels,
            )
            for name, layer in self.layers.items()
        )
        return SparsityReport(layers=rows, dense_parameters=dense_parameters)

    def compression_ratio(self, *, dense_parameters: int = 0) -> float:
        """Compression ratio ``|θ| / |θ_kept|`` (Blalock et al. 2020); ``inf`` if nothing is kept.

        Parameters
        ----------
        dense_parameters : int
            Parameters of the model outside the ticket (biases, normalisation layers), kept by
            the model: they are added to both counts, as the literature counts every parameter.
            With the default 0 the ratio is over the ticket's layers only.
        """
        return self.sparsity_report(dense_parameters=dense_parameters).compression_ratio

    def kernel_paths(self) -> float:
        """Input->output paths through the kept kernels of the pattern layers (:func:`kernels.count_paths`).

        ``0.0``: the ticket is disconnected (no input reaches the output: a model at chance).
        """
        return count_paths({
            name: layer.connectivity for name, layer in self.layers.items()
            if layer.policy is LayerPolicy.PATTERN and layer.connectivity is not None
        })

    def jaccard(self, other: Ticket) -> float:
        """Jaccard index ``|A ∩ B| / |A ∪ B|`` of the kept weights of two tickets.

        Layers dense in both tickets are left out (they never change and would only pull the
        index towards 1); the index is 1.0 when nothing is left or both keep nothing.

        Raises
        ------
        TicketMismatchError
            If the tickets do not have the same layers and shapes.
        """
        if not isinstance(other, Ticket):
            raise KernelsError(f"other must be a Ticket. Found {type(other).__name__}.")
        other.validate_against(self.shapes())
        intersection = union = 0
        for name, layer in self.layers.items():
            theirs = other.layers[name]
            if layer.policy is LayerPolicy.DENSE and theirs.policy is LayerPolicy.DENSE:
                continue
            mine = layer.mask()
            their_mask = theirs.mask().to(mine.device)
            intersection += int((mine & their_mask).sum())
            union += int((mine | their_mask).sum())
        return 1.0 if union == 0 else intersection / union

    # -- file ----------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ticket to ``path`` atomically in the ``dppt-ticket`` v1 format (no pickle)."""
        write_ticket_file(path, self.layers, self.metadata)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, shapes: Mapping[str, tuple[int, ...] | torch.Size] | None = None
    ) -> Ticket:
        """Read a ticket written by :meth:`save`, and check it against a model if ``shapes`` is given.

        Parameters
        ----------
        path : str or os.PathLike
            The ticket file.
        shapes : Mapping[str, tuple[int, ...]], optional
            Weight shape per prunable layer of the model the ticket is for; see
            :meth:`validate_against`.

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        TicketFormatError
            If the file is of another format or version, or damaged.
        TicketMismatchError
            If ``shapes`` is given and the ticket does not fit it.
        """
        layers, metadata = read_ticket_file(path)
        ticket = cls(layers=layers, metadata=metadata)
        if shapes is not None:
            ticket.validate_against(shapes)
        return ticket

    # -- comparison ----------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ticket):
            return NotImplemented
        return (
            list(self.layers) == list(other.layers)
            and all(layer == other.layers[name] for name, layer in self.layers.items())
            and self.metadata == other.metadata
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Ticket(layers={len(self.layers)}, density={self.density():.4f}, "
            f"round={self.metadata.round}, config_hash={self.metadata.config_hash!r})"
        )
