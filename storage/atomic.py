"""Atomic file writes for every package that writes results (tickets, run files, reports).

A temporary file in the target's folder, fsynced, then ``os.replace``, then (best effort) an
fsync of the folder: a reader sees the old file or the new one, never a part, and a crash never
leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from storage.durable import fsync_dir

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically; the folder is created if needed.

    ``mode`` is the file's permission (``mkstemp`` creates 0600; results are meant to be shared).
    The temporary file is removed on any failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # Persist the rename itself; not every platform lets a folder be opened, hence best effort.
    with contextlib.suppress(OSError):
        fsync_dir(path.parent)
