"""A 3x3 convolution that stores and computes only the kept pattern entries of its kernels.

A pattern layer keeps ``K`` of its ``O x I`` kernels, each holding the ``m`` entries of one
library pattern. :class:`PatternConv2d` stores exactly that: the flat kernel index ``o * I + i``
of every kept kernel, its pattern index and its ``m`` values (in the row-major order of the
pattern's positions), plus the library. Its output equals ``F.conv2d`` with the dense weight
that these entries describe.

Two backends compute it:

- ``"compiled"``: a small C++ loop (built once with ``torch.utils.cpp_extension``, see
  :mod:`kernels.pattern_conv_cpp`) that, per output channel, starts from the bias and adds each
  kept entry's weight times the shifted input plane it reads: ``m`` axpys over ``H x W`` per
  kept kernel, nothing for a removed one. This is what runs on the device.
- ``"torch"``: ``F.conv2d`` over only the input channels some kept kernel reads and only the
  output channels that keep a kernel (the rest get their bias). It is the fallback where no
  C++ compiler is available, and the reference the compiled loop is tested against.

``"auto"`` (the default) uses the compiled loop when it builds and the torch path otherwise.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from kernels.errors import KernelsError
from kernels.pattern_conv_cpp import compiled_pattern_conv
from kernels.patterns import KERNEL_ENTRIES, KERNEL_SIZE, validate_library

__all__ = ["BACKENDS", "Backend", "PatternConv2d"]

Backend = Literal["auto", "compiled", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "compiled", "torch")


def _check_index(name: str, tensor: object, length: int | None, upper: int) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 1 or tensor.is_floating_point():
        raise KernelsError(f"{name} must be a 1-D integer torch.Tensor. Found {tensor!r}.")
    if length is not None and tensor.numel() != length:
        raise KernelsError(f"{name} must have {length} entries (one per kept kernel). Found {tensor.numel()}.")
    tensor = tensor.to(torch.int64)
    if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= upper):
        raise KernelsError(f"{name} must lie in [0, {upper}). Found [{int(tensor.min())}, {int(tensor.max())}].")
    return tensor


def _check_float32(name: str, tensor: object, shape: tuple[int, ...], *, may_be_none: bool = False) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32 or tuple(tensor.shape) != shape:
        found = (tensor.dtype, tuple(tensor.shape)) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        allowed = "None or " if may_be_none else ""
        raise KernelsError(f"{name} must be {allowed}float32 of shape {shape}. Found {found}.")


class PatternConv2d(nn.Module):
    """3x3 convolution over the kept pattern entries only (groups 1, dilation 1, square stride/padding).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the layer (after any channel compaction).
    library : torch.Tensor
        Bool ``(P, 3, 3)`` pattern library, every pattern keeping ``m`` entries.
    kernel_index : torch.Tensor
        Integer ``(K,)``, strictly increasing flat indices ``o * in_channels + i`` of the kept kernels.
    pattern : torch.Tensor
        Integer ``(K,)`` in ``[0, P)``: the library pattern of every kept kernel.
    values : torch.Tensor
        Float32 ``(K, m)``: the kept entries, in the row-major order of the pattern's positions.
    bias : torch.Tensor or None
        Float32 ``(out_channels,)``, or ``None`` for no bias.
    stride, padding : int
        As in ``torch.nn.Conv2d`` (the same along both axes).
    backend : {"auto", "compiled", "torch"}
        See the module docstring.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        library: torch.Tensor,
        kernel_index: torch.Tensor,
        pattern: torch.Tensor,
        values: torch.Tensor,
        bias: torch.Tensor | None,
        stride: int = 1,
        padding: int = 1,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("stride", stride),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise KernelsError(f"{name} must be a positive int. Found {value!r}.")
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise KernelsError(f"padding must be a non-negative int. Found {padding!r}.")
        if backend not in BACKENDS:
            raise KernelsError(f"backend must be one of {list(BACKENDS)}. Found {backend!r}.")
        entries = validate_library(library)
        index = _check_index("kernel_index", kernel_index, None, in_channels * out_channels)
        if index.numel() > 1 and bool((index[1:] <= index[:-1]).any()):
            raise KernelsError("kernel_index must be strictly increasing. Found a repeated or unsorted index.")
        kept = index.numel()
        pattern = _check_index("pattern", pattern, kept, library.shape[0])
        _check_float32("values", values, (kept, entries))
        if bias is not None:
            _check_float32("bias", bias, (out_channels,), may_be_none=True)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding, self.backend = stride, padding, backend
        self.relu, self.pool = False, 1  # epilogue, see fuse()
        self.register_buffer("library", library.detach().clone())
        self.register_buffer("kernel_index", index.clone())
        self.register_buffer("pattern", pattern.clone())
        self.register_buffer("values", values.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self._derive()

    @classmethod
    def from_weight(
        cls,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        library: torch.Tensor,
        assignment: torch.Tensor,
        connectivity: torch.Tensor,
        stride: int = 1,
        padding: int = 1,
        backend: Backend = "auto",
    ) -> PatternConv2d:
        """The layer of a dense masked ``weight`` ``(O, I, 3, 3)`` and its pattern decisions ``(O, I)``.

        Raises
        ------
        KernelsError
            If ``weight`` is non-zero outside the kept pattern entries (it is not the masked
            weight of this ticket layer), or a shape does not fit.
        """
        if not isinstance(weight, torch.Tensor) or weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
            raise KernelsError(f"weight must be a (O, I, 3, 3) torch.Tensor. Found {weight!r}.")
        out_channels, in_channels = weight.shape[:2]
        if tuple(assignment.shape) != (out_channels, in_channels) or tuple(connectivity.shape) != (
            out_channels,
            in_channels,
        ):
            raise KernelsError(
                f"assignment and connectivity must be of shape ({out_channels}, {in_channels}). "
                f"Found {tuple(assignment.shape)} and {tuple(connectivity.shape)}."
            )
        entries = validate_library(library)
        weight = weight.detach().to(torch.float32)
        mask = library[assignment.to(torch.int64)] & connectivity.to(torch.bool)[..., None, None]
        outside = weight.masked_fill(mask, 0.0)
        if bool(outside.ne(0).any()):
            raise KernelsError(
                "weight must be zero outside the kept pattern entries of its ticket layer. "
                f"Found {int(outside.ne(0).sum())} non-zero entries outside."
            )
        index = connectivity.reshape(-1).nonzero().reshape(-1)
        pattern = assignment.reshape(-1)[index].to(torch.int64)
        flat = weight.reshape(-1, KERNEL_ENTRIES)[index]
        positions = library.reshape(library.shape[0], -1)[pattern]
        values = flat[positions].reshape(index.numel(), entries)
        return cls(
            in_channels=in_channels,
            out_channels=out_channels,
            library=library,
            kernel_index=index,
            pattern=pattern,
            values=values.contiguous(),
            bias=None if bias is None else bias.detach().to(torch.float32),
            stride=stride,
            padding=padding,
            backend=backend,
        )

    # -- derived layouts ---------------------------------------------------------------------

    def _derive(self) -> None:
        """Entry lists for the compiled loop and the compacted dense weight for the torch path."""
        index, pattern, values = self.kernel_index, self.pattern, self.values
        out_of = index // self.in_channels
        in_of = index % self.in_channels
        positions = self.library.reshape(self.library.shape[0], -1)  # (P, 9) bool
        # Entry e of kernel k: its position in the 3x3 kernel, in row-major pattern order.
        kernel_positions = positions[pattern].nonzero()[:, 1].reshape(index.numel(), values.shape[1])
        counts = torch.bincount(out_of, minlength=self.out_channels)
        entries = values.shape[1]
        start = torch.zeros(self.out_channels + 1, dtype=torch.int64)
        start[1:] = torch.cumsum(counts * entries, 0)
        self._start = start.to(torch.int32)
        self._channel = in_of.repeat_interleave(entries).to(torch.int32)
        self._position = kernel_positions.reshape(-1)
        self._entry_values = values.reshape(-1).contiguous()
        self._bias = self.bias if self.bias is not None else torch.zeros(self.out_channels)
        self._offsets: dict[int, torch.Tensor] = {}
        # Torch path: only the output rows that keep a kernel and the input channels they read.
        self._rows = torch.unique(out_of)
        self._cols = torch.unique(in_of)
        dense = torch.zeros(self.out_channels, self.in_channels, KERNEL_ENTRIES)
        dense[out_of[:, None], in_of[:, None], kernel_positions] = values
        self._compact = (
            dense[self._rows][:, self._cols]
            .reshape(self._rows.numel(), self._cols.numel(), KERNEL_SIZE, KERNEL_SIZE)
            .contiguous()
        )
        self._full = self._rows.numel() == self.out_channels and self._cols.numel() == self.in_channels

    def fuse(self, *, relu: bool, pool: int = 1) -> None:
        """Apply ``max_pool2d(pool)`` (stride ``pool``, floor) and then ReLU to the output, in the same call.

        The compiled loop does it in its epilogue, saving the graph two ops per layer; the
        torch path runs the same torch functions after its convolution.
        """
        if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
            raise KernelsError(f"pool must be a positive int. Found {pool!r}.")
        self.relu, self.pool = bool(relu), pool

    def dense_weight(self) -> torch.Tensor:
        """The dense ``(O, I, 3, 3)`` weight these entries describe (zeros elsewhere)."""
        weight = torch.zeros(self.out_channels, self.in_channels, KERNEL_SIZE, KERNEL_SIZE)
        weight[self._rows[:, None], self._cols] = self._compact
        return weight

    def executed_macs(self, in_h: int, in_w: int) -> int:
        """Multiply-adds per example of the compiled loop on an ``in_h x in_w`` input: kept entries x output pixels."""
        out_h, out_w = ((size + 2 * self.padding - KERNEL_SIZE) // self.stride + 1 for size in (in_h, in_w))
        return int(self._entry_values.numel()) * out_h * out_w

    # -- forward -----------------------------------------------------------------------------

    def _forward_torch(self, x: torch.Tensor) -> torch.Tensor:
        if self._full:
            return F.conv2d(x, self._compact, self.bias, self.stride, self.padding)
        out_h, out_w = ((size + 2 * self.padding - KERNEL_SIZE) // self.stride + 1 for size in x.shape[2:])
        out = self._bias.to(x.dtype).reshape(1, -1, 1, 1).expand(x.shape[0], -1, out_h, out_w).clone()
        if self._rows.numel():
            inner = F.conv2d(
                x.index_select(1, self._cols),
                self._compact,
                None,
                self.stride,
                self.padding,
            )
            out.index_add_(1, self._rows, inner)
        return out

    def _forward_compiled(self, x: torch.Tensor, kernel: object) -> torch.Tensor:
        width = x.shape[3] + 2 * self.padding
        offsets = self._offsets.get(width)
        if offsets is None:
            offsets = ((self._position // KERNEL_SIZE) * width + self._position % KERNEL_SIZE).to(torch.int32)
            self._offsets[width] = offsets
        return kernel(  # type: ignore[operator]
            x,
            self._start,
            self._channel,
            offsets,
            self._entry_values,
            self._bias,
            self.padding,
            self.stride,
            self.relu,
            self.pool,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise KernelsError(f"input must be (B, {self.in_channels}, H, W). Found {tuple(x.shape)}.")
        if self.backend != "torch" and x.dtype == torch.float32 and x.device.type == "cpu":
            kernel = compiled_pattern_conv(required=self.backend == "compiled")
            if kernel is not None:
                return self._forward_compiled(x, kernel)
        out = self._forward_torch(x)
        if self.pool > 1:
            out = F.max_pool2d(out, self.pool)
        return F.relu(out) if self.relu else out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kept_kernels={self.kernel_index.numel()}, "
            f"stride={self.stride}, padding={self.padding}, backend={self.backend!r}, relu={self.relu}, pool={self.pool}"
        )
