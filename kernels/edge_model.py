"""The compact inference network of an exported ticket: a small graph of plain torch ops.

A graph is a list of nodes in execution order. Value 0 is the model's input and node ``k``
produces value ``k + 1``; a node reads the values listed in ``inputs`` (by default the previous
one). The model's output is the last value. Node kinds and their fields (tensors are named by
the node's ``tensors`` mapping, field -> tensor key):

==================  ===================================================  ======================
op                  fields                                               tensors
==================  ===================================================  ======================
``pattern_conv``    in_channels, out_channels, stride, padding           library, kernel_index,
                                                                         pattern, values, bias?
``conv``            stride, padding                                      weight, bias?
``linear``                                                               weight, bias?
``group_norm``      groups, eps                                          weight, bias
``relu``, ``flatten``, ``global_avg_pool``
``max_pool``        kernel_size
``add``             inputs (two values)
``shortcut``        stride, out_channels (option-A residual: subsample,  channel_index
                    then input channel j goes to channel_index[j])
==================  ===================================================  ======================

This module knows no architecture: :mod:`models.compaction` lowers a dppt model to a graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from kernels.errors import EdgeFormatError
from kernels.pattern_conv import BACKENDS, PatternConv2d

__all__ = ["CONV_BACKENDS", "OPS", "EdgeModel"]

# Which tensors each op needs (required, optional) and which header fields.
OPS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "pattern_conv": (
        ("library", "kernel_index", "pattern", "values"),
        ("bias",),
        ("in_channels", "out_channels", "stride", "padding"),
    ),
    "conv": (("weight",), ("bias",), ("stride", "padding")),
    "linear": (("weight",), ("bias",), ()),
    "group_norm": (("weight", "bias"), (), ("groups", "eps")),
    "relu": ((), (), ()),
    "flatten": ((), (), ()),
    "global_avg_pool": ((), (), ()),
    "max_pool": ((), (), ("kernel_size",)),
    "add": ((), (), ()),
    "shortcut": (("channel_index",), (), ("stride", "out_channels")),
}

# "dense" runs every pattern conv as nn.Conv2d on its (compacted) dense weight: the
# channel-compacted model of the benchmark.
ConvBackend = Literal["auto", "compiled", "torch", "dense"]
CONV_BACKENDS: tuple[str, ...] = (*BACKENDS, "dense")


class _Shortcut(nn.Module):
    """He et al. 2016 option A on compacted channels: subsample, then scatter channels into zeros."""

    def __init__(self, stride: int, out_channels: int, channel_index: torch.Tensor) -> None:
        super().__init__()
        self.stride, self.out_channels = stride, out_channels
        self.register_buffer("channel_index", channel_index.to(torch.int64))
        self.identity = stride == 1 and bool(torch.equal(self.channel_index, torch.arange(out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        out = x.new_zeros(x.shape[0], self.out_channels, x.shape[2], x.shape[3])
        out[:, self.channel_index] = x
        return out


class _GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1)


class _Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def _int(node: Mapping[str, Any], field: str, index: int) -> int:
    value = node.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise EdgeFormatError(f"node {index} ({node.get('op')}) field {field!r} must be an int. Found {value!r}.")
    return value


def _build_op(
    index: int,
    node: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    backend: str,
) -> nn.Module:
    op = node["op"]
    get = tensors.get
    if op == "pattern_conv":
        conv = PatternConv2d(
            in_channels=_int(node, "in_channels", index),
            out_channels=_int(node, "out_channels", index),
            library=tensors["library"],
            kernel_index=tensors["kernel_index"],
            pattern=tensors["pattern"],
            values=tensors["values"],
            bias=get("bias"),
            stride=_int(node, "stride", index),
            padding=_int(node, "padding", index),
            backend="torch" if backend == "dense" else backend,  # type: ignore[arg-type]
        )
        if backend != "dense":
            return conv
        dense = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            3,
            conv.stride,
            conv.padding,
            bias=conv.bias is not None,
        )
        with torch.no_grad():
            dense.weight.copy_(conv.dense_weight())
            if conv.bias is not None:
                dense.bias.copy_(conv.bias)
        return dense
    if op == "conv":
        weight = tensors["weight"]
        if weight.dim() != 4:
            raise EdgeFormatError(f"node {index} (conv) weight must be 4-D. Found shape {tuple(weight.shape)}.")
        out_c, in_c, kh, kw = weight.shape
        module: nn.Module = nn.Conv2d(
            in_c,
            out_c,
            (kh, kw),
            _int(node, "stride", index),
            _int(node, "padding", index),
            bias="bias" in tensors,
        )
    elif op == "linear":
        weight = tensors["weight"]
        if weight.dim() != 2:
            raise EdgeFormatError(f"node {index} (linear) weight must be 2-D. Found shape {tuple(weight.shape)}.")
        module = nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in tensors)
    elif op == "group_norm":
        channels = tensors["weight"].shape[0]
        module = nn.GroupNorm(_int(node, "groups", index), channels, eps=float(node["eps"]))
    elif op == "shortcut":
        return _Shortcut(
            _int(node, "stride", index),
            _int(node, "out_channels", index),
            tensors["channel_index"],
        )
    elif op == "max_pool":
        return nn.MaxPool2d(_int(node, "kernel_size", index))
    else:
        return {
            "relu": nn.ReLU,
            "flatten": lambda: nn.Flatten(1),
            "global_avg_pool": _GlobalAvgPool,
            "add": _Add,
        }[op]()
    with torch.no_grad():
        for field in ("weight", "bias"):
            if field in tensors:
                target = getattr(module, field)
                if tuple(target.shape) != tuple(tensors[field].shape):
                    raise EdgeFormatError(
                        f"node {index} ({op}) {field} shape must be {tuple(target.shape)}. "
                        f"Found {tuple(tensors[field].shape)}."
                    )
                target.copy_(tensors[field])
    return module


class EdgeModel(nn.Module):
    """Runs a graph (see the module docstring); a plain ``nn.Module`` in eval mode, no autograd needed.

    Parameters
    ----------
    nodes : Sequence[Mapping]
        The graph; each node has ``op``, optional ``inputs`` and the fields of its op.
    tensors : Mapping[str, torch.Tensor]
        Every tensor the nodes name.
    input_shape : tuple[int, ...]
        Per-example input shape ``(C, H, W)``.
    backend : {"auto", "compiled", "torch", "dense"}
        How pattern convolutions run (see :class:`kernels.PatternConv2d`; ``"dense"``: as
        ``nn.Conv2d`` on their dense weights).

    Raises
    ------
    EdgeFormatError
        Naming the node and field for an unknown op, a missing tensor or field, a reference to a
        later value, or tensors that do not fit the op (shapes are checked by the op modules).
    """

    def __init__(
        self,
        nodes: Sequence[Mapping[str, Any]],
        tensors: Mapping[str, torch.Tensor],
        *,
        input_shape: tuple[int, ...],
        backend: ConvBackend = "auto",
    ) -> None:
        super().__init__()
        if backend not in CONV_BACKENDS:
            raise EdgeFormatError(f"backend must be one of {list(CONV_BACKENDS)}. Found {backend!r}.")
        if not nodes:
            raise EdgeFormatError("nodes must be a non-empty list. Found none.")
        self.input_shape = tuple(input_shape)
        self.nodes = [dict(node) for node in nodes]
        self.ops = nn.ModuleList()
        self._inputs: list[tuple[int, ...]] = []
        for index, node in enumerate(self.nodes):
            op = node.get("op")
            if op not in OPS:
                raise EdgeFormatError(f"node {index} op must be one of {sorted(OPS)}. Found {op!r}.")
            required, optional, fields = OPS[op]
            keys = node.get("tensors", {})
            if not isinstance(keys, Mapping):
                raise EdgeFormatError(f"node {index} ({op}) tensors must be a mapping. Found {keys!r}.")
            missing = [f for f in required if f not in keys] + [f for f in fields if f not in node]
            unknown = [f for f in keys if f not in required + optional]
            if missing or unknown:
                raise EdgeFormatError(
                    f"node {index} ({op}) must have {list(required + fields)}. Found missing {missing}, unknown {unknown}."
                )
            absent = [key for key in keys.values() if key not in tensors]
            if absent:
                raise EdgeFormatError(f"node {index} ({op}) tensors {absent} must be in the file. Found them missing.")
            inputs = node.get("inputs", [index])
            arity = 2 if op == "add" else 1
            if (
                not isinstance(inputs, list)
                or len(inputs) != arity
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= index for v in inputs)
            ):
                raise EdgeFormatError(
                    f"node {index} ({op}) inputs must be {arity} earlier value(s) in [0, {index}]. Found {inputs!r}."
                )
            try:
                self.ops.append(_build_op(index, node, {f: tensors[k] for f, k in keys.items()}, backend))
            except EdgeFormatError:
                raise
            except (ValueError, RuntimeError, TypeError, KeyError) as err:
                raise EdgeFormatError(f"node {index} ({op}) must hold tensors that fit it. Found: {err}") from err
            self._inputs.append(tuple(inputs))
        self._fused: set[int] = set()
        if backend != "dense":
            self._fuse_epilogues()
        self.eval()
        self._dry_run()

    def _fuse_epilogues(self) -> None:
        """Let each pattern conv run the ReLU and max pool that follow it (only it reads them)."""
        readers = [0] * (len(self.nodes) + 1)
        for inputs in self._inputs:
            for value in inputs:
                readers[value] += 1
        for index, op in enumerate(self.ops):
            if not isinstance(op, PatternConv2d):
                continue
            relu, pool, last = False, 1, index
            for kind in ("relu", "max_pool"):
                follower = last + 1
                if (
                    follower < len(self.nodes)
                    and self.nodes[follower]["op"] == kind
                    and self._inputs[follower] == (last + 1,)
                    and readers[last + 1] == 1
                ):
                    relu = relu or kind == "relu"
                    pool = self.nodes[follower]["kernel_size"] if kind == "max_pool" else pool
                    self._fused.add(follower)
                    last = follower
            op.fuse(relu=relu, pool=pool)

    @torch.no_grad()
    def _dry_run(self) -> None:
        """Run one zero input through the graph, so that nodes that do not fit each other fail here."""
        values = [torch.zeros(1, *self.input_shape)]
        for index, (op, inputs) in enumerate(zip(self.ops, self._inputs)):
            try:
                values.append(values[-1] if index in self._fused else op(*(values[i] for i in inputs)))
            except (RuntimeError, ValueError, IndexError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise EdgeFormatError(
                    f"node {index} ({self.nodes[index]['op']}) must fit its input {tuple(values[inputs[0]].shape)}"
                    f" on a {self.input_shape} input. Found: {first}"
                ) from err

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = [x]
        for index, (op, inputs) in enumerate(zip(self.ops, self._inputs)):
            # A fused ReLU / max pool already ran inside the conv before it: pass its value on.
            values.append(values[-1] if index in self._fused else op(*(values[i] for i in inputs)))
        return values[-1]

    def pattern_convs(self) -> list[PatternConv2d]:
        """The pattern convolutions, in execution order."""
        return [op for op in self.ops if isinstance(op, PatternConv2d)]
