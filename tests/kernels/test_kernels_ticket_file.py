"""The dppt-ticket file: round trip of every bit, atomic writes, refusal of foreign or damaged files."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from kernels import (
    FORMAT_NAME,
    LayerPolicy,
    LayerTicket,
    Ticket,
    TicketFormatError,
    TicketMetadata,
    TicketMismatchError,
    enumerate_candidates,
    random_ticket,
)
from kernels.ticket_file import _digest


def _layer_strategy(index: int) -> st.SearchStrategy[tuple[str, tuple[int, ...], LayerPolicy]]:
    conv = st.tuples(st.integers(1, 6), st.integers(1, 6)).map(lambda s: (*s, 3, 3))
    other = st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple)
    return st.one_of(
        conv.map(lambda s: (f"block.{index}.conv", s, LayerPolicy.PATTERN)),
        other.map(lambda s: (f"block.{index}.w/ü", s, LayerPolicy.UNSTRUCTURED)),
        other.map(lambda s: (f"block.{index}.bn", s, LayerPolicy.DENSE)),
    )


tickets = st.integers(1, 4).flatmap(lambda n: st.tuples(*[_layer_strategy(i) for i in range(n)]))


def _ticket(layout: tuple, density: float, entries: int, seed: int, epsilon: float) -> Ticket:
    library = enumerate_candidates(entries)[: min(8, math.comb(8, entries - 1))]
    return random_ticket(
        {name: shape for name, shape, _ in layout},
        policies={name: policy for name, _, policy in layout},
        density=density * entries / 9,
        library=library,
        generator=torch.Generator().manual_seed(seed),
        metadata=TicketMetadata(config_hash=f"h{seed}", epsilon_spent={"record": epsilon, "client": math.inf}, round=seed % 7),
    )


@settings(max_examples=30, deadline=None)
@given(
    layout=tickets,
    density=st.floats(0.0, 1.0),
    entries=st.integers(1, 9),
    seed=st.integers(0, 10_000),
    epsilon=st.floats(0.0, 1e6),
)
def test_round_trip_preserves_every_mask_bit(layout: tuple, density: float, entries: int, seed: int, epsilon: float) -> None:
    ticket = _ticket(layout, density, entries, seed, epsilon)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ticket.safetensors"
        ticket.save(path)
        loaded = Ticket.load(path)
        assert sorted(os.listdir(folder)) == ["ticket.safetensors"]  # no temporary file left
    assert loaded == ticket
    assert list(loaded.layers) == list(ticket.layers)
    masks, loaded_masks = ticket.masks(), loaded.masks()
    assert all(torch.equal(masks[name], loaded_masks[name]) for name in masks)
    assert loaded.metadata == ticket.metadata


def _saved(tmp_path: Path) -> tuple[Ticket, Path]:
    layout = (("conv", (4, 3, 3, 3), LayerPolicy.PATTERN), ("fc", (5, 6), LayerPolicy.UNSTRUCTURED), ("bn", (4,), LayerPolicy.DENSE))
    ticket = _ticket(layout, 0.5, 4, 0, 1.0)
    path = tmp_path / "ticket.safetensors"
    ticket.save(path)
    return ticket, path


def test_file_is_self_describing_safetensors(tmp_path: Path) -> None:
    ticket, path = _saved(tmp_path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        keys = set(handle.keys())
    assert metadata["format"] == FORMAT_NAME == "dppt-ticket" and metadata["format_version"] == "1"
    header = json.loads(metadata["header"])
    assert [layer["name"] for layer in header["layers"]] == ["conv", "fc", "bn"]
    assert [layer["policy"] for layer in header["layers"]] == ["pattern", "unstructured", "dense"]
    assert header["layers"][0]["shape"] == [4, 3, 3, 3]
    assert header["metadata"]["config_hash"] == "h0" and header["metadata"]["epsilon_spent"]["client"] == "inf"
    assert keys == {"layers.0.library", "layers.0.assignment", "layers.0.connectivity", "layers.1.unstructured_mask"}
    assert b"pickle" not in path.read_bytes()


def test_saving_replaces_an_existing_file(tmp_path: Path) -> None:
    ticket, path = _saved(tmp_path)
    other = _ticket((("x", (2, 2), LayerPolicy.DENSE),), 1.0, 4, 1, 0.0)
    other.save(path)
    assert Ticket.load(path) == other != ticket


def test_a_failed_save_leaves_the_previous_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ticket, path = _saved(tmp_path)
    before = path.read_bytes()

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        _ticket((("x", (2, 2), LayerPolicy.DENSE),), 1.0, 4, 1, 0.0).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ticket.safetensors"]


def test_loading_checks_against_the_model(tmp_path: Path) -> None:
    ticket, path = _saved(tmp_path)
    assert Ticket.load(path, shapes={"conv": (4, 3, 3, 3), "fc": (5, 6), "bn": (4,)}) == ticket
    with pytest.raises(TicketMismatchError, match="shape of layer 'fc' must be \\(5, 6\\) as in the ticket. Found \\(6, 5\\)"):
        Ticket.load(path, shapes={"conv": (4, 3, 3, 3), "fc": (6, 5), "bn": (4,)})
    with pytest.raises(TicketMismatchError, match="layers \\['bn'\\] of the ticket must be in the model"):
        Ticket.load(path, shapes={"conv": (4, 3, 3, 3), "fc": (5, 6)})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Ticket.load(tmp_path / "nope.safetensors")


def test_garbage_and_truncated_files_are_refused(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"this is not a ticket at all")
    with pytest.raises(TicketFormatError, match="must be a readable safetensors file"):
        Ticket.load(garbage)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(data[:-5])
    with pytest.raises(TicketFormatError):
        Ticket.load(truncated)


def test_a_flipped_data_byte_is_detected(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # inside the last tensor's data
    path.write_bytes(bytes(data))
    with pytest.raises(TicketFormatError, match="the file is damaged"):
        Ticket.load(path)


def _rewrite(path: Path, **changes: str | None) -> None:
    """Rewrite a ticket file with changed safetensors metadata (``None`` deletes a key)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))


def test_an_edited_header_is_detected(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    with safe_open(str(path), framework="pt") as handle:
        header = json.loads(handle.metadata()["header"])
    header["metadata"]["round"] = 99
    _rewrite(path, header=json.dumps(header))
    with pytest.raises(TicketFormatError, match="sha256 .* must match its content"):
        Ticket.load(path)


def test_unknown_format_and_version_are_refused(tmp_path: Path) -> None:
    _, path = _saved(tmp_path)
    _rewrite(path, format_version="2")
    with pytest.raises(TicketFormatError, match="format_version of .* must be 1 .* Found '2'"):
        Ticket.load(path)
    _rewrite(path, format="pt")
    with pytest.raises(TicketFormatError, match="format of .* must be 'dppt-ticket'. Found 'pt'"):
        Ticket.load(path)
    plain = tmp_path / "plain.safetensors"
    plain.write_bytes(safetensors.torch.save({"w": torch.ones(2)}))
    with pytest.raises(TicketFormatError, match="must be 'dppt-ticket'. Found None"):
        Ticket.load(plain)


def test_consistent_but_invalid_content_is_refused(tmp_path: Path) -> None:
    # A well-formed file with a correct checksum whose assignment points outside the library.
    tensors = {
        "layers.0.library": enumerate_candidates(4)[:2],
        "layers.0.assignment": torch.full((1, 1), 5, dtype=torch.uint8),
        "layers.0.connectivity": torch.ones(1, 1, dtype=torch.bool),
    }
    entry = {"name": "conv", "policy": "pattern", "shape": [1, 1, 3, 3], "tensors": {k.split(".")[-1]: k for k in tensors}}
    header = json.dumps({"layers": [entry], "metadata": TicketMetadata(config_hash="").to_json()})
    metadata = {"format": "dppt-ticket", "format_version": "1", "header": header, "sha256": _digest(header, list(tensors.values()))}
    path = tmp_path / "bad.safetensors"
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))
    with pytest.raises(TicketFormatError, match="must describe a valid ticket. Found: assignment values must be in \\[0, 2\\)"):
        Ticket.load(path)
    # A header that lists a tensor the file does not hold.
    _rewrite(path, header=header.replace('"layers.0.connectivity"', '"layers.0.other"'))
    with pytest.raises(TicketFormatError, match="tensors of .* must match its header"):
        Ticket.load(path)
    _rewrite(path, header="{not json")
    with pytest.raises(TicketFormatError, match="must be the JSON of a dppt-ticket"):
        Ticket.load(path)


def test_dense_only_ticket_round_trips(tmp_path: Path) -> None:
    ticket = Ticket(layers={"w": LayerTicket(policy="dense", shape=(3, 3))}, metadata=TicketMetadata(config_hash="x"))
    ticket.save(tmp_path / "t")
    assert Ticket.load(tmp_path / "t") == ticket
