"""The run directory: one folder per run with the resolved config, metrics, weights and summary.

Files are written atomically (temporary file + ``os.replace``) or appended line by line and flushed,
so a crash never leaves a half-written JSON file and never loses a line already written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from federation.errors import RunDirError
from federation.layout import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, WEIGHTS_FILE
from storage import jsonable, write_atomic



def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON to ``path`` atomically (:func:`kernels.write_atomic`)."""
    write_atomic(path, (json.dumps(jsonable(payload), indent=2, sort_keys=False) + "\n").encode("utf-8"))


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object file; a missing or malformed file raises `RunDirError` naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise RunDirError(f"'{path}' does not exist. Pass the folder of an earlier dppt run.") from err
    except json.JSONDecodeError as err:
        raise RunDirError(f"'{path}' is not valid JSON ({err.msg} at line {err.lineno}).") from err
    if not isinstance(data, dict):
        raise RunDirError(f"'{path}' must hold a JSON object. Found {type(data).__name__}.")
    return data


class RunDirectory:
    """Owns the files of one run. Create it with `RunDirectory.create` (refuses to overwrite)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.started = time.time()

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, allow_existing: bool = False) -> RunDirectory:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"Run directory '{path}' exists and is not a folder. Pass another --out.")
        if path.is_dir() and any(path.iterdir()) and not allow_existing:
            raise RunDirError(
                f"Run directory '{path}' already holds files of an earlier run. Pass another --out"
                " (nothing there was changed)."
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"Run directory '{path}' cannot be created ({err.strerror}). Pass another --out.") from err
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config: Mapping[str, Any]) -> None:
        write_json_atomic(self.file(CONFIG_FILE), config)

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (flushed, so ``tail -f`` shows progress)."""
        line = json.dumps(jsonable(dict(record)), sort_keys=False)
        with open(self.file(METRICS_FILE), "a") as fh:
            fh.write(line + "\n")
            fh.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.file(METRICS_FILE)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def save_weights(self, state_dict: Mapping[str, Any], name: str = WEIGHTS_FILE) -> Path:
        """Save a plain state dict as safetensors (no pickle), atomically."""
        from safetensors.torch import save

        target = self.file(name)
        write_atomic(target, save({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}))
        return target

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        write_json_atomic(self.file(SUMMARY_FILE), summary)

    def elapsed(self) -> float:
        return time.time() - self.started
