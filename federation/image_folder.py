"""A device's own labelled images, in the torchvision ImageFolder layout, as dataset tensors.

A SuperNode started with ``--node-config "image-dir=DIR client-id=NAME"`` trains, scores and
evaluates on the images under ``DIR`` instead of a partition of the shared dataset::

    DIR/
      0/  a.png  b.jpg  scans/c.bmp ...     one subfolder per class, named by its index 0..9
      1/  ...                               (CIFAR-10 and Fashion-MNIST also accept the class
      ...                                   name, e.g. "airplane" or "ankle_boot"; see CLASS_NAMES)

Files are found recursively inside each class folder; hidden files and folders (``.name``) and
files whose extension is not an image extension (:data:`IMAGE_EXTENSIONS`) are skipped, as
torchvision's ``ImageFolder`` does. Every image is brought to the form of
:func:`federation.data.load_tensors`: EXIF orientation applied, 16-bit grey scaled to 8 bit,
converted to the dataset's channels (PIL ``"L"`` for MNIST / Fashion-MNIST, ``"RGB"`` for
CIFAR-10; an alpha channel is dropped), resized (bilinear, stretched, no crop) to the dataset's
``image_size`` when it has another size, then scaled to ``[0, 1]`` and normalised with the
dataset's mean and std by the same float32 operations as ``load_tensors``. An MNIST training
image saved as PNG therefore comes back as the very tensor ``load_tensors`` gives.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from federation.data import DataError, DatasetInfo

__all__ = ["CLASS_NAMES", "IMAGE_EXTENSIONS", "class_folders", "list_images", "load_image_folder", "read_image"]

# Extensions read as images (lower case), those of torchvision's ImageFolder plus .gif.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp",
)

# Class names a folder may use instead of the index (torchvision's order). MNIST's classes are the digits.
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


def _name_key(name: str) -> str:
    """Case, spaces and punctuation do not matter: "Ankle boot", "ankle_boot" and "ANKLE-BOOT" match."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _class_of(name: str, info: DatasetInfo) -> int | None:
    if name.isdecimal():
        index = int(name)
        return index if index < info.num_classes else None
    names = {_name_key(n): i for i, n in enumerate(CLASS_NAMES.get(info.name, ()))}
    return names.get(_name_key(name))


def class_folders(root: str | os.PathLike[str], info: DatasetInfo) -> dict[int, Path]:
    """The class folders of ``root``: class index -> folder (hidden entries and plain files skipped).

    Raises
    ------
    DataError
        If ``root`` is not a folder, holds no subfolder, a subfolder names no class of ``info``,
        or two subfolders name the same class.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image-dir must be an existing folder. Found '{root}'.")
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p.name))
    if not subfolders:
        raise DataError(
            f"image-dir must hold one subfolder per class, named 0..{info.num_classes - 1}"
            f" (torchvision ImageFolder layout). Found no subfolder in '{root}'."
        )
    names = CLASS_NAMES.get(info.name, ())
    allowed = f"a class index 0..{info.num_classes - 1}" + (
        f" or a {info.name} class name ({', '.join(names)})" if names else ""
    )
    folders: dict[int, Path] = {}
    for folder in subfolders:
        index = _class_of(folder.name, info)
        if index is None:
            raise DataError(f"Each subfolder of image-dir must be named {allowed}. Found '{folder.name}' in '{root}'.")
        if index in folders:
            raise DataError(
                f"Each class must have one folder in image-dir. Found '{folders[index].name}' and '{folder.name}'"
                f" for class {index} in '{root}'."
            )
        folders[index] = folder
    return dict(sorted(folders.items()))


def list_images(root: str | os.PathLike[str], info: DatasetInfo) -> tuple[list[Path], np.ndarray]:
    """Every image file under the class folders of ``root`` and its label (int64), by class then path.

    Raises
    ------
    DataError
        As :func:`class_folders`, and when no class folder holds an image file.
    """
    files: list[Path] = []
    labels: list[int] = []
    for index, folder in class_folders(root, info).items():
        found: list[Path] = []
        for parent, dirs, names in os.walk(folder, followlinks=True):
            dirs[:] = [d for d in dirs if not _hidden(d)]
            found.extend(
                Path(parent) / n for n in names if not _hidden(n) and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
            )
        found.sort()
        files.extend(found)
        labels.extend([index] * len(found))
    if not files:
        raise DataError(
            f"image-dir must hold images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders."
            f" Found none in '{Path(root).expanduser()}'."
        )
    return files, np.asarray(labels, dtype=np.int64)


def read_image(file: str | os.PathLike[str], info: DatasetInfo) -> np.ndarray:
    """One image as uint8 ``(image_size, image_size, in_channels)``, converted as the module docstring says.

    Raises
    ------
    DataError
        If the file cannot be opened or decoded as an image (the message names the file).
    """
    from PIL import Image, ImageOps  # local: torchvision's dependency, needed only by image-folder nodes

    mode = "L" if info.in_channels == 1 else "RGB"
    size = (info.image_size, info.image_size)
    try:
        with Image.open(file) as opened:
            opened.load()
            img = ImageOps.exif_transpose(opened)
            if img.mode == "I" or img.mode.startswith("I;16"):
                # 16-bit grey: PIL's convert("L") would clip at 255 instead of scaling.
                wide = np.asarray(img, dtype=np.int64)
                img = Image.fromarray(((np.clip(wide, 0, 65535) + 128) // 257).astype(np.uint8), "L")
            elif img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")  # PIL warns when a palette image with transparency goes straight to L/RGB
            if img.mode != mode:
                img = img.convert(mode)
            if img.size != size:
                img = img.resize(size, Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise DataError(f"Image file '{file}' cannot be read ({reason}). Remove or replace it.") from err
    return array.reshape(info.image_size, info.image_size, info.in_channels)


def load_image_folder(
    path: str | os.PathLike[str], info: DatasetInfo, *, cap: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A folder of labelled images as ``(images float32 (N, C, H, W) normalised, labels int64 (N,))``.

    Parameters
    ----------
    path
        The ImageFolder root (one subfolder per class).
    info
        The run's dataset: channels, image size, number of classes, mean and std.
    cap
        At most this many examples (a seeded uniform subset, chosen before any file is decoded);
        ``None`` or 0 = every image.
    seed
        Seed of that subset (the run's ``seed``): the same subset every round.

    Raises
    ------
    DataError
        For a missing folder, a bad layout, no images, or an unreadable image file.
    """
    if cap is not None and cap < 0:
        raise DataError(f"cap must be None, 0 or a positive int. Found {cap}.")
    files, labels = list_images(path, info)
    if cap and len(files) > cap:
        chosen = np.sort(np.random.default_rng(seed).choice(len(files), size=cap, replace=False))
        files, labels = [files[int(i)] for i in chosen], labels[chosen]
    stacked = np.stack([read_image(file, info) for file in files])  # (N, H, W, C) uint8
    # The same float32 operations as federation.data.load_tensors, so equal pixels give equal tensors.
    images = torch.from_numpy(stacked).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    images = ((images - mean) / std).contiguous()
    return images, torch.from_numpy(labels)
