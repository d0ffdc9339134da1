"""Lowering to an edge graph: export, write, load gives the masked model's outputs; only exact removals."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn
from torch.utils.cpp_extension import is_ninja_available

import models
from kernels import (
    LayerPolicy,
    enumerate_candidates,
    random_ticket,
    read_export_file,
    write_export_file,
)
from models import ModelConfigError
from models.compaction import lower_to_edge_graph

LIBRARY = enumerate_candidates(4)[:8]
SHAPES = {"conv4": (1, 28), "lenet5": (1, 28), "resnet20": (3, 32)}
BACKENDS = ["torch", "dense"] + (["compiled"] if shutil.which("c++") and is_ninja_available() else [])


def _masked(name: str, density: float, seed: int = 0, **options) -> tuple[nn.Module, object]:
    channels, side = SHAPES[name]
    torch.manual_seed(seed)
    model = models.get(name, num_classes=10, in_channels=channels, image_size=side, **options)
    with torch.no_grad():  # biases of both signs: dead channels (relu(b) = 0) and constant ones
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                module.bias.normal_(std=0.1)
    policies = models.default_policies(model, linear="unstructured", other_conv="unstructured")
    shapes = {n: tuple(m.weight.shape) for n, m in models.prunable_layers(model).items()}
    sparse = {n: density for n, p in policies.items() if p is not LayerPolicy.DENSE}
    has_patterns = any(p is LayerPolicy.PATTERN for p in policies.values())
    ticket = random_ticket(shapes, policies=policies, density=sparse, library=LIBRARY if has_patterns else None,
                           generator=torch.Generator().manual_seed(seed))
    models.apply_ticket(model, ticket)
    return model.eval(), ticket


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("density", [0.02, 0.1, 4 / 9])
def test_export_then_load_gives_the_masked_models_outputs(tmp_path, name, density):
    model, ticket = _masked(name, density)
    graph = lower_to_edge_graph(model, ticket)
    path = tmp_path / "model.edge"
    write_export_file(path, nodes=graph.nodes, tensors=graph.tensors, input_shape=graph.input_shape, source={})
    x = torch.randn(16, *model.input_shape)
    with torch.no_grad():
        expected = model(x)
        for backend in BACKENDS:
            torch.testing.assert_close(read_export_file(path, backend=backend)(x), expected, atol=1e-5, rtol=1e-5)


def test_sparse_conv4_loses_channels_and_bytes(tmp_path):
    model, ticket = _masked("conv4", 0.02)
    graph = lower_to_edge_graph(model, ticket)
    assert graph.channels["conv1"][0] < graph.channels["conv1"][1]
    assert all(kept >= 1 for kept, _ in graph.channels.values())
    size = write_export_file(tmp_path / "m", nodes=graph.nodes, tensors=graph.tensors, input_shape=(1, 28, 28), source={})
    dense_bytes = sum(v.numel() * 4 for v in models.plain_state_dict(model).values())
    assert size < dense_bytes / 2


@pytest.mark.parametrize("name", ["conv4", "resnet20"])
def test_every_kept_kernel_of_an_export_is_a_library_pattern(tmp_path, name):
    model, ticket = _masked(name, 0.1)
    graph = lower_to_edge_graph(model, ticket)
    write_export_file(tmp_path / "m", nodes=graph.nodes, tensors=graph.tensors, input_shape=graph.input_shape, source={})
    convs = read_export_file(tmp_path / "m", backend="torch").pattern_convs()
    assert len(convs) == sum(layer.policy is LayerPolicy.PATTERN for layer in ticket.layers.values())
    for conv in convs:
        kernels = conv.dense_weight().reshape(-1, 3, 3)
        support = kernels != 0
        assert bool((support[conv.kernel_index] & ~conv.library[conv.pattern]).logical_not().all())
        removed = torch.ones(kernels.shape[0], dtype=torch.bool)
        removed[conv.kernel_index] = False
        assert not bool(support[removed].any())
        assert {tuple(p.flatten().tolist()) for p in conv.library} <= {tuple(p.flatten().tolist()) for p in LIBRARY}


def test_removed_channels_are_exact_only():
    # conv4 at width 0.25, norm none: a conv row without kept kernels and bias > 0 feeds a padded
    # conv with a constant map; that channel must be kept (its border contribution is no bias).
    model, ticket = _masked("conv4", 0.02)
    graph = lower_to_edge_graph(model, ticket)
    conv2 = models.prunable_layers(model)["conv2"]
    rows_empty = conv2.weight.detach().reshape(conv2.weight.shape[0], -1).eq(0).all(dim=1)
    constant = rows_empty & (conv2.bias.detach() > 0)
    reads = models.prunable_layers(model)["conv3"].weight.detach().ne(0).any(dim=(0, 2, 3))
    assert graph.channels["conv2"][0] >= int((constant & reads).sum())


def test_group_norm_keeps_channels_and_batch_norm_is_refused():
    model, ticket = _masked("conv4", 0.02, norm="group")
    graph = lower_to_edge_graph(model, ticket)
    assert all(graph.channels[f"conv{k}"][0] == graph.channels[f"conv{k}"][1] for k in range(1, 5))
    model, ticket = _masked("conv4", 0.1, norm="batch")
    with pytest.raises(ModelConfigError, match=r"norm of norm1 must be none or group .* Found BatchNorm2d\."):
        lower_to_edge_graph(model, ticket)
