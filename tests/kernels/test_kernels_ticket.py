"""LayerTicket and Ticket: validation, masks, densities, compression ratio, Jaccard, reports."""

from __future__ import annotations

import json
import math

import pytest
import torch

from kernels import (
    KernelsError,
    LayerPolicy,
    LayerTicket,
    Ticket,
    TicketMetadata,
    TicketMismatchError,
    enumerate_candidates,
)

LIBRARY = enumerate_candidates(4)[:8]


def _pattern_layer(out_ch: int = 3, in_ch: int = 2, seed: int = 0) -> LayerTicket:
    generator = torch.Generator().manual_seed(seed)
    return LayerTicket(
        policy=LayerPolicy.PATTERN,
        shape=(out_ch, in_ch, 3, 3),
        library=LIBRARY,
        assignment=torch.randint(0, 8, (out_ch, in_ch), generator=generator),
        connectivity=torch.rand(out_ch, in_ch, generator=generator) < 0.5,
    )


def _ticket(seed: int = 0) -> Ticket:
    generator = torch.Generator().manual_seed(seed + 100)
    return Ticket(
        layers={
            "conv": _pattern_layer(seed=seed),
            "fc": LayerTicket(policy="unstructured", shape=(4, 6), unstructured_mask=torch.rand(4, 6, generator=generator) < 0.3),
            "head": LayerTicket(policy="dense", shape=(2, 4)),
        },
        metadata=TicketMetadata(config_hash="abc123", epsilon_spent={"record": 1.5}, round=3),
    )


def test_pattern_layer_mask_is_connectivity_and_assigned_pattern() -> None:
    layer = _pattern_layer()
    mask = layer.mask()
    assert mask.shape == (3, 2, 3, 3) and mask.dtype == torch.bool
    for o in range(3):
        for i in range(2):
            expected = LIBRARY[layer.assignment[o, i]] if layer.connectivity[o, i] else torch.zeros(3, 3, dtype=torch.bool)
            assert torch.equal(mask[o, i], expected)
    assert layer.kept == int(mask.sum()) == 4 * int(layer.connectivity.sum())
    assert layer.density == pytest.approx(layer.kept / 54)
    assert layer.sparsity == pytest.approx(1 - layer.density)
    assert layer.entries == 4 and layer.kept_kernels == int(layer.connectivity.sum())


def test_unstructured_and_dense_layer_masks() -> None:
    unstructured = torch.tensor([[True, False], [False, False]])
    layer = LayerTicket(policy=LayerPolicy.UNSTRUCTURED, shape=(2, 2), unstructured_mask=unstructured)
    assert torch.equal(layer.mask(), unstructured) and layer.density == 0.25
    layer.mask()[0, 0] = False  # mask() hands out a copy
    assert layer.kept == 1
    dense = LayerTicket(policy="dense", shape=(5,))
    assert dense.policy is LayerPolicy.DENSE
    assert bool(dense.mask().all()) and dense.mask().shape == (5,) and dense.density == 1.0


def test_layer_assignment_is_converted_to_int64() -> None:
    layer = LayerTicket(
        policy="pattern", shape=(1, 1, 3, 3), library=LIBRARY, assignment=torch.tensor([[7]], dtype=torch.uint8),
        connectivity=torch.tensor([[True]]),
    )
    assert layer.assignment.dtype == torch.int64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "sparse", "shape": (2,)}, "policy must be one of \\['pattern', 'unstructured', 'dense'\\]"),
        ({"policy": "dense", "shape": (0, 2)}, "shape must be a non-empty tuple of positive ints"),
        ({"policy": "dense", "shape": (2,), "unstructured_mask": torch.ones(2, dtype=torch.bool)}, "unstructured_mask must be None"),
        ({"policy": "unstructured", "shape": (2,)}, "unstructured_mask must be a torch.Tensor"),
        ({"policy": "unstructured", "shape": (2,), "unstructured_mask": torch.ones(3, dtype=torch.bool)}, "unstructured_mask shape must be \\(2,\\)"),
        ({"policy": "unstructured", "shape": (2,), "unstructured_mask": torch.ones(2)}, "unstructured_mask dtype must be torch.bool"),
        ({"policy": "pattern", "shape": (1, 1, 5, 5), "library": LIBRARY, "assignment": torch.zeros(1, 1, dtype=torch.int64),
          "connectivity": torch.ones(1, 1, dtype=torch.bool)}, "shape of a pattern layer must be \\(O, I, 3, 3\\)"),
        ({"policy": "pattern", "shape": (1, 1, 3, 3), "library": LIBRARY, "assignment": torch.full((1, 1), 8),
          "connectivity": torch.ones(1, 1, dtype=torch.bool)}, "assignment values must be in \\[0, 8\\)"),
        ({"policy": "pattern", "shape": (1, 1, 3, 3), "library": LIBRARY, "assignment": torch.zeros(1, 1),
          "connectivity": torch.ones(1, 1, dtype=torch.bool)}, "assignment dtype must be an integer type"),
        ({"policy": "pattern", "shape": (1, 2, 3, 3), "library": LIBRARY, "assignment": torch.zeros(1, 1, dtype=torch.int64),
          "connectivity": torch.ones(1, 2, dtype=torch.bool)}, "assignment shape must be \\(1, 2\\)"),
        ({"policy": "pattern", "shape": (1, 1, 3, 3), "library": LIBRARY[[0, 0]], "assignment": torch.zeros(1, 1, dtype=torch.int64),
          "connectivity": torch.ones(1, 1, dtype=torch.bool)}, "distinct"),
        ({"policy": "pattern", "shape": (1, 1, 3, 3), "library": LIBRARY, "connectivity": torch.ones(1, 1, dtype=torch.bool)},
         "assignment must be a torch.Tensor for a pattern layer"),
    ],
)
def test_layer_ticket_refuses_bad_fields(kwargs: dict, message: str) -> None:
    with pytest.raises(KernelsError, match=message):
        LayerTicket(**kwargs)


def test_ticket_masks_and_densities() -> None:
    ticket = _ticket()
    masks = ticket.masks()
    assert list(masks) == ["conv", "fc", "head"]
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert ticket.kept() == kept and ticket.total() == total == 54 + 24 + 8
    assert ticket.density() == pytest.approx(kept / total)
    assert ticket.sparsity() == pytest.approx(1 - kept / total)
    assert ticket.layer_density() == {n: pytest.approx(int(m.sum()) / m.numel()) for n, m in masks.items()}
    assert ticket.layer_sparsity()["head"] == 0.0
    assert ticket.compression_ratio() == pytest.approx(total / kept)
    assert ticket.compression_ratio(dense_parameters=10) == pytest.approx((total + 10) / (kept + 10))


def test_applying_a_mask_twice_changes_nothing() -> None:
    ticket = _ticket()
    weights = {name: torch.randn(shape) for name, shape in ticket.shapes().items()}
    masks = ticket.masks()
    once = {name: w * masks[name] for name, w in weights.items()}
    twice = {name: w * masks[name] for name, w in once.items()}
    assert all(torch.equal(once[name], twice[name]) for name in weights)


def test_compression_ratio_is_infinite_when_nothing_is_kept() -> None:
    empty = LayerTicket(policy="unstructured", shape=(3,), unstructured_mask=torch.zeros(3, dtype=torch.bool))
    ticket = Ticket(layers={"a": empty}, metadata=TicketMetadata(config_hash=""))
    assert math.isinf(ticket.compression_ratio())
    assert ticket.sparsity_report().to_json()["compression_ratio"] is None


def test_validate_against_names_layers_and_both_shapes() -> None:
    ticket = _ticket()
    ticket.validate_against({"conv": (3, 2, 3, 3), "fc": torch.Size([4, 6]), "head": (2, 4)})
    with pytest.raises(TicketMismatchError, match="shape of layer 'fc' must be \\(4, 6\\) as in the ticket. Found \\(4, 7\\)"):
        ticket.validate_against({"conv": (3, 2, 3, 3), "fc": (4, 7), "head": (2, 4)})
    with pytest.raises(TicketMismatchError, match="layers \\['extra'\\] of the model must be in the ticket"):
        ticket.validate_against({"conv": (3, 2, 3, 3), "fc": (4, 6), "head": (2, 4), "extra": (1,)})
    with pytest.raises(TicketMismatchError, match="layers \\['head'\\] of the ticket must be in the model"):
        ticket.validate_against({"conv": (3, 2, 3, 3), "fc": (4, 6)})
    with pytest.raises(TicketMismatchError) as info:  # every problem in one message
        ticket.validate_against({"conv": (3, 2, 1, 1), "fc": (4, 6), "other": (2,)})
    text = str(info.value)
    assert "'other'" in text and "'head'" in text and "(3, 2, 3, 3)" in text and "(3, 2, 1, 1)" in text


def test_jaccard_of_kept_weights() -> None:
    a, b = _ticket(seed=0), _ticket(seed=1)
    assert a.jaccard(a) == 1.0
    masks_a, masks_b = a.masks(), b.masks()
    sparse = ["conv", "fc"]  # 'head' is dense in both and left out
    inter = sum(int((masks_a[n] & masks_b[n]).sum()) for n in sparse)
    union = sum(int((masks_a[n] | masks_b[n]).sum()) for n in sparse)
    assert a.jaccard(b) == pytest.approx(inter / union) == pytest.approx(b.jaccard(a))
    dense_only = Ticket(layers={"x": LayerTicket(policy="dense", shape=(2,))}, metadata=a.metadata)
    assert dense_only.jaccard(dense_only) == 1.0
    with pytest.raises(TicketMismatchError):
        a.jaccard(dense_only)


def test_jaccard_of_disjoint_tickets_is_zero() -> None:
    def single(mask: list[bool]) -> Ticket:
        layer = LayerTicket(policy="unstructured", shape=(3,), unstructured_mask=torch.tensor(mask))
        return Ticket(layers={"w": layer}, metadata=TicketMetadata(config_hash=""))

    assert single([True, False, False]).jaccard(single([False, True, True])) == 0.0
    assert single([False] * 3).jaccard(single([False] * 3)) == 1.0


def test_sparsity_report_rows_totals_and_table() -> None:
    ticket = _ticket()
    report = ticket.sparsity_report(dense_parameters=5)
    assert [row.name for row in report.layers] == ["conv", "fc", "head"]
    conv = report.layers[0]
    assert conv.total_kernels == 6 and conv.kept_kernels == ticket.layers["conv"].kept_kernels
    assert report.layers[1].kept_kernels is None
    assert report.kept == ticket.kept() and report.total == ticket.total()
    assert report.compression_ratio == pytest.approx((ticket.total() + 5) / (ticket.kept() + 5))
    assert json.loads(json.dumps(report.to_json()))["layers"][2]["density"] == 1.0
    table = report.format_table()
    assert all(name in table for name in ("conv", "fc", "head", "total"))
    with pytest.raises(KernelsError, match="dense_parameters must be a non-negative int"):
        ticket.sparsity_report(dense_parameters=-1)


def test_ticket_construction_errors_and_equality() -> None:
    metadata = TicketMetadata(config_hash="")
    with pytest.raises(KernelsError, match="layers must be a non-empty mapping"):
        Ticket(layers={}, metadata=metadata)
    with pytest.raises(KernelsError, match="must be a LayerTicket"):
        Ticket(layers={"a": torch.ones(2)}, metadata=metadata)  # type: ignore[dict-item]
    with pytest.raises(KernelsError, match="metadata must be a TicketMetadata"):
        Ticket(layers={"a": LayerTicket(policy="dense", shape=(2,))}, metadata={})  # type: ignore[arg-type]
    assert _ticket(0) == _ticket(0)
    assert _ticket(0) != _ticket(1)


def test_metadata_validation() -> None:
    metadata = TicketMetadata(config_hash="h", epsilon_spent={"client": math.inf, "record": 2})
    assert metadata.epsilon_spent == {"client": math.inf, "record": 2.0}
    assert TicketMetadata.from_json(json.loads(json.dumps(metadata.to_json()))) == metadata
    with pytest.raises(TypeError):
        metadata.epsilon_spent["record"] = 0.0  # type: ignore[index]
    for kwargs, message in [
        ({"config_hash": 1}, "config_hash must be a str"),
        ({"config_hash": "", "epsilon_spent": {"record": -1.0}}, "epsilon_spent\\['record'\\] must be a real number >= 0"),
        ({"config_hash": "", "epsilon_spent": {"record": math.nan}}, "must be a real number >= 0"),
        ({"config_hash": "", "round": -1}, "round must be a non-negative int"),
        ({"config_hash": "", "created_at": "yesterday"}, "created_at must be an ISO 8601 timestamp"),
    ]:
        with pytest.raises(KernelsError, match=message):
            TicketMetadata(**kwargs)  # type: ignore[arg-type]
