"""The ``dppt-ticket`` file format: safetensors tensors plus a JSON header, no pickle.

Layout (format version 1). The file is a plain safetensors file whose string metadata holds:

- ``format``: ``"dppt-ticket"``; ``format_version``: ``"1"``;
- ``header``: JSON object ``{"layers": [...], "metadata": {...}}``. ``layers`` lists, in the
  ticket's layer order, ``{"name", "policy", "shape", "tensors": {field: tensor key}}``;
  ``metadata`` is :meth:`TicketMetadata.to_json`;
- ``sha256``: hex SHA-256 of the ``header`` string (UTF-8) followed by the raw bytes of every
  tensor in header order, so any damage to the header or to the data is detected on load.

Tensors are keyed ``layers.<index>.<field>`` (layer names may contain any character):
``library`` bool ``(P, 3, 3)``, ``assignment`` uint8 ``(O, I)`` (a library holds at most
``C(9, 4) = 126`` distinct equal-size patterns), ``connectivity`` bool ``(O, I)``,
``unstructured_mask`` bool of the weight shape. Dense layers have no tensor.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open

from storage import write_atomic
from kernels.errors import KernelsError, TicketFormatError
from kernels.layer_ticket import LayerTicket
from kernels.metadata import TicketMetadata

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "read_ticket_file", "write_ticket_file"]

FORMAT_NAME = "dppt-ticket"
FORMAT_VERSION = 1
_TENSOR_FIELDS = ("library", "assignment", "connectivity", "unstructured_mask")


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().cpu().numpy().tobytes()


def _digest(header: str, tensors: list[torch.Tensor]) -> str:
    sha = hashlib.sha256(header.encode("utf-8"))
    for tensor in tensors:
        sha.update(_tensor_bytes(tensor))
    return sha.hexdigest()


def write_ticket_file(
    path: str | os.PathLike[str], layers: Mapping[str, LayerTicket], metadata: TicketMetadata
) -> None:
    """Write a ticket atomically: a temporary file in the same folder, fsynced, then ``os.replace``.

    A crash leaves either the previous file or the complete new one, never a partial file.
    """
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    entries: list[dict[str, Any]] = []
    for index, (name, layer) in enumerate(layers.items()):
        keys: dict[str, str] = {}
        for field in _TENSOR_FIELDS:
            value = getattr(layer, field)
            if value is None:
                continue
            key = f"layers.{index}.{field}"
            # A copy per key: safetensors refuses tensors that share storage (one library used by
            # several layers, connectivities split from one global top-k).
            tensors[key] = (value.to(torch.uint8) if field == "assignment" else value).detach().cpu().clone()
            keys[field] = key
        entries.append({"name": name, "policy": layer.policy.value, "shape": list(layer.shape), "tensors": keys})
    header = json.dumps({"layers": entries, "metadata": metadata.to_json()}, allow_nan=False)
    file_metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "header": header,
        "sha256": _digest(header, list(tensors.values())),
    }
    data = safetensors.torch.save(tensors, metadata=file_metadata)

    write_atomic(path, data)  # 0644: a ticket is a shareable result


def read_checked_safetensors(
    path: Path, *, kind: str, format_name: str, format_version: int, error: type[KernelsError], hint: str = ""
) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """String metadata and tensors of a dppt safetensors file whose ``format`` and version are checked.

    Shared by the ticket and the ``dppt-edge`` files (their headers and checksums differ).
    ``hint`` (e.g. ``" (write it with dppt export)"``) is added to a wrong-format message.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    KernelsError
        Of class ``error``, if the file is not safetensors, or of another format or version.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open API)
    except Exception as err:  # the safetensors parser raises its own untyped errors on bad bytes
        raise error(f"{path} must be a readable safetensors file. Found: {err}") from err
    name = metadata.get("format")
    if name != format_name:
        raise error(f"format of {path} must be {format_name!r}{hint}. Found {name!r}.")
    version = metadata.get("format_version")
    if version != str(format_version):
        raise error(
            f"format_version of {path} must be {format_version} (the versions this dppt reads). Found {version!r}."
        )
    return metadata, stored


def read_ticket_file(path: str | os.PathLike[str]) -> tuple[dict[str, LayerTicket], TicketMetadata]:
    """Read and fully check a ticket file written by :func:`write_ticket_file`.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    TicketFormatError
        If the file is not safetensors, not a ``dppt-ticket`` of version 1, or damaged.
    """
    path = Path(path)
    file_metadata, stored = read_checked_safetensors(
        path, kind="ticket", format_name=FORMAT_NAME, format_version=FORMAT_VERSION, error=TicketFormatError
    )
    header = file_metadata.get("header")
    if not isinstance(header, str):
        raise TicketFormatError(f"{path} must hold a JSON 'header'. Found none.")
    try:
        parsed = json.loads(header)
        entries = parsed["layers"]
        keys_in_order = [key for entry in entries for key in entry["tensors"].values()]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise TicketFormatError(f"header of {path} must be the JSON of a dppt-ticket. Found: {err}") from err
    if sorted(keys_in_order) != sorted(stored) or len(set(keys_in_order)) != len(keys_in_order):
        raise TicketFormatError(
            f"tensors of {path} must match its header. Found {sorted(stored)}, header lists {keys_in_order}."
        )
    digest = _digest(header, [stored[key] for key in keys_in_order])
    if file_metadata.get("sha256") != digest:
        raise TicketFormatError(f"sha256 of {path} must match its content. Found a mismatch: the file is damaged.")

    try:
        layers: dict[str, LayerTicket] = {}
        for entry in entries:
            tensors = {field: stored[key] for field, key in entry["tensors"].items()}
            if "assignment" in tensors:
                tensors["assignment"] = tensors["assignment"].to(torch.int64)
            layer_name = entry["name"]
            if not isinstance(layer_name, str) or layer_name in layers:
                raise KernelsError(f"layer names must be unique str. Found {layer_name!r}.")
            layers[layer_name] = LayerTicket(policy=entry["policy"], shape=tuple(entry["shape"]), **tensors)
        metadata = TicketMetadata.from_json(parsed["metadata"])
    except (KernelsError, KeyError, TypeError) as err:
        raise TicketFormatError(f"content of {path} must describe a valid ticket. Found: {err}") from err
    return layers, metadata
