"""Shared fixtures. Tests use a writable copy of the offline MNIST / Fashion-MNIST files."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("DPPT_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable copy of ../shared/data (torchvision extracts the .gz files next to them)."""
    source = _shared_data()
    if not (source / "MNIST" / "raw").is_dir():
        pytest.fail(
            f"Offline data not found at {source}. Set DPPT_SHARED_DATA to a folder holding MNIST/raw and"
            " FashionMNIST/raw (the canonical .gz files)."
        )
    target = tmp_path_factory.mktemp("data")
    shutil.copytree(source, target, dirs_exist_ok=True)
    for root, dirs, files in os.walk(target):
        for name in dirs + files:
            p = Path(root) / name
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    return target
