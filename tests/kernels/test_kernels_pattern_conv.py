"""PatternConv2d: equal to F.conv2d on the masked weight, on both backends; refuses what it cannot hold."""

from __future__ import annotations

import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F
from torch.utils.cpp_extension import is_ninja_available

from kernels import (
    KernelsError,
    PatternConv2d,
    compiled_pattern_conv,
    enumerate_candidates,
)

LIBRARY = enumerate_candidates(4)[:8]
needs_compiler = pytest.mark.skipif(
    shutil.which("c++") is None or not is_ninja_available(), reason="no C++ compiler or ninja for the compiled loop"
)


def _layer(out_c: int, in_c: int, keep: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    assignment = torch.randint(0, LIBRARY.shape[0], (out_c, in_c), generator=generator)
    connectivity = torch.rand(out_c, in_c, generator=generator) < keep
    weight = torch.randn(out_c, in_c, 3, 3, generator=generator) * (LIBRARY[assignment] & connectivity[..., None, None])
    return weight, assignment, connectivity


@settings(max_examples=25, deadline=None)
@given(
    out_c=st.integers(1, 9),
    in_c=st.integers(1, 9),
    keep=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    stride=st.sampled_from([1, 2]),
    padding=st.sampled_from([0, 1]),
    side=st.integers(3, 9),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_torch_path_equals_conv2d_of_the_masked_weight(out_c, in_c, keep, stride, padding, side, bias, seed):
    weight, assignment, connectivity = _layer(out_c, in_c, keep, seed)
    b = torch.randn(out_c) if bias else None
    conv = PatternConv2d.from_weight(
        weight, b, library=LIBRARY, assignment=assignment, connectivity=connectivity, stride=stride,
        padding=padding, backend="torch",
    )
    x = torch.randn(2, in_c, side, side)
    torch.testing.assert_close(conv(x), F.conv2d(x, weight, b, stride, padding), atol=1e-5, rtol=1e-5)
    assert torch.equal(conv.dense_weight(), weight)


@needs_compiler
@pytest.mark.parametrize(("stride", "padding", "keep"), [(1, 1, 0.3), (2, 1, 0.3), (1, 0, 1.0), (1, 1, 0.0)])
@pytest.mark.parametrize(("relu", "pool"), [(False, 1), (True, 1), (True, 2), (False, 3)])
def test_compiled_loop_equals_the_torch_path(stride, padding, keep, relu, pool):
    assert compiled_pattern_conv(required=True) is not None
    weight, assignment, connectivity = _layer(12, 10, keep, seed=stride + 2 * padding)
    bias = torch.randn(12)
    layers = {
        backend: PatternConv2d.from_weight(
            weight, bias, library=LIBRARY, assignment=assignment, connectivity=connectivity, stride=stride,
            padding=padding, backend=backend,
        )
        for backend in ("torch", "compiled")
    }
    for layer in layers.values():
        layer.fuse(relu=relu, pool=pool)
    x = torch.randn(3, 10, 11, 11)
    expected = F.conv2d(x, weight, bias, stride, padding)
    expected = F.relu(F.max_pool2d(expected, pool)) if relu else F.max_pool2d(expected, pool)
    torch.testing.assert_close(layers["torch"](x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layers["compiled"](x), expected, atol=1e-5, rtol=1e-5)


def test_every_kept_kernel_holds_its_library_pattern():
    weight, assignment, connectivity = _layer(8, 6, 0.5, seed=3)
    conv = PatternConv2d.from_weight(weight, None, library=LIBRARY, assignment=assignment, connectivity=connectivity)
    dense = conv.dense_weight().reshape(-1, 3, 3)
    support = dense[conv.kernel_index] != 0
    assert bool((support & ~LIBRARY[conv.pattern]).logical_not().all())
    assert conv.kernel_index.numel() == int(connectivity.sum())
    assert conv.values.shape == (int(connectivity.sum()), 4)
    assert conv.executed_macs(5, 5) == int(connectivity.sum()) * 4 * 25  # padding 1: 5x5 out


def test_weight_outside_the_ticket_is_refused():
    weight, assignment, connectivity = _layer(4, 4, 0.5, seed=1)
    weight[~connectivity] = 1.0
    with pytest.raises(KernelsError, match=r"weight must be zero outside the kept pattern entries"):
        PatternConv2d.from_weight(weight, None, library=LIBRARY, assignment=assignment, connectivity=connectivity)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kernel_index": torch.tensor([3, 1])}, r"kernel_index must be strictly increasing"),
        ({"kernel_index": torch.tensor([0, 99])}, r"kernel_index must lie in \[0, 16\)"),
        ({"pattern": torch.tensor([0, 8])}, r"pattern must lie in \[0, 8\)"),
        ({"values": torch.zeros(2, 3)}, r"values must be float32 of shape \(2, 4\)"),
        ({"backend": "gpu"}, r"backend must be one of \['auto', 'compiled', 'torch'\]"),
    ],
)
def test_bad_fields_are_refused_in_one_line(change, message):
    fields = {
        "in_channels": 4, "out_channels": 4, "library": LIBRARY, "kernel_index": torch.tensor([1, 3]),
        "pattern": torch.tensor([0, 1]), "values": torch.zeros(2, 4), "bias": None,
    }
    fields.update(change)
    with pytest.raises(KernelsError, match=message) as info:
        PatternConv2d(**fields)
    assert "\n" not in str(info.value)
