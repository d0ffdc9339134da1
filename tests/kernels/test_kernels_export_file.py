"""The dppt-edge file: round trip, and one-line refusal of damaged, foreign or inconsistent files."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

from kernels import (
    EDGE_FORMAT_NAME,
    EdgeFormatError,
    EdgeModel,
    PatternConv2d,
    Ticket,
    TicketMetadata,
    enumerate_candidates,
    random_ticket,
    read_export_file,
    read_export_header,
    write_export_file,
)

LIBRARY = enumerate_candidates(4)[:8]


def _graph() -> tuple[list[dict], dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    assignment = torch.randint(0, 8, (6, 3), generator=generator)
    connectivity = torch.rand(6, 3, generator=generator) < 0.5
    weight = torch.randn(6, 3, 3, 3, generator=generator) * (LIBRARY[assignment] & connectivity[..., None, None])
    conv = PatternConv2d.from_weight(weight, torch.randn(6, generator=generator), library=LIBRARY, assignment=assignment, connectivity=connectivity)
    tensors = {
        "library.0": LIBRARY, "c.kernel_index": conv.kernel_index, "c.pattern": conv.pattern, "c.values": conv.values,
        "c.bias": conv.bias, "n.weight": torch.rand(6, generator=generator), "n.bias": torch.rand(6, generator=generator),
        "fc.weight": torch.randn(4, 6 * 16, generator=generator),
    }
    nodes = [
        {"op": "pattern_conv", "in_channels": 3, "out_channels": 6, "stride": 2, "padding": 1,
         "tensors": {"library": "library.0", "kernel_index": "c.kernel_index", "pattern": "c.pattern",
                     "values": "c.values", "bias": "c.bias"}},
        {"op": "group_norm", "groups": 2, "eps": 1e-5, "tensors": {"weight": "n.weight", "bias": "n.bias"}},
        {"op": "relu"},
        {"op": "add", "inputs": [2, 3]},
        {"op": "flatten"},
        {"op": "linear", "tensors": {"weight": "fc.weight"}},
    ]
    return nodes, tensors


def _write(path, nodes=None, tensors=None) -> int:
    default_nodes, default_tensors = _graph()
    return write_export_file(
        path, nodes=nodes or default_nodes, tensors=tensors or default_tensors, input_shape=(3, 8, 8), source={"x": 1}
    )


def test_round_trip_gives_the_same_outputs_and_header(tmp_path):
    nodes, tensors = _graph()
    size = _write(tmp_path / "m.edge")
    assert size == (tmp_path / "m.edge").stat().st_size
    model = read_export_file(tmp_path / "m.edge", backend="torch")
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model(x), EdgeModel(nodes, tensors, input_shape=(3, 8, 8), backend="torch")(x))
    header, stored = read_export_header(tmp_path / "m.edge")
    assert header["source"] == {"x": 1} and header["input_shape"] == (3, 8, 8)
    assert stored["c.kernel_index"].dtype == torch.int64 and stored["c.pattern"].dtype == torch.int64
    with safe_open(str(tmp_path / "m.edge"), framework="pt") as handle:  # stored narrow
        assert handle.get_tensor("c.pattern").dtype == torch.uint8
        assert handle.metadata()["format"] == EDGE_FORMAT_NAME


def _one_line(path, message: str) -> None:
    with pytest.raises(EdgeFormatError, match=message) as info:
        read_export_file(path)
    assert "\n" not in str(info.value)


def test_a_flipped_byte_is_refused(tmp_path):
    path = tmp_path / "m.edge"
    _write(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    _one_line(path, r"sha256 of .* must match its content")


def test_a_truncated_or_foreign_file_is_refused(tmp_path):
    path = tmp_path / "m.edge"
    _write(path)
    path.write_bytes(path.read_bytes()[:40])
    _one_line(path, r"must be a readable safetensors file")
    ticket = random_ticket({"c": (2, 2, 3, 3)}, policies={"c": "pattern"}, density=0.3, library=LIBRARY,
                           generator=torch.Generator().manual_seed(0), metadata=TicketMetadata(config_hash=""))
    assert isinstance(ticket, Ticket)
    ticket.save(tmp_path / "t.safetensors")
    _one_line(tmp_path / "t.safetensors", r"format of .* must be 'dppt-edge' .* Found 'dppt-ticket'")


def test_a_header_that_does_not_fit_its_tensors_is_refused(tmp_path):
    # A file with a valid checksum whose linear node names the norm's 1-D weight.
    _, tensors = _graph()
    path = tmp_path / "m.edge"
    _write(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    header = json.loads(metadata["header"])
    header["nodes"][5]["tensors"]["weight"] = "n.weight"
    text = json.dumps(header)
    from kernels.ticket_file import _digest

    stored = {k: (v.to(torch.int32) if k == "c.kernel_index" else v.to(torch.uint8) if k == "c.pattern" else v)
              for k, v in tensors.items() if k != "fc.weight"}
    keys = [k for node in header["nodes"] for k in node.get("tensors", {}).values()]
    order = list(dict.fromkeys(keys))
    metadata.update(header=text, sha256=_digest(text, [stored[k] for k in order]))
    path.write_bytes(safetensors.torch.save(stored, metadata=metadata))
    _one_line(path, r"node 5 \(linear\) weight must be 2-D\. Found shape \(6,\)")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda n: n[0].update(op="conv3d"), r"node 0 op must be one of"),
        (lambda n: n[3].update(inputs=[2, 9]), r"node 3 \(add\) inputs must be 2 earlier value\(s\) in \[0, 3\]"),
        (lambda n: n[0].pop("stride"), r"node 0 \(pattern_conv\) must have .* Found missing \['stride'\]"),
        (lambda n: n[0].update(in_channels=5), r"node 0 \(pattern_conv\) must fit its input \(1, 3, 8, 8\)"),
    ],
)
def test_inconsistent_graphs_are_refused_before_writing(tmp_path, edit, message):
    nodes, tensors = _graph()
    edit(nodes)
    with pytest.raises(EdgeFormatError, match=message):
        _write(tmp_path / "m.edge", nodes, tensors)
    assert not (tmp_path / "m.edge").exists()
