"""The ``dppt-edge`` file: a ticket's compact inference model, safetensors plus a JSON header, no pickle.

Layout (format version 1): a plain safetensors file whose string metadata holds

- ``format``: ``"dppt-edge"``; ``format_version``: ``"1"``;
- ``header``: JSON ``{"input_shape": [C, H, W], "nodes": [...], "source": {...}}``: the graph of
  :mod:`kernels.edge_model` (each node names its tensors by key) and free-form provenance
  (config hash, ticket round, layer counts);
- ``sha256``: hex SHA-256 of the header string followed by the raw bytes of every tensor in the
  order the nodes name them (as the ``dppt-ticket`` file), so any damage is detected on load.

Only kept weights are stored: a pattern convolution holds its kept kernels' flat indices
(int32), pattern indices (uint8) and ``m`` values each (float32), plus the library (bool);
channels a compaction removed are simply absent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from kernels.edge_model import ConvBackend, EdgeModel
from kernels.errors import EdgeFormatError
from kernels.ticket_file import _digest, read_checked_safetensors
from storage import write_atomic

__all__ = [
    "EDGE_FORMAT_NAME",
    "EDGE_FORMAT_VERSION",
    "read_export_file",
    "read_export_header",
    "write_export_file",
]

EDGE_FORMAT_NAME = "dppt-edge"
EDGE_FORMAT_VERSION = 1

# Stored narrower than they run: kernel indices fit int32, pattern indices uint8 (P <= 126).
_STORED_DTYPES = {
    "kernel_index": torch.int32,
    "pattern": torch.uint8,
    "channel_index": torch.int32,
}
_LOADED_DTYPES = {
    "kernel_index": torch.int64,
    "pattern": torch.int64,
    "channel_index": torch.int64,
}


def _keys_in_order(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """Tensor keys in the order the nodes name them, each once."""
    seen: dict[str, None] = {}
    for node in nodes:
        for key in node.get("tensors", {}).values():
            seen.setdefault(key, None)
    return list(seen)


def _fields_of(nodes: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Tensor key -> the field it fills (a shared library is a ``library`` everywhere)."""
    return {key: field for node in nodes for field, key in node.get("tensors", {}).items()}


def write_export_file(
    path: str | os.PathLike[str],
    *,
    nodes: Sequence[Mapping[str, Any]],
    tensors: Mapping[str, torch.Tensor],
    input_shape: tuple[int, ...],
    source: Mapping[str, Any],
) -> int:
    """Check the graph by building it, then write it atomically; returns the file size in bytes.

    Raises
    ------
    EdgeFormatError
        If the graph does not build (see :class:`kernels.EdgeModel`) or names a tensor that is
        not given, or a tensor is given that no node names.
    """
    EdgeModel(nodes, tensors, input_shape=input_shape, backend="torch")
    keys = _keys_in_order(nodes)
    unused = sorted(set(tensors) - set(keys))
    if unused:
        raise EdgeFormatError(f"tensors must all be named by a node. Found unnamed {unused}.")
    fields = _fields_of(nodes)
    stored = {}
    for key in keys:
        tensor = tensors[key].detach().cpu()
        dtype = _STORED_DTYPES.get(fields[key])
        stored[key] = (tensor.to(dtype) if dtype is not None else tensor).contiguous().clone()
    header = json.dumps(
        {
            "input_shape": list(input_shape),
            "nodes": [dict(n) for n in nodes],
            "source": dict(source),
        },
        allow_nan=False,
    )
    metadata = {
        "format": EDGE_FORMAT_NAME,
        "format_version": str(EDGE_FORMAT_VERSION),
        "header": header,
        "sha256": _digest(header, [stored[key] for key in keys]),
    }
    data = safetensors.torch.save(stored, metadata=metadata)
    write_atomic(Path(path), data)
    return len(data)


def read_export_header(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checked header and the tensors (in their run-time dtypes) of a ``dppt-edge`` file.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    EdgeFormatError
        If the file is not safetensors, not a ``dppt-edge`` of version 1, or damaged.
    """
    path = Path(path)
    metadata, stored = read_checked_safetensors(
        path,
        kind="export",
        format_name=EDGE_FORMAT_NAME,
        format_version=EDGE_FORMAT_VERSION,
        error=EdgeFormatError,
        hint=" (write it with dppt export)",
    )
    header = metadata.get("header")
    try:
        parsed = json.loads(header) if isinstance(header, str) else None
        nodes = parsed["nodes"]  # type: ignore[index]
        input_shape = tuple(parsed["input_shape"])  # type: ignore[index]
        keys = _keys_in_order(nodes)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise EdgeFormatError(f"header of {path} must be the JSON of a dppt-edge graph. Found: {err!r}") from err
    if sorted(keys) != sorted(stored):
        raise EdgeFormatError(f"tensors of {path} must match its header. Found {sorted(stored)}, header names {keys}.")
    if metadata.get("sha256") != _digest(header, [stored[key] for key in keys]):  # type: ignore[arg-type]
        raise EdgeFormatError(f"sha256 of {path} must match its content. Found a mismatch: the file is damaged.")
    fields = _fields_of(nodes)
    tensors = {
        key: value.to(_LOADED_DTYPES[fields[key]]) if fields[key] in _LOADED_DTYPES else value
        for key, value in stored.items()
    }
    parsed["input_shape"] = input_shape  # type: ignore[index]
    return parsed, tensors  # type: ignore[return-value]


def read_export_file(path: str | os.PathLike[str], *, backend: ConvBackend = "auto") -> EdgeModel:
    """Load a ``dppt-edge`` file as an :class:`kernels.EdgeModel` (eval mode).

    Raises
    ------
    FileNotFoundError, EdgeFormatError
        As :func:`read_export_header`; an :class:`EdgeFormatError` also when the graph does not
        fit its tensors, prefixed by the file name.
    """
    parsed, tensors = read_export_header(path)
    try:
        return EdgeModel(parsed["nodes"], tensors, input_shape=parsed["input_shape"], backend=backend)
    except EdgeFormatError as err:
        raise EdgeFormatError(f"{path}: {err}") from err
