"""A client's own data, found through ``node_config``: a partition of the training set, or its own images.

Two ways to give a node its data (``--node-config`` of a SuperNode, or the Simulation Engine's
per-node config):

- ``partition-id=N num-partitions=M [data-dir=DIR] [cache-dir=DIR]``: partition ``N`` of the shared
  training set (:mod:`federation.partitions`), as in simulation; with ``cache-dir`` the node keeps
  its examples there after the first message (:mod:`federation.client_cache`).
- ``image-dir=DIR client-id=NAME``: the device's own labelled images (:mod:`federation.image_folder`).
  The node must name itself: the privacy ledger charges its releases under that id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from federation.config import Config, ConfigError
from federation.data import dataset_info, load_tensors, resolve_data_dir
from federation.client_cache import cache_file, read_cached, write_cached
from federation.image_folder import load_image_folder
from federation.messages import (
    NODE_CACHE_DIR,
    NODE_CLIENT_ID,
    NODE_DATA_DIR,
    NODE_IMAGE_DIR,
    NODE_NUM_PARTITIONS,
    NODE_PARTITION_ID,
)
from federation.partitions import PartitionSpec, client_indices

__all__ = [
    "ClientData",
    "load_client_data",
    "node_image_dir",
    "node_partition",
    "partition_spec",
    "require_client_id",
]


@dataclass(frozen=True, kw_only=True)
class ClientData:
    """The examples one node trains, scores and evaluates on."""

    images: torch.Tensor = field(metadata={"help": "float32 (N, C, H, W), normalised as federation.data"})
    labels: torch.Tensor = field(metadata={"help": "int64 (N,)"})
    source: str = field(metadata={"help": "where they come from, e.g. 'partition 0 of 3 in /data'"})
    seed_key: int = field(
        metadata={"help": "separates this node's seeds from other nodes': the partition id, or a hash of the client-id"}
    )

    @property
    def num_examples(self) -> int:
        return int(self.labels.shape[0])


def partition_spec(config: Config, num_partitions: int | None = None) -> PartitionSpec:
    return PartitionSpec(
        scheme=config.partition,
        num_partitions=num_partitions or config.num_clients,
        alpha=config.alpha,
        classes_per_partition=config.classes_per_client,
        seed=config.seed,
    )


def node_image_dir(node_config: Mapping[str, Any]) -> str | None:
    """The node's ``image-dir`` (``None`` when absent or empty), refused together with a partition.

    Raises
    ------
    ConfigError
        If ``image-dir`` comes with ``partition-id`` or ``num-partitions`` (two data sources).
    """
    image_dir = str(node_config.get(NODE_IMAGE_DIR, "") or "").strip()
    if not image_dir:
        return None
    clash = [key for key in (NODE_PARTITION_ID, NODE_NUM_PARTITIONS) if key in node_config]
    if clash:
        given = " and ".join(f"{key}={node_config[key]}" for key in clash)
        raise ConfigError(
            f"node_config must give either {NODE_IMAGE_DIR} or {NODE_PARTITION_ID}, not both. Found"
            f" {NODE_IMAGE_DIR}='{image_dir}' with {given}: drop {' and '.join(clash)} to use the image folder,"
            f" or drop {NODE_IMAGE_DIR} to use the partition."
        )
    return image_dir


def require_client_id(node_config: Mapping[str, Any]) -> str:
    """The ``client-id`` an image-folder node must give (not checked against the id pattern here).

    Raises
    ------
    ConfigError
        If it is missing or empty.
    """
    value = str(node_config[NODE_CLIENT_ID]).strip() if NODE_CLIENT_ID in node_config else ""
    if not value:
        raise ConfigError(
            f"{NODE_CLIENT_ID} must be set when {NODE_IMAGE_DIR} is given (the privacy ledger charges this node's"
            f" releases under it; a made-up id would reset its budget at every restart). Found none: start the"
            f" SuperNode with --node-config \"{NODE_IMAGE_DIR}=DIR {NODE_CLIENT_ID}=NAME\" and keep NAME the same."
        )
    return value


def node_partition(node_config: Mapping[str, Any], config: Config) -> tuple[int, int, str]:
    """``(partition_id, num_partitions, data_dir)`` of this node, checked against the run config."""
    if NODE_PARTITION_ID not in node_config:
        raise ConfigError(
            f"node_config has no '{NODE_PARTITION_ID}'. Start the SuperNode with"
            f" --node-config \"{NODE_PARTITION_ID}=N {NODE_NUM_PARTITIONS}=M\""
            f" (or \"{NODE_IMAGE_DIR}=DIR {NODE_CLIENT_ID}=NAME\" to use the device's own images)."
        )
    pid = int(node_config[NODE_PARTITION_ID])
    num = int(node_config.get(NODE_NUM_PARTITIONS, config.num_clients))
    if num != config.num_clients:
        raise ConfigError(
            f"num-partitions of this node must equal the run's num-clients ({config.num_clients}). Found {num}."
        )
    data_dir = str(node_config.get(NODE_DATA_DIR, "") or config.data_dir)
    return pid, num, data_dir


def _seed_key(client_id: str) -> int:
    """A stable 63-bit integer of the client id (distinct nodes draw distinct seeds)."""
    return int.from_bytes(hashlib.sha256(client_id.encode()).digest()[:8], "big") >> 1


def load_client_data(node_config: Mapping[str, Any], config: Config) -> ClientData:
    """This node's examples: its image folder when ``image-dir`` is set, else its partition.

    Both are capped at ``max-examples-per-client`` by a seeded uniform subset (the run's ``seed``),
    the same subset every round.

    Raises
    ------
    ConfigError
        If ``node_config`` is incomplete or inconsistent (see :func:`node_image_dir`,
        :func:`require_client_id`, :func:`node_partition`).
    federation.data.DataError
        If the dataset or the image folder cannot be read.
    federation.partitions.PartitionError
        If the partition cannot be built or the partition id is out of range.
    """
    image_dir = node_image_dir(node_config)
    if image_dir is not None:
        client_id = require_client_id(node_config)
        images, labels = load_image_folder(
            image_dir, dataset_info(config.dataset), cap=config.max_examples_per_client, seed=config.seed
        )
        source = f"image folder {Path(image_dir).expanduser().resolve()}"
        return ClientData(images=images, labels=labels, source=source, seed_key=_seed_key(client_id))
    pid, num, data_dir = node_partition(node_config, config)
    spec = partition_spec(config, num)
    source = f"partition {pid} of {num} in {resolve_data_dir(data_dir)}"
    cache_dir = str(node_config.get(NODE_CACHE_DIR, "") or "").strip()

    def cached_at() -> Path:
        return cache_file(cache_dir, dataset=config.dataset, data_dir=data_dir, spec=spec, partition_id=pid,
                          cap=config.max_examples_per_client, seed=config.seed)

    if cache_dir:  # a fresh process per message on a real SuperNode: read only this node's examples
        cached = read_cached(cached_at())
        if cached is not None:
            return ClientData(images=cached[0], labels=cached[1], source=f"{source} (cached)", seed_key=pid)
    images, labels = load_tensors(config.dataset, data_dir=data_dir, train=True)
    idx = client_indices(labels.numpy(), spec, pid, cap=config.max_examples_per_client, seed=config.seed)
    index = torch.from_numpy(np.asarray(idx))
    data = ClientData(images=images[index], labels=labels[index], source=source, seed_key=pid)
    if cache_dir:  # keyed after loading: torchvision may have just downloaded the dataset's files
        write_cached(cached_at(), data.images, data.labels)
    return data
