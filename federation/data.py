"""Datasets as in-memory tensors: torchvision MNIST, Fashion-MNIST and CIFAR-10.

The data root comes from ``--data-dir`` (config key ``data-dir``), else the environment variable
``DPPT_DATA``, else a per-user cache folder. torchvision finds verified files there and skips the
download; when the files are missing and the download fails (no internet) we stop with one line
naming the folder, the files expected and the flag.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from federation.errors import DataError

ENV_DATA_DIR = "DPPT_DATA"



@dataclass(frozen=True)
class DatasetInfo:
    name: str
    torchvision_class: str
    folder: str
    files: tuple[str, ...]
    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST", "MNIST/raw", _MNIST_FILES, 1, 28, 10, (0.1307,), (0.3081,)),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "FashionMNIST", "FashionMNIST/raw", _MNIST_FILES, 1, 28, 10, (0.2860,), (0.3530,)
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        "CIFAR10",
        "cifar-10-batches-py",
        ("cifar-10-python.tar.gz (or the extracted cifar-10-batches-py/ folder)",),
        3,
        32,
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError as err:
        raise DataError(f"dataset must be one of {', '.join(DATASETS)}. Found '{name}'.") from err


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``data_dir`` if given, else ``$DPPT_DATA``, else ``$XDG_CACHE_HOME/dppt/data`` (``~/.cache/dppt/data``)."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "dppt" / "data"


def load_tensors(
    name: str, *, data_dir: str | os.PathLike[str] | None = None, train: bool, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a whole split as ``(images float32 (N, C, H, W) normalised, labels int64 (N,))``.

    Cached per process: clients of one simulation worker share one copy.
    """
    root = resolve_data_dir(data_dir)
    return _load_cached(name, str(root), train, download)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    info = dataset_info(name)
    import torchvision  # local: keeps `dppt --help` fast

    cls = getattr(torchvision.datasets, info.torchvision_class)
    where = Path(root) / info.folder
    missing_msg = (
        f"{info.name} files not found in '{where}' and the download failed"
        f" (expected {', '.join(info.files)}). Put them there or pass --data-dir DIR"
        f" (or set {ENV_DATA_DIR}) pointing at a folder that holds {info.folder}/."
    )
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"Data folder '{root}' cannot be created ({err.strerror}). Pass --data-dir DIR.") from err
    try:
        ds = cls(root, train=train, download=download)
    except RuntimeError as err:
        # torchvision raises RuntimeError("Dataset not found...") when download=False and files are missing,
        # and wraps failed mirrors in RuntimeError("Error downloading ...").
        raise DataError(missing_msg) from err
    except OSError as err:  # URLError, socket errors, permission errors
        raise DataError(missing_msg) from err
    data = ds.data
    images = torch.as_tensor(data) if not isinstance(data, torch.Tensor) else data
    if images.ndim == 3:  # MNIST-style (N, H, W) uint8
        images = images.unsqueeze(1)
    else:  # CIFAR (N, H, W, C) uint8
        images = images.permute(0, 3, 1, 2)
    images = images.to(torch.float32).div_(255.0)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    images = ((images - mean) / std).contiguous()
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return images, labels


def load_labels(name: str, *, data_dir: str | os.PathLike[str] | None = None, train: bool = True) -> torch.Tensor:
    """Labels only (for partitioning and partition reports)."""
    return load_tensors(name, data_dir=data_dir, train=train)[1]
