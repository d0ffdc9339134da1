"""The dppt ServerApp: :func:`federation.pipeline.run_pipeline` on the grid it is given.

``dppt simulate`` builds an app around an already-validated config and run directory;
``flwr run .`` (or a real SuperLink) loads ``simulations.flwr_app:app``, which reads the config
once from ``context.run_config`` and also renders the report (the report lives in
``simulations/``, above this package). Both run the same :func:`build_server_app`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from federation.config import Config
from federation.pipeline import run_pipeline
from federation.rundir import RunDirectory

__all__ = ["app", "build_server_app", "new_run_directory"]

Progress = Callable[[str], None]
Finalize = Callable[[RunDirectory], None]


def _print_progress(line: str) -> None:
    print(line, flush=True)


def new_run_directory(config: Config) -> RunDirectory:
    """A fresh ``<out-dir>/<dataset>-<model>-<hash>-<time>`` with ``config.json`` written."""
    out = Path(config.out_dir) / f"{config.dataset}-{config.model}-{config.run_hash()}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = RunDirectory.create(out)
    run_dir.write_config(config.to_dict())
    return run_dir


def build_server_app(
    config: Config | None = None,
    run_dir: RunDirectory | None = None,
    *,
    progress: Progress = _print_progress,
    finalize: Finalize | None = None,
) -> ServerApp:
    """A ServerApp running the whole pipeline.

    Parameters
    ----------
    config, run_dir
        Bound config and run directory; ``None`` = read ``context.run_config`` and create a new
        run directory under ``out-dir`` when the app starts.
    finalize
        Called with the run directory once the pipeline wrote ``summary.json`` (the report).
    """
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        resolved = config if config is not None else Config.from_mapping(dict(context.run_config))
        directory = run_dir if run_dir is not None else new_run_directory(resolved)
        progress(f"dppt: run directory {directory.path}")
        run_pipeline(grid, resolved, directory, progress=progress)
        if finalize is not None:
            finalize(directory)

    return server_app


app = build_server_app()
"""The pipeline without the report; ``simulations.flwr_app:app`` is the one ``flwr run`` loads."""
