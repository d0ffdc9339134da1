"""Durable appends for the privacy records (ledger, release journal, a device's own log).

``append_durably`` opens with ``O_APPEND``, writes every byte (``os.write`` may write fewer),
``fsync``s, and fsyncs the folder when it created the file: once it returns, the bytes and the
file's name survive a crash.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["append_durably", "fsync_dir", "write_all"]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """``fsync`` a folder, so that a file created or renamed in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write fewer in one call)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def append_durably(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Append ``data`` to ``path`` (created with ``mode`` if absent, folder included) and fsync it."""
    path = Path(path)
    created = not path.exists()
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)
