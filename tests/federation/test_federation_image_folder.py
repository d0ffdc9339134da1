"""A device's own images (image-dir): layout, conversion to the dataset's tensors, cap, errors, node config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from federation.client_data import load_client_data
from federation.config import Config, ConfigError
from federation.data import DataError, dataset_info, load_tensors, read_idx_images
from federation.image_folder import class_folders, list_images, load_image_folder, read_image

MNIST = dataset_info("mnist")
CIFAR = dataset_info("cifar10")


def _save(path: Path, image: Image.Image, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _mixed_folder(root: Path) -> Path:
    """3 classes x 4 images of different sizes, modes and formats (PNG L/RGB/RGBA/P, JPEG, BMP, 16-bit)."""
    rng = np.random.default_rng(0)

    def pixels(h: int, w: int, *channels: int) -> np.ndarray:
        return rng.integers(0, 256, size=(h, w, *channels), dtype=np.uint8)

    for label in ("0", "3", "7"):
        folder = root / label
        _save(folder / "a_gray.png", Image.fromarray(pixels(28, 28), "L"))
        _save(folder / "b_rgba.png", Image.fromarray(pixels(40, 31, 4), "RGBA"))
        _save(folder / "c_photo.jpg", Image.fromarray(pixels(64, 48, 3), "RGB"), quality=90)
        _save(folder / "sub" / "d_palette.bmp", Image.fromarray(pixels(12, 20, 3), "RGB").convert("P"))
    _save(root / "7" / "e_wide.png", Image.fromarray(pixels(28, 28).astype(np.uint16) * 257))
    return root


def _normalised(pixels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(H, W, C) uint8 -> (C, H, W), as load_tensors scales and normalises."""
    x = torch.from_numpy(pixels).permute(2, 0, 1).to(torch.float32).div(255.0)
    return (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


def test_mixed_images_become_normalised_tensors_of_the_dataset_shape(tmp_path):
    images, labels = load_image_folder(_mixed_folder(tmp_path / "imgs"), MNIST, cap=None, seed=0)
    assert images.dtype == torch.float32 and images.shape == (13, 1, 28, 28) and images.is_contiguous()
    assert labels.dtype == torch.int64 and labels.tolist() == [0] * 4 + [3] * 4 + [7] * 5
    low, high = (0 - MNIST.mean[0]) / MNIST.std[0], (1 - MNIST.mean[0]) / MNIST.std[0]
    assert torch.isfinite(images).all() and images.min() >= low - 1e-6 and images.max() <= high + 1e-6
    rgb, _ = load_image_folder(tmp_path / "imgs", CIFAR, cap=None, seed=0)
    assert rgb.shape == (13, 3, 32, 32)


def test_a_real_mnist_training_image_round_trips_through_png(tmp_path, data_dir):
    reference, ref_labels = load_tensors("mnist", data_dir=data_dir, train=True)
    pixels = read_idx_images(data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz", size=28)  # their uint8 pixels
    chosen = np.arange(0, 600, 20)  # 30 images of several classes
    for i in chosen:
        label = int(ref_labels[i])
        _save(tmp_path / "imgs" / str(label) / f"{i:05d}.png", Image.fromarray(pixels[i], "L"))
    images, labels = load_image_folder(tmp_path / "imgs", MNIST, cap=None, seed=0)
    order = sorted(chosen, key=lambda i: (int(ref_labels[i]), i))  # by class, then file name
    index = torch.as_tensor(order)
    assert torch.equal(labels, ref_labels[index])
    assert torch.allclose(images, reference[index], rtol=0, atol=1e-6)


def test_rgb_pixels_are_scaled_and_normalised_per_channel(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    _save(tmp_path / "imgs" / "bird" / "x.png", Image.fromarray(pixels, "RGB"))
    images, labels = load_image_folder(tmp_path / "imgs", CIFAR, cap=None, seed=0)
    assert labels.tolist() == [2]
    assert torch.allclose(images[0], _normalised(pixels, CIFAR.mean, CIFAR.std), rtol=0, atol=1e-6)


def test_grey_images_are_repeated_over_rgb_and_colour_is_greyed_for_mnist(tmp_path):
    grey = np.full((32, 32), 200, dtype=np.uint8)
    colour = np.zeros((28, 28, 3), dtype=np.uint8)
    colour[..., 1] = 255  # pure green: luminance 0.587 * 255 (ITU-R 601-2, as PIL's L conversion)
    rgb = read_image(_save(tmp_path / "g.png", Image.fromarray(grey, "L")), CIFAR)
    assert rgb.shape == (32, 32, 3) and (rgb == 200).all()
    luma = read_image(_save(tmp_path / "c.png", Image.fromarray(colour, "RGB")), MNIST)
    assert luma.shape == (28, 28, 1) and (luma == 150).all()


def test_other_sizes_are_stretched_to_the_dataset_size(tmp_path):
    stripes = np.zeros((10, 60), dtype=np.uint8)
    stripes[:, :30] = 255  # left half white
    array = read_image(_save(tmp_path / "s.png", Image.fromarray(stripes, "L")), MNIST)[..., 0]
    assert array.shape == (28, 28)
    assert (array[:, :13] == 255).all() and (array[:, 15:] == 0).all()  # stretched, not cropped


def test_exif_orientation_is_applied(tmp_path):
    stripes = np.zeros((14, 28), dtype=np.uint8)
    stripes[:, :14] = 255  # left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the white half ends up on top
    array = read_image(_save(tmp_path / "r.png", Image.fromarray(stripes, "L"), exif=exif), MNIST)[..., 0]
    assert array[:12].min() == 255 and array[16:].max() == 0


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    wide = np.array([[0, 128 * 257, 65535]] * 28, dtype=np.uint16).repeat(10, axis=1)[:, :28]
    array = read_image(_save(tmp_path / "w.png", Image.fromarray(wide)), MNIST)[..., 0]
    assert set(np.unique(array).tolist()) == {0, 128, 255}


def test_class_names_are_accepted_where_the_dataset_has_them(tmp_path):
    for name in ("airplane", "Truck"):
        _save(tmp_path / "cifar" / name / "x.png", Image.new("RGB", (32, 32)))
    for name in ("ankle_boot", "T-shirt top"):
        _save(tmp_path / "fashion" / name / "x.png", Image.new("L", (28, 28)))
    assert list(class_folders(tmp_path / "cifar", CIFAR)) == [0, 9]
    assert list(class_folders(tmp_path / "fashion", dataset_info("fashion-mnist"))) == [0, 9]
    with pytest.raises(DataError, match="must be named a class index 0..9. Found '(Truck|airplane)'"):
        class_folders(tmp_path / "cifar", MNIST)


def test_hidden_entries_and_non_image_files_are_skipped(tmp_path):
    root = tmp_path / "imgs"
    _save(root / "1" / "x.png", Image.new("L", (28, 28)))
    _save(root / "1" / ".hidden.png", Image.new("L", (28, 28)))
    _save(root / "1" / ".thumbs" / "y.png", Image.new("L", (28, 28)))
    _save(root / ".ipynb_checkpoints" / "z.png", Image.new("L", (28, 28)))
    (root / "1" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("files at the top are not classes")
    files, labels = list_images(root, MNIST)
    assert [f.name for f in files] == ["x.png"] and labels.tolist() == [1]


def test_the_cap_is_a_seeded_subset(tmp_path):
    root = _mixed_folder(tmp_path / "imgs")
    full, full_labels = load_image_folder(root, MNIST, cap=None, seed=0)
    assert torch.equal(load_image_folder(root, MNIST, cap=0, seed=0)[0], full)
    first, first_labels = load_image_folder(root, MNIST, cap=5, seed=3)
    again, _ = load_image_folder(root, MNIST, cap=5, seed=3)
    assert first.shape[0] == 5 and torch.equal(first, again)
    # every capped example is one of the full set's, with its label
    match = (first.flatten(1)[:, None, :] == full.flatten(1)[None, :, :]).all(-1)
    rows = match.int().argmax(1)
    assert match.any(1).all() and torch.equal(full_labels[rows], first_labels)
    subsets = {tuple(load_image_folder(root, MNIST, cap=5, seed=s)[1].tolist()) for s in range(6)}
    assert len(subsets) > 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "image-dir must be an existing folder. Found '.*missing'"),
        (lambda root: (root / "x.png").parent.mkdir(parents=True) or Image.new("L", (28, 28)).save(root / "x.png"),
         "must hold one subfolder per class, named 0..9 .* Found no subfolder"),
        (lambda root: (root / "10").mkdir(parents=True), "must be named a class index 0..9. Found '10'"),
        (lambda root: (root / "cats").mkdir(parents=True), "must be named a class index 0..9. Found 'cats'"),
        (lambda root: ((root / "0").mkdir(parents=True), (root / "0" / "a.txt").write_text("x")),
         r"must hold images \(.png.*Found none"),
    ],
    ids=["missing", "no-subfolder", "index-out-of-range", "not-a-class", "no-images"],
)
def test_a_bad_folder_is_refused_with_one_line(tmp_path, make, message):
    root = tmp_path / "missing"
    make(root)
    with pytest.raises(DataError, match=message) as info:
        load_image_folder(root, MNIST, cap=None, seed=0)
    assert "\n" not in str(info.value)


def test_two_folders_for_one_class_are_refused(tmp_path):
    (tmp_path / "0").mkdir()
    (tmp_path / "airplane").mkdir()
    with pytest.raises(DataError, match="one folder .* Found '0' and 'airplane' for class 0"):
        class_folders(tmp_path, CIFAR)


@pytest.mark.parametrize("content", [b"not a png at all", None], ids=["garbage", "truncated"])
def test_an_unreadable_image_is_named(tmp_path, content):
    root = tmp_path / "imgs"
    _save(root / "2" / "good.png", Image.new("L", (28, 28)))
    bad = root / "2" / "broken.png"
    if content is None:
        _save(bad, Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8), "L"))
        content = bad.read_bytes()[:60]
    bad.write_bytes(content)
    with pytest.raises(DataError, match=r"Image file '.*broken\.png' cannot be read") as info:
        load_image_folder(root, MNIST, cap=None, seed=0)
    assert "\n" not in str(info.value)


# --- node config (federation.client_data) -----------------------------------------------------------


def test_an_image_dir_node_loads_its_folder_without_a_partition(tmp_path):
    root = _mixed_folder(tmp_path / "imgs")
    config = Config(max_examples_per_client=10)
    data = load_client_data({"image-dir": str(root), "client-id": "clinic-7"}, config)
    assert data.num_examples == 10 and data.images.shape == (10, 1, 28, 28)
    assert data.source == f"image folder {root.resolve()}"
    other = load_client_data({"image-dir": str(root), "client-id": "clinic-8"}, config)
    again = load_client_data({"image-dir": str(root), "client-id": "clinic-7"}, config)
    assert data.seed_key == again.seed_key != other.seed_key
    assert torch.equal(data.images, again.images)


def test_a_partition_node_still_loads_its_partition(data_dir):
    config = Config(num_clients=3, partition="iid", max_examples_per_client=50, data_dir=str(data_dir))
    data = load_client_data({"partition-id": 2, "num-partitions": 3}, config)
    assert data.seed_key == 2 and data.num_examples == 50
    assert data.source.startswith("partition 2 of 3 in ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"partition-id": 1}, "either image-dir or partition-id, not both.*drop partition-id to use the image folder"),
        ({"partition-id": 1, "num-partitions": 3}, "drop partition-id and num-partitions to use the image folder"),
        ({"num-partitions": 3}, "drop num-partitions to use the image folder, or drop image-dir"),
    ],
)
def test_an_image_dir_with_a_partition_is_refused(tmp_path, extra, message):
    node_config = {"image-dir": str(_mixed_folder(tmp_path / "imgs")), "client-id": "a", **extra}
    with pytest.raises(ConfigError, match=message):
        load_client_data(node_config, Config())


def test_an_image_dir_node_without_client_id_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="client-id must be set when image-dir is given.*client-id=NAME"):
        load_client_data({"image-dir": str(_mixed_folder(tmp_path / "imgs"))}, Config())
