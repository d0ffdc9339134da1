"""A client's own data: its partition of the training set, found through ``node_config``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from federation.config import Config, ConfigError
from federation.data import load_tensors
from federation.messages import NODE_DATA_DIR, NODE_NUM_PARTITIONS, NODE_PARTITION_ID
from federation.partitions import PartitionSpec, client_indices


@dataclass(frozen=True)
class ClientData:
    partition_id: int
    images: torch.Tensor
    labels: torch.Tensor

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


def node_partition(node_config: Mapping[str, Any], config: Config) -> tuple[int, int, str]:
    """``(partition_id, num_partitions, data_dir)`` of this node, checked against the run config."""
    if NODE_PARTITION_ID not in node_config:
        raise ConfigError(
            f"node_config has no '{NODE_PARTITION_ID}'. Start the SuperNode with"
            f" --node-config \"{NODE_PARTITION_ID}=N {NODE_NUM_PARTITIONS}=M\"."
        )
    pid = int(node_config[NODE_PARTITION_ID])
    num = int(node_config.get(NODE_NUM_PARTITIONS, config.num_clients))
    if num != config.num_clients:
        raise ConfigError(
            f"num-partitions of this node must equal the run's num-clients ({config.num_clients}). Found {num}."
        )
    data_dir = str(node_config.get(NODE_DATA_DIR, "") or config.data_dir)
    return pid, num, data_dir


def load_client_data(node_config: Mapping[str, Any], config: Config) -> ClientData:
    pid, num, data_dir = node_partition(node_config, config)
    images, labels = load_tensors(config.dataset, data_dir=data_dir, train=True)
    idx = client_indices(
        labels.numpy(), partition_spec(config, num), pid, cap=config.max_examples_per_client, seed=config.seed
    )
    index = torch.from_numpy(np.asarray(idx))
    return ClientData(partition_id=pid, images=images[index], labels=labels[index])
