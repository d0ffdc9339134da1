import gzip
import shutil
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from federation import data as data_mod
from federation.data import DataError, load_tensors, resolve_data_dir


def test_loads_mnist_and_fashion_from_offline_copy(data_dir):
    x, y = load_tensors("mnist", data_dir=data_dir, train=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (10000,) and y.dtype == torch.int64 and int(y.max()) == 9
    assert abs(float(x.mean())) < 0.1  # normalised
    xf, _ = load_tensors("fashion-mnist", data_dir=data_dir, train=False)
    assert xf.shape == (10000, 1, 28, 28)


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("DPPT_DATA", str(tmp_path / "env"))
    assert str(resolve_data_dir("/flag")) == "/flag"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("DPPT_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir(None) == tmp_path / "cache" / "dppt" / "data"


def test_missing_files_without_download_name_folder_files_and_flag(tmp_path):
    with pytest.raises(DataError) as info:
        load_tensors("fashion-mnist", data_dir=tmp_path, train=True, download=False)
    msg = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "--data-dir" in msg and "\n" not in msg


def test_failed_download_is_reported_as_one_line(tmp_path, monkeypatch):
    """The real download path runs; the network failure it meets is turned into the one-line message."""
    import torchvision

    def refuse(*args, **kwargs):
        raise URLError("Network is unreachable")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive",
                        lambda *a, **k: refuse(), raising=True)
    data_mod._load_cached.cache_clear()
    with pytest.raises(DataError, match="download failed"):
        load_tensors("mnist", data_dir=tmp_path, train=False, download=True)


def _read_only_copy(source: Path, target: Path) -> Path:
    """A copy of MNIST/raw with every file and folder read-only (as on a shared mount)."""
    raw = target / "MNIST" / "raw"
    shutil.copytree(source / "MNIST" / "raw", raw)
    for path in [*raw.iterdir(), raw, raw.parent, target]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return raw


def _listing(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_a_read_only_folder_of_gz_files_gives_torchvisions_tensors_and_stays_untouched(data_dir, tmp_path):
    """The IDX files are decoded in memory: nothing is extracted, and the tensors are torchvision's."""
    import torchvision

    root = tmp_path / "ro"
    root.mkdir()
    raw = _read_only_copy(data_dir, root)
    before = _listing(root)
    try:
        for train in (True, False):
            data_mod._load_cached.cache_clear()
            images, labels = load_tensors("mnist", data_dir=root, train=train, download=False)
            writable = tmp_path / f"tv-{train}"
            shutil.copytree(data_dir / "MNIST", writable / "MNIST")
            reference = torchvision.datasets.MNIST(writable, train=train, download=True)  # verifies, extracts
            expected = (reference.data.unsqueeze(1).to(torch.float32) / 255.0 - 0.1307) / 0.3081
            assert images.dtype == torch.float32 and labels.dtype == torch.int64
            assert torch.equal(images, expected.contiguous())
            assert torch.equal(labels, torch.as_tensor(reference.targets, dtype=torch.int64))
        # The root may also be the raw folder itself.
        data_mod._load_cached.cache_clear()
        assert torch.equal(load_tensors("mnist", data_dir=raw, train=False)[1], labels)
        assert _listing(root) == before
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def _broken_root(tmp_path: Path, data_dir: Path, name: str, content: bytes) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for file in (data_dir / "MNIST" / "raw").iterdir():
        shutil.copy(file, raw / file.name)
    (raw / name).write_bytes(content)
    return raw / name


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"not gzip at all", "complete gzip file"),
        (None, "complete gzip file"),  # truncated in the middle of the compressed stream
        (gzip.compress(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + bytes(10)), "IDX magic number"),
        (gzip.compress(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(100)),
         "must hold 1568 bytes"),
        (gzip.compress(b"\x00\x00\x08\x03" + (1).to_bytes(4, "big") + (32).to_bytes(4, "big") * 2 + bytes(1024)),
         "28x28"),
    ],
    ids=["garbage", "truncated", "labels-as-images", "short", "wrong-size"],
)
def test_a_bad_image_file_is_one_line_naming_the_file(data_dir, tmp_path, content, reason):
    name = "t10k-images-idx3-ubyte.gz"
    if content is None:
        content = (data_dir / "MNIST" / "raw" / name).read_bytes()[:50_000]
    bad = _broken_root(tmp_path, data_dir, name, content)
    data_mod._load_cached.cache_clear()
    with pytest.raises(DataError) as info:
        load_tensors("mnist", data_dir=tmp_path, train=False, download=False)
    msg = str(info.value)
    assert str(bad) in msg and reason in msg and "\n" not in msg, msg


def test_a_label_out_of_range_is_refused(data_dir, tmp_path):
    bad = _broken_root(tmp_path, data_dir, "t10k-labels-idx1-ubyte.gz",
                       gzip.compress(b"\x00\x00\x08\x01" + (10000).to_bytes(4, "big") + bytes([12]) * 10000))
    data_mod._load_cached.cache_clear()
    with pytest.raises(DataError, match="labels below 10. Found 12") as info:
        load_tensors("mnist", data_dir=tmp_path, train=False, download=False)
    assert str(bad) in str(info.value)
