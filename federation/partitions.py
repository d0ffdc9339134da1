"""Partitions of a training set across clients: IID, Dirichlet(alpha) by label, pathological.

We use flwr-datasets partitioners on a local ``datasets.Dataset`` holding only the example index and
its label (no hub access). Every example ends up in exactly one partition, and the result is a
deterministic function of (scheme, num_partitions, alpha / classes, seed, labels).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from federation.errors import PartitionError



@dataclass(frozen=True, kw_only=True)
class PartitionSpec:
    scheme: str  # "iid" | "dirichlet" | "pathological"
    num_partitions: int
    alpha: float = 0.5
    classes_per_partition: int = 2
    seed: int = 0


def partition_indices(labels: np.ndarray, spec: PartitionSpec) -> list[np.ndarray]:
    """Indices of each partition (sorted int64 arrays), disjoint and covering every example.

    Raises
    ------
    PartitionError
        If there are more partitions than examples, or the scheme cannot honour its settings.
    """
    labels = np.asarray(labels)
    key = (labels.tobytes(), labels.dtype.str, spec)
    return [p.copy() for p in _partition_cached(*key)]


@functools.lru_cache(maxsize=16)
def _partition_cached(label_bytes: bytes, dtype: str, spec: PartitionSpec) -> tuple[np.ndarray, ...]:
    labels = np.frombuffer(label_bytes, dtype=np.dtype(dtype))
    n = labels.shape[0]
    if spec.num_partitions > n:
        raise PartitionError(
            f"num-clients must be at most the number of training examples ({n}). Found {spec.num_partitions}."
        )
    import datasets  # local: heavy import
    from flwr_datasets import partitioner as fp

    table = datasets.Dataset.from_dict({"index": np.arange(n, dtype=np.int64), "label": labels.astype(np.int64)})
    if spec.scheme == "iid":
        # IidPartitioner shards contiguously; a seeded shuffle first makes the shards random.
        table = table.shuffle(seed=spec.seed)
        part = fp.IidPartitioner(num_partitions=spec.num_partitions)
    elif spec.scheme == "dirichlet":
        part = fp.DirichletPartitioner(
            num_partitions=spec.num_partitions,
            partition_by="label",
            alpha=spec.alpha,
            min_partition_size=0,
            self_balancing=False,
            shuffle=True,
            seed=spec.seed,
        )
    elif spec.scheme == "pathological":
        num_classes = int(np.unique(labels).size)
        if spec.classes_per_partition > num_classes:
            raise PartitionError(
                f"classes-per-client must be at most the number of classes ({num_classes})."
                f" Found {spec.classes_per_partition}."
            )
        # "deterministic" gives partition i the classes i, i+1, ..., i+c-1 (mod K): every class is used,
        # hence every example placed, iff num_partitions + c - 1 >= K. The "random" and
        # "first-deterministic" modes of flwr-datasets may leave a class out (and its examples unplaced).
        if spec.num_partitions + spec.classes_per_partition - 1 < num_classes:
            raise PartitionError(
                f"num-clients + classes-per-client - 1 must be at least the number of classes ({num_classes}) so"
                f" that every example has a partition. Found {spec.num_partitions} + {spec.classes_per_partition} - 1."
            )
        part = fp.PathologicalPartitioner(
            num_partitions=spec.num_partitions,
            partition_by="label",
            num_classes_per_partition=spec.classes_per_partition,
            class_assignment_mode="deterministic",
            shuffle=True,
            seed=spec.seed,
        )
    else:
        raise PartitionError(f"partition must be one of iid, dirichlet, pathological. Found '{spec.scheme}'.")
    part.dataset = table
    try:
        out = tuple(
            np.sort(np.asarray(part.load_partition(i)["index"], dtype=np.int64)) for i in range(spec.num_partitions)
        )
    except ValueError as err:
        raise PartitionError(f"Cannot build the {spec.scheme} partition: {err}") from err
    for arr in out:
        arr.setflags(write=False)
    return out


def partition_report(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> dict[str, list]:
    """Sizes and label histograms of each partition (for the run's metrics)."""
    labels = np.asarray(labels)
    return {
        "sizes": [int(p.size) for p in parts],
        "label-histograms": [np.bincount(labels[p], minlength=num_classes).astype(int).tolist() for p in parts],
    }


def client_indices(labels: np.ndarray, spec: PartitionSpec, partition_id: int, *, cap: int = 0, seed: int = 0) -> np.ndarray:
    """The indices of one client's partition, optionally capped to ``cap`` examples (seeded choice)."""
    if not 0 <= partition_id < spec.num_partitions:
        raise PartitionError(
            f"partition-id must be in [0, {spec.num_partitions}). Found {partition_id}."
        )
    idx = partition_indices(labels, spec)[partition_id]
    if cap and idx.size > cap:
        rng = np.random.default_rng([seed, partition_id])
        idx = np.sort(rng.choice(idx, size=cap, replace=False))
    return idx
