"""Shared fixtures. Tests read the offline MNIST / Fashion-MNIST ``.gz`` files where they lie."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("DPPT_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of the canonical ``.gz`` files, used in place (it may be read-only).

    ``federation.data`` reads the IDX files straight from the archives and writes nothing there.
    """
    source = _shared_data().resolve()
    if not (source / "MNIST" / "raw").is_dir():
        pytest.fail(
            f"Offline data not found at {source}. Set DPPT_SHARED_DATA to a folder holding MNIST/raw and"
            " FashionMNIST/raw (the canonical .gz files)."
        )
    return source
