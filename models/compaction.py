"""Lower a model and its ticket to the compact edge graph of :mod:`kernels.edge_model`.

What is removed, and why it is exact
------------------------------------
Between a producer layer ``p`` and the next layer ``c`` of a chain with only ReLU, max pooling
and flattening in between (no normalisation: GroupNorm mixes the channels of a group, so a
channel cannot leave it), channel ``j`` of ``p``'s output is removed from both when

- ``c`` reads nothing of it (its weights on ``j`` are all zero), or
- ``p`` keeps no weight in row ``j``, so the channel is the constant ``relu(bias[j])`` whatever
  the input, and either that constant is 0 or ``c`` is linear: a constant input of a linear
  layer is folded into its bias (``b += W[:, cols(j)].sum(1) * const``, exact up to float
  rounding). A constant channel into a padded convolution is kept: the zero padding makes its
  contribution differ at the border, so it is not a bias.

This is repeated until nothing changes (removing a channel can empty a row of the next
layer's input). In ResNet-20 the channels of a stage are summed along the residual path; they
are kept, and only the inner channel of a block (``conv1`` -> ``conv2``) is compacted, when the
block has no normalisation between them. BatchNorm is refused: fold it first.

Pattern layers become ``pattern_conv`` nodes holding only their kept entries; other layers keep
their (compacted) dense weight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kernels import LayerPolicy, PatternConv2d, Ticket
from models.conv4 import Conv4
from models.errors import ModelConfigError
from models.layers import prunable_layers
from models.lenet5 import LeNet5
from models.resnet20 import ResNet20

__all__ = ["EdgeGraph", "lower_to_edge_graph"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EdgeGraph:
    """A compact graph: what :func:`kernels.write_export_file` and :class:`kernels.EdgeModel` take."""

    nodes: list[dict[str, Any]] = dataclasses.field(metadata={"help": "nodes in execution order"})
    tensors: dict[str, torch.Tensor] = dataclasses.field(metadata={"help": "tensor key -> tensor"})
    input_shape: tuple[int, ...] = dataclasses.field(metadata={"help": "per-example input (C, H, W)"})
    channels: dict[str, tuple[int, int]] = dataclasses.field(
        metadata={"help": "layer -> (kept, total) output channels"}
    )


@dataclasses.dataclass(kw_only=True, eq=False)
class _Layer:
    """A prunable layer being compacted: masked weight, bias and the ticket's decisions."""

    name: str
    module: nn.Conv2d | nn.Linear
    weight: torch.Tensor
    bias: torch.Tensor | None
    policy: LayerPolicy
    assignment: torch.Tensor | None = None
    connectivity: torch.Tensor | None = None
    keep_out: torch.Tensor | None = None  # bool over output channels; None = all kept
    keep_in: torch.Tensor | None = None

    @property
    def linear(self) -> bool:
        return isinstance(self.module, nn.Linear)


def _layers(model: nn.Module, ticket: Ticket) -> dict[str, _Layer]:
    modules = prunable_layers(model)
    ticket.validate_against({name: tuple(m.weight.shape) for name, m in modules.items()})
    out: dict[str, _Layer] = {}
    for name, module in modules.items():
        layer = ticket.layers.get(name)
        weight = module.weight.detach().to(torch.float32).clone()
        if layer is not None:
            weight = weight * layer.mask().to(weight.device)
        bias = None if module.bias is None else module.bias.detach().to(torch.float32).clone()
        policy = layer.policy if layer is not None else LayerPolicy.DENSE
        out[name] = _Layer(
            name=name,
            module=module,
            weight=weight.cpu(),
            bias=None if bias is None else bias.cpu(),
            policy=policy,
        )
        if policy is LayerPolicy.PATTERN:
            out[name].assignment = layer.assignment.cpu()
            out[name].connectivity = layer.connectivity.cpu()
    return out


def _reads(consumer: _Layer, channels: int) -> torch.Tensor:
    """Bool per input channel of ``consumer``: does any of its alive rows read it?"""
    weight = consumer.weight
    if consumer.keep_out is not None:
        weight = weight[consumer.keep_out]
    per = weight.reshape(weight.shape[0], channels, -1)  # conv (O, I, 9) or linear after flatten (O, C, HW)
    return per.ne(0).any(dim=2).any(dim=0)


def _compact_link(producer: _Layer, consumer: _Layer, *, relu: bool) -> bool:
    """Remove what is exact between two layers (see the module docstring); True if anything changed."""
    channels = producer.weight.shape[0]
    alive = producer.keep_out if producer.keep_out is not None else torch.ones(channels, dtype=torch.bool)
    weight = producer.weight.reshape(channels, -1)
    if producer.keep_in is not None:  # a linear layer after flatten reads several columns per channel
        weight = weight.reshape(channels, producer.keep_in.numel(), -1)[:, producer.keep_in]
    empty = weight.reshape(channels, -1).ne(0).any(dim=1).logical_not()
    constant = producer.bias if producer.bias is not None else torch.zeros(channels)
    if relu:
        constant = constant.clamp(min=0)
    reads = _reads(consumer, channels)
    removable = alive & (~reads | (empty & ((constant == 0) | consumer.linear)))
    if bool(removable.all()):  # keep one channel: a layer of width 0 is no layer
        removable[int(alive.nonzero()[0])] = False
    if not bool(removable.any()):
        return False
    fold = removable & reads & empty & (constant != 0)
    if bool(fold.any()):
        assert consumer.linear and consumer.bias is not None  # a conv never gets here (constant kept)
        per = consumer.weight.reshape(consumer.weight.shape[0], channels, -1)
        consumer.bias = consumer.bias + (per[:, fold].sum(dim=2) * constant[fold]).sum(dim=1)
    producer.keep_out = alive & ~removable
    consumer.keep_in = producer.keep_out
    return True


def _compact_chain(chain: list[tuple[_Layer, _Layer, bool]]) -> None:
    """Run :func:`_compact_link` over ``(producer, consumer, relu)`` links until nothing changes."""
    changed = True
    while changed:
        changed = False
        for producer, consumer, relu in reversed(chain):
            changed |= _compact_link(producer, consumer, relu=relu)


class _Builder:
    """Appends nodes and tensors; a value is the index of the node that produced it, plus one."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.tensors: dict[str, torch.Tensor] = {}
        self.libraries: list[torch.Tensor] = []

    def add(
        self,
        op: str,
        *,
        inputs: list[int] | None = None,
        tensors: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> int:
        node: dict[str, Any] = {"op": op, **fields}
        if inputs is not None:
            node["inputs"] = inputs
        if tensors:
            node["tensors"] = dict(tensors)
        self.nodes.append(node)
        return len(self.nodes)

    def library_key(self, library: torch.Tensor) -> str:
        for index, known in enumerate(self.libraries):
            if torch.equal(known, library):
                return f"library.{index}"
        self.libraries.append(library)
        key = f"library.{len(self.libraries) - 1}"
        self.tensors[key] = library
        return key

    def layer(self, layer: _Layer, ticket: Ticket, inputs: list[int] | None = None) -> int:
        """A conv or linear node of a compacted layer."""
        rows = layer.keep_out if layer.keep_out is not None else slice(None)
        weight, bias = (
            layer.weight[rows],
            None if layer.bias is None else layer.bias[rows],
        )
        if layer.keep_in is not None:
            if layer.linear:
                per = weight.reshape(weight.shape[0], layer.keep_in.numel(), -1)
                weight = per[:, layer.keep_in].reshape(weight.shape[0], -1)
            else:
                weight = weight[:, layer.keep_in]
        keys: dict[str, str] = {}
        if bias is not None:
            keys["bias"] = f"{layer.name}.bias"
            self.tensors[keys["bias"]] = bias.contiguous()
        if layer.linear:
            keys["weight"] = f"{layer.name}.weight"
            self.tensors[keys["weight"]] = weight.contiguous()
            return self.add("linear", inputs=inputs, tensors=keys)
        module = layer.module
        stride, padding = int(module.stride[0]), int(module.padding[0])
        if layer.policy is not LayerPolicy.PATTERN:
            keys["weight"] = f"{layer.name}.weight"
            self.tensors[keys["weight"]] = weight.contiguous()
            return self.add("conv", inputs=inputs, tensors=keys, stride=stride, padding=padding)
        assignment, connectivity = layer.assignment[rows], layer.connectivity[rows]
        if layer.keep_in is not None:
            assignment, connectivity = (
                assignment[:, layer.keep_in],
                connectivity[:, layer.keep_in],
            )
        library = ticket.layers[layer.name].library.cpu()
        conv = PatternConv2d.from_weight(
            weight,
            bias,
            library=library,
            assignment=assignment,
            connectivity=connectivity,
            stride=stride,
            padding=padding,
        )
        keys["library"] = self.library_key(library)
        for field in ("kernel_index", "pattern", "values"):
            keys[field] = f"{layer.name}.{field}"
            self.tensors[keys[field]] = getattr(conv, field)
        fields = {"in_channels": conv.in_channels, "out_channels": conv.out_channels, "stride": stride}
        return self.add("pattern_conv", inputs=inputs, tensors=keys, padding=padding, **fields)

    def norm(self, name: str, module: nn.Module, inputs: list[int] | None = None) -> int | None:
        """A group-norm node, nothing for ``nn.Identity``; BatchNorm is refused."""
        if isinstance(module, nn.Identity):
            return None
        if not isinstance(module, nn.GroupNorm):
            raise ModelConfigError(
                f"norm of {name} must be none or group for an edge export (fold BatchNorm first). "
                f"Found {type(module).__name__}."
            )
        keys = {"weight": f"{name}.weight", "bias": f"{name}.bias"}
        self.tensors[keys["weight"]] = module.weight.detach().clone()
        self.tensors[keys["bias"]] = module.bias.detach().clone()
        return self.add("group_norm", inputs=inputs, tensors=keys, groups=module.num_groups, eps=module.eps)


def _exact(norm: nn.Module) -> bool:
    return isinstance(norm, nn.Identity)


def _lower_conv4(model: Conv4, layers: dict[str, _Layer], ticket: Ticket, b: _Builder) -> None:
    convs = [layers[f"conv{k}"] for k in range(1, 5)]
    norms = [getattr(model, f"norm{k}") for k in range(1, 5)]
    chain = [(convs[k], convs[k + 1], True) for k in range(3) if _exact(norms[k])]
    if _exact(norms[3]):
        chain.append((convs[3], layers["fc1"], True))
    chain.append((layers["fc1"], layers["fc2"], True))
    _compact_chain(chain)
    for k, (conv, norm) in enumerate(zip(convs, norms), start=1):
        b.layer(conv, ticket)
        b.norm(f"norm{k}", norm)
        b.add("relu")
        if k in (2, 4):
            b.add("max_pool", kernel_size=2)
    b.add("flatten")
    b.layer(layers["fc1"], ticket)
    b.add("relu")
    b.layer(layers["fc2"], ticket)


def _lower_lenet5(model: LeNet5, layers: dict[str, _Layer], ticket: Ticket, b: _Builder) -> None:
    order = [layers[name] for name in ("conv1", "conv2", "fc1", "fc2", "fc3")]
    _compact_chain([(order[k], order[k + 1], True) for k in range(4)])
    for k, layer in enumerate(order):
        b.layer(layer, ticket)
        if k < 4:
            b.add("relu")
        if k < 2:
            b.add("max_pool", kernel_size=2)
        if k == 1:
            b.add("flatten")


def _lower_resnet20(model: ResNet20, layers: dict[str, _Layer], ticket: Ticket, b: _Builder) -> None:
    blocks = [(f"layer{s}.{k}", getattr(model, f"layer{s}")[k]) for s in (1, 2, 3) for k in range(3)]
    _compact_chain([(layers[f"{p}.conv1"], layers[f"{p}.conv2"], True) for p, block in blocks if _exact(block.norm1)])
    b.layer(layers["conv1"], ticket)
    b.norm("norm1", model.norm1)
    value = b.add("relu")
    for prefix, block in blocks:
        b.layer(layers[f"{prefix}.conv1"], ticket, inputs=[value])
        b.norm(f"{prefix}.norm1", block.norm1)
        b.add("relu")
        b.layer(layers[f"{prefix}.conv2"], ticket)
        out = b.norm(f"{prefix}.norm2", block.norm2) or len(b.nodes)
        shortcut = value
        if block.stride != 1 or block.extra_planes > 0:
            planes = block.conv2.out_channels
            half = block.extra_planes // 2
            key = f"{prefix}.shortcut.channel_index"
            b.tensors[key] = torch.arange(block.conv1.in_channels) + half
            shortcut = b.add(
                "shortcut",
                inputs=[value],
                tensors={"channel_index": key},
                stride=block.stride,
                out_channels=planes,
            )
        b.add("add", inputs=[out, shortcut])
        value = b.add("relu")
    b.add("global_avg_pool")
    b.add("flatten")
    b.layer(layers["fc"], ticket)


_LOWERINGS = (
    (Conv4, _lower_conv4),
    (LeNet5, _lower_lenet5),
    (ResNet20, _lower_resnet20),
)


@torch.no_grad()
def lower_to_edge_graph(model: nn.Module, ticket: Ticket) -> EdgeGraph:
    """The compact graph of ``model`` masked by ``ticket``; its outputs equal the masked model's.

    Parameters
    ----------
    model : nn.Module
        A :class:`Conv4`, :class:`LeNet5` or :class:`ResNet20` (masked or not: the ticket's masks
        are applied to its weights here), in eval semantics.
    ticket : kernels.Ticket
        The ticket; it must fit the model's prunable layers.

    Raises
    ------
    ModelConfigError
        For another architecture, or BatchNorm layers.
    kernels.TicketMismatchError
        If the ticket does not fit the model.
    """
    for cls, lower in _LOWERINGS:
        if isinstance(model, cls):
            break
    else:
        valid = [cls.__name__ for cls, _ in _LOWERINGS]
        raise ModelConfigError(f"model must be one of {valid} for an edge export. Found {type(model).__name__}.")
    layers = _layers(model, ticket)
    builder = _Builder()
    lower(model, layers, ticket, builder)  # type: ignore[arg-type]
    channels = {
        name: (
            int(layer.keep_out.sum()) if layer.keep_out is not None else layer.weight.shape[0],
            layer.weight.shape[0],
        )
        for name, layer in layers.items()
    }
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, tuple):
        raise ModelConfigError(f"model.input_shape must be a tuple (C, H, W). Found {shape!r}.")
    return EdgeGraph(
        nodes=builder.nodes,
        tensors=builder.tensors,
        input_shape=shape,
        channels=channels,
    )
