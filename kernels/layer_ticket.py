"""The ticket of one layer: its policy and what defines its mask."""

from __future__ import annotations

import dataclasses

import torch

from kernels._checks import check_shape
from kernels.errors import KernelsError
from kernels.patterns import KERNEL_SIZE, validate_library
from kernels.projection import LayerPolicy, pattern_mask

__all__ = ["LayerTicket"]


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class LayerTicket:
    """Sparsity decision for one weight tensor, checked at construction.

    ``pattern`` layers hold ``library`` (bool ``(P, 3, 3)``), ``assignment`` (int64 ``(O, I)`` in
    ``[0, P)``) and ``connectivity`` (bool ``(O, I)``), and their weight shape is
    ``(O, I, 3, 3)``; ``unstructured`` layers hold ``unstructured_mask`` (bool, of the weight
    shape); ``dense`` layers hold nothing. Fields a policy does not use must be ``None``.

    NOTE: the field holding an unstructured mask is ``unstructured_mask`` rather than ``mask``,
    because :meth:`mask` (the materialised weight mask of any policy) needs that name.

    Tensors are stored detached as given (integer assignments are converted to int64); the
    dataclass is frozen but tensors are not, so treat them as read-only.
    """

    policy: LayerPolicy = dataclasses.field(metadata={"help": "pattern, unstructured or dense"})
    shape: tuple[int, ...] = dataclasses.field(metadata={"help": "shape of the layer's weight"})
    library: torch.Tensor | None = dataclasses.field(default=None, metadata={"help": "bool (P, 3, 3)"})
    assignment: torch.Tensor | None = dataclasses.field(default=None, metadata={"help": "int64 (O, I)"})
    connectivity: torch.Tensor | None = dataclasses.field(default=None, metadata={"help": "bool (O, I)"})
    unstructured_mask: torch.Tensor | None = dataclasses.field(default=None, metadata={"help": "bool, weight shape"})

    def __post_init__(self) -> None:
        try:
            policy = LayerPolicy(self.policy)
        except ValueError as err:
            valid = [p.value for p in LayerPolicy]
            raise KernelsError(f"policy must be one of {valid}. Found {self.policy!r}.") from err
        object.__setattr__(self, "policy", policy)
        shape = check_shape("shape", self.shape)
        object.__setattr__(self, "shape", shape)
        used = {
            LayerPolicy.PATTERN: {"library", "assignment", "connectivity"},
            LayerPolicy.UNSTRUCTURED: {"unstructured_mask"},
            LayerPolicy.DENSE: set(),
        }[policy]
        for name in ("library", "assignment", "connectivity", "unstructured_mask"):
            value = getattr(self, name)
            if name in used and not isinstance(value, torch.Tensor):
                raise KernelsError(
                    f"{name} must be a torch.Tensor for a {policy.value} layer. Found {type(value).__name__}."
                )
            if name not in used and value is not None:
                raise KernelsError(f"{name} must be None for a {policy.value} layer. Found a {type(value).__name__}.")
            if value is not None:
                object.__setattr__(self, name, value.detach())
        if policy is LayerPolicy.PATTERN:
            self._check_pattern()
        elif policy is LayerPolicy.UNSTRUCTURED:
            self._check_tensor("unstructured_mask", torch.bool, shape)

    def _check_tensor(self, name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
        value = getattr(self, name)
        if value.dtype != dtype:
            raise KernelsError(f"{name} dtype must be {dtype}. Found {value.dtype}.")
        if tuple(value.shape) != shape:
            raise KernelsError(f"{name} shape must be {shape}. Found {tuple(value.shape)}.")

    def _check_pattern(self) -> None:
        if len(self.shape) != 4 or self.shape[2:] != (KERNEL_SIZE, KERNEL_SIZE):
            raise KernelsError(f"shape of a pattern layer must be (O, I, 3, 3). Found {self.shape}.")
        validate_library(self.library)
        assert self.assignment is not None and self.library is not None  # narrowed by __post_init__
        if self.assignment.is_floating_point() or self.assignment.is_complex() or self.assignment.dtype == torch.bool:
            raise KernelsError(f"assignment dtype must be an integer type. Found {self.assignment.dtype}.")
        object.__setattr__(self, "assignment", self.assignment.to(torch.int64))
        kernels = self.shape[:2]
        self._check_tensor("assignment", torch.int64, kernels)
        self._check_tensor("connectivity", torch.bool, kernels)
        num_patterns = self.library.shape[0]
        low, high = (int(v) for v in torch.aminmax(self.assignment))  # shape (O, I) is never empty
        if low < 0 or high >= num_patterns:
            raise KernelsError(f"assignment values must be in [0, {num_patterns}). Found range [{low}, {high}].")

    @property
    def total(self) -> int:
        """Number of weights of the layer."""
        return int(torch.Size(self.shape).numel())

    @property
    def entries(self) -> int | None:
        """Kept entries per pattern for a pattern layer, else ``None``."""
        if self.library is None:
            return None
        return int(self.library[0].sum())

    @property
    def kept(self) -> int:
        """Number of kept weights, computed without materialising the mask."""
        if self.policy is LayerPolicy.DENSE:
            return self.total
        if self.policy is LayerPolicy.UNSTRUCTURED:
            assert self.unstructured_mask is not None
            return int(self.unstructured_mask.sum())
        assert self.connectivity is not None and self.entries is not None
        # Every library pattern keeps the same number of entries (validate_library).
        return int(self.connectivity.sum()) * self.entries

    @property
    def kept_kernels(self) -> int | None:
        """Number of connected kernels for a pattern layer, else ``None``."""
        return None if self.connectivity is None else int(self.connectivity.sum())

    @property
    def density(self) -> float:
        """Kept weights over all weights (``1 - sparsity``)."""
        return self.kept / self.total

    @property
    def sparsity(self) -> float:
        """Removed weights over all weights (``1 - density``)."""
        return 1.0 - self.density

    def mask(self) -> torch.Tensor:
        """Bool mask of the weight's shape: True where the weight is kept.

        ``pattern``: ``connectivity[..., None, None] & library[assignment]``; ``unstructured``: the
        stored mask (a copy); ``dense``: all True.
        """
        if self.policy is LayerPolicy.DENSE:
            return torch.ones(self.shape, dtype=torch.bool)
        if self.policy is LayerPolicy.UNSTRUCTURED:
            assert self.unstructured_mask is not None
            return self.unstructured_mask.clone()
        assert self.library is not None and self.assignment is not None and self.connectivity is not None
        return pattern_mask(self.library, self.assignment, self.connectivity)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerTicket):
            return NotImplemented
        if self.policy is not other.policy or self.shape != other.shape:
            return False
        for name in ("library", "assignment", "connectivity", "unstructured_mask"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if (mine is None) != (theirs is None):
                return False
            if mine is not None and not (mine.dtype == theirs.dtype and torch.equal(mine.cpu(), theirs.cpu())):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # holds tensors: equal by value, not hashable

    def __repr__(self) -> str:
        extra = f", patterns={self.library.shape[0]}x{self.entries}" if self.library is not None else ""
        return f"LayerTicket(policy={self.policy.value!r}, shape={self.shape}, density={self.density:.4f}{extra})"
