"""Datasets as in-memory tensors: MNIST, Fashion-MNIST and CIFAR-10.

The data root comes from ``--data-dir`` (config key ``data-dir``), else the environment variable
``DPPT_DATA``, else a per-user cache folder.

MNIST and Fashion-MNIST are read straight from the canonical ``.gz`` files (torchvision's layout,
``<root>/MNIST/raw/*.gz`` and ``<root>/FashionMNIST/raw/*.gz``; the root may also be the
``MNIST/`` or ``MNIST/raw/`` folder itself). They are decompressed in memory and nothing is
written next to them, so the folder may be read-only. When the files are missing, torchvision
downloads them into the root (which must then be writable); when that fails too (no internet) we
stop with one line naming the folder, the files expected and the flag. CIFAR-10 goes through
torchvision as it ships (its download or an extracted ``cifar-10-batches-py/``).
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import torch

from federation.errors import DataError

ENV_DATA_DIR = "DPPT_DATA"

_IDX_UBYTE_IMAGES: Final = 0x00000803  # IDX magic: unsigned bytes, 3 dimensions (N, rows, cols)
_IDX_UBYTE_LABELS: Final = 0x00000801  # IDX magic: unsigned bytes, 1 dimension (N,)


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

    @property
    def is_idx(self) -> bool:
        """Whether the dataset ships as the four IDX ``.gz`` files of MNIST."""
        return self.files == _MNIST_FILES


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


def dataset_folder(name: str, root: str | os.PathLike[str]) -> Path:
    """The folder that holds (or will hold) a dataset's files under the data root ``root``.

    ``<root>/MNIST/raw`` for MNIST (torchvision's layout). A root that is itself the dataset's
    folder (``.../MNIST`` or ``.../MNIST/raw``, holding the ``.gz`` files) is accepted too: the
    folder names say which dataset it is, whereas a flat folder of MNIST-named files could hold
    either MNIST or Fashion-MNIST and is not guessed at.
    """
    info = dataset_info(name)
    root = Path(root)
    nested = root / info.folder
    if info.is_idx and not nested.is_dir():
        if root.name == "raw" and root.parent.name == info.torchvision_class:
            return root
        if root.name == info.torchvision_class and (root / "raw").is_dir():
            return root / "raw"
    return nested


def load_tensors(
    name: str, *, data_dir: str | os.PathLike[str] | None = None, train: bool, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a whole split as ``(images float32 (N, C, H, W) normalised, labels int64 (N,))``.

    Cached per process: clients of one simulation worker share one copy.

    Raises
    ------
    DataError
        If the files are missing and cannot be downloaded, or a file is not a valid IDX file.
    """
    root = resolve_data_dir(data_dir)
    return _load_cached(name, str(root), train, download)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    info = dataset_info(name)
    if info.is_idx:
        folder = dataset_folder(name, root)
        split = "train" if train else "t10k"
        files = folder / f"{split}-images-idx3-ubyte.gz", folder / f"{split}-labels-idx1-ubyte.gz"
        if not all(file.is_file() for file in files):
            _download(info, root, train=train, download=download, where=folder)
            folder = dataset_folder(name, root)
            files = folder / files[0].name, folder / files[1].name
        images = torch.from_numpy(read_idx_images(files[0], size=info.image_size)).unsqueeze(1)
        labels = torch.from_numpy(read_idx_labels(files[1], num_classes=info.num_classes)).to(torch.int64)
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"'{files[0]}' and '{files[1]}' must hold as many images as labels. Found {images.shape[0]}"
                f" and {labels.shape[0]}. Replace them with the canonical files."
            )
    else:
        ds = _download(info, root, train=train, download=download, where=Path(root) / info.folder)
        images = torch.as_tensor(ds.data).permute(0, 3, 1, 2)  # CIFAR (N, H, W, C) uint8
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    images = images.to(torch.float32).div_(255.0)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    images = ((images - mean) / std).contiguous()
    return images, labels


def _download(info: DatasetInfo, root: str, *, train: bool, download: bool, where: Path) -> object:
    """torchvision's dataset object for ``info`` under ``root``, downloading the files if allowed."""
    import torchvision  # local: keeps `dppt --help` fast

    missing_msg = (
        f"{info.name} files not found in '{where}' and the download failed"
        f" (expected {', '.join(info.files)}). Put them there or pass --data-dir DIR"
        f" (or set {ENV_DATA_DIR}) pointing at a folder that holds {info.folder}/."
    )
    if download:
        try:
            Path(root).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"Data folder '{root}' cannot be created ({err.strerror}). Pass --data-dir DIR.") from err
    cls = getattr(torchvision.datasets, info.torchvision_class)
    try:
        return cls(root, train=train, download=download)
    except RuntimeError as err:
        # torchvision raises RuntimeError("Dataset not found...") when download=False and files are missing,
        # and wraps failed mirrors in RuntimeError("Error downloading ...").
        raise DataError(missing_msg) from err
    except OSError as err:  # URLError, socket errors, a read-only root
        raise DataError(missing_msg) from err


def _read_idx(path: Path, *, magic: int, ndim: int) -> tuple[tuple[int, ...], np.ndarray]:
    """Dimensions and flat ``uint8`` data of a gzip-compressed IDX file, checked against its header."""
    fix = "Replace it with the canonical file (or delete it to download it again)."
    try:
        with gzip.open(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise DataError(f"'{path}' must be a complete gzip file. Found {type(err).__name__}: {err}. {fix}") from err
    header = 4 + 4 * ndim
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        shown = f"0x{found:08x}" if found is not None else f"{len(raw)} bytes"
        raise DataError(f"'{path}' must start with the IDX magic number 0x{magic:08x}. Found {shown}. {fix}")
    if len(raw) < header:
        raise DataError(f"'{path}' must hold a {header}-byte IDX header. Found {len(raw)} bytes. {fix}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataError(
            f"'{path}' must hold {expected} bytes of data after its header (dimensions {dims})."
            f" Found {len(raw) - header}. {fix}"
        )
    # A copy, so torch gets a writable array (frombuffer over bytes is read-only).
    return dims, np.frombuffer(raw, dtype=np.uint8, offset=header).copy()


def read_idx_images(path: str | os.PathLike[str], *, size: int) -> np.ndarray:
    """The images of a gzip-compressed IDX image file as ``uint8 (N, size, size)``.

    Parameters
    ----------
    path
        An ``*-images-idx3-ubyte.gz`` file; it is read, never written or extracted.
    size
        The expected height and width.

    Raises
    ------
    DataError
        If the file is not gzip, not an IDX image file, short, or of other dimensions (one line
        naming the file).
    """
    path = Path(path)
    dims, data = _read_idx(path, magic=_IDX_UBYTE_IMAGES, ndim=3)
    if dims[1:] != (size, size):
        raise DataError(f"'{path}' must hold {size}x{size} images. Found {dims[1]}x{dims[2]}. Replace it"
                        " with the canonical file.")
    return data.reshape(dims)


def read_idx_labels(path: str | os.PathLike[str], *, num_classes: int) -> np.ndarray:
    """The labels of a gzip-compressed IDX label file as ``uint8 (N,)``, each below ``num_classes``.

    Raises
    ------
    DataError
        If the file is not gzip, not an IDX label file, short, or holds a label out of range.
    """
    path = Path(path)
    _, data = _read_idx(path, magic=_IDX_UBYTE_LABELS, ndim=1)
    if data.size and int(data.max()) >= num_classes:
        raise DataError(f"'{path}' must hold labels below {num_classes}. Found {int(data.max())}. Replace it"
                        " with the canonical file.")
    return data
