"""A node's own partition, cached on its device between messages (opt-in: node_config ``cache-dir``).

A real SuperNode starts a fresh ClientApp process for every message (Flower 1.41), so each vote,
training and evaluation message would otherwise import torchvision and the partitioner, read the
whole training set and rebuild every partition before touching its own few thousand examples
(``simulations/benchmarks/bench_client_start.py`` measures it). With ``cache-dir=DIR`` in its
node config, a node keeps its examples in ``DIR/<key>.safetensors`` after the first message and
reads only that file afterwards.

The file holds this node's examples only (the data already on this device), with no pickle
(safetensors), mode 600, written atomically. Its name is a hash of everything that determines its
content: dataset, data root and the size and modification time of every file in the dataset's
folder (the files :func:`federation.data.load_tensors` reads), partition scheme and parameters, partition id, the per-client cap, the seed and
:data:`CACHE_SCHEMA`. Any change gives another file; a file that cannot be read is ignored and
rewritten. The Simulation Engine keeps its workers alive and needs no cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Final

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from federation.data import dataset_folder, resolve_data_dir
from federation.partitions import PartitionSpec
from storage import write_atomic

__all__ = ["CACHE_SCHEMA", "cache_file", "read_cached", "write_cached"]

CACHE_SCHEMA: Final = 1
_LOG = logging.getLogger(__name__)


def _dataset_stamp(dataset: str, root: Path) -> list[tuple[str, int, int]]:
    folder = dataset_folder(dataset, root)  # the folder load_tensors reads
    if not folder.is_dir():
        return []
    stats = [(p.name, p.stat()) for p in folder.iterdir() if p.is_file()]
    return sorted((name, st.st_size, st.st_mtime_ns) for name, st in stats)


def cache_file(
    cache_dir: str | os.PathLike[str], *, dataset: str, data_dir: str, spec: PartitionSpec, partition_id: int,
    cap: int, seed: int,
) -> Path:
    """The cache file of one node's partition (it may not exist yet)."""
    root = resolve_data_dir(data_dir or None).expanduser().resolve()
    key = {
        "schema": CACHE_SCHEMA, "dataset": dataset, "data-root": str(root), "files": _dataset_stamp(dataset, root), "spec": [spec.scheme, spec.num_partitions, spec.alpha,
                                                             spec.classes_per_partition, spec.seed],
        "partition-id": partition_id, "cap": cap, "seed": seed,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return Path(cache_dir).expanduser() / f"{dataset}-p{partition_id}-{digest}.safetensors"


def read_cached(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(images, labels)`` from a cache file, or ``None`` when it is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        images, labels = tensors["images"], tensors["labels"]
    except (SafetensorError, OSError, KeyError) as err:
        _LOG.warning("ignoring the unreadable client cache %s (%s); it is rewritten", path, err)
        return None
    if images.dtype != torch.float32 or labels.dtype != torch.int64 or images.shape[0] != labels.shape[0]:
        _LOG.warning("ignoring the client cache %s (unexpected tensors); it is rewritten", path)
        return None
    return images, labels


def write_cached(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write the cache file atomically (mode 600); a folder that cannot be written only logs a warning."""
    try:
        write_atomic(path, save({"images": images.contiguous(), "labels": labels.contiguous()}), mode=0o600)
    except OSError as err:
        _LOG.warning("cannot write the client cache %s (%s): every message reads the dataset again", path, err)
