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
