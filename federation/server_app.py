"""The dppt ServerApp: :func:`federation.pipeline.run_pipeline` on the grid it is given.

``dppt simulate`` builds an app around an already-validated config and run directory;
``flwr run .`` (or a real SuperLink) loads ``simulations.flwr_app:app``, which reads the config
once from ``context.run_config`` and also renders the report (the report lives in
``simulations/``, above this package). Both run the same :func:`build_server_app`.

Outside the Simulation Engine two things differ, both for the devices' sake: ``reference-search``
defaults to false (:data:`DEPLOYMENT_DEFAULTS`), and ``noise-seed`` is refused
(:func:`check_deployable`), in one line, before a run directory is written. So is ``ray-address``,
which only ``dppt simulate`` can act on (there the Simulation Engine is dppt's own).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from logging import ERROR
from pathlib import Path

from flwr.app import Context
from flwr.common import log
from flwr.serverapp import Grid, ServerApp

from federation.config import NOISE_SEED_KEY, RAY_ADDRESS_KEY, Config, check_names
from federation.errors import ConfigError
from federation.federation_size import SizeCheckedGrid
from federation.layout import CHECKPOINT_FILE, CONFIG_FILE, LEDGER_FILE, SUMMARY_FILE
from federation.pipeline import PipelineError, run_pipeline
from federation.round_progress import ProgressGrid
from federation.rundir import RunDirectory, read_json

__all__ = [
    "DEPLOYMENT_DEFAULTS",
    "DEPLOYMENT_KEYS",
    "RESUME_KEY",
    "build_server_app",
    "check_deployable",
    "config_from_run_config",
    "new_run_directory",
    "resume_target",
]

RESUME_KEY = "resume-dir"
DEPLOYMENT_KEYS = {RESUME_KEY: ""}
"""Run-config keys of the deployed app (``flwr run``) that are not part of a run's config:
``resume-dir`` names the run directory (on the server's machine) of an interrupted run to continue."""
DEPLOYMENT_DEFAULTS = {"reference-search": False}
"""Config keys whose default differs outside the Simulation Engine (``flwr run``, a real SuperLink;
pyproject ``[tool.flwr.app.config]`` holds these values, and a run config without the key gets
them too). ``reference-search``: the non-private reference search reads every client's data
without noise (ε = ∞), a baseline for simulations (``dppt simulate`` keeps ``true``), not for
devices that were promised a guarantee."""

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


def resume_target(path: Path, *, data_dir: str | None = None) -> tuple[RunDirectory, Config]:
    """The run directory of an interrupted run and its own ``config.json`` (``data-dir`` may change).

    Raises
    ------
    PipelineError
        If ``path`` is not a run directory, already finished, or never started a search round.
    """
    path = Path(path)
    if not path.is_dir():
        raise PipelineError(f"resume needs the folder of an earlier run. Found no folder '{path}'.")
    if (path / SUMMARY_FILE).exists():
        raise PipelineError(f"the run in '{path}' already finished ({SUMMARY_FILE} exists); nothing to resume.")
    if not (path / CHECKPOINT_FILE).exists() and not (path / LEDGER_FILE).exists():
        raise PipelineError(f"'{path}' has no {CHECKPOINT_FILE} or {LEDGER_FILE}: it never started a search round."
                            " Start a new run instead.")
    config = Config.from_mapping(read_json(path / CONFIG_FILE))
    if data_dir:
        config = config.replace(data_dir=str(data_dir))
    return RunDirectory.create(path, allow_existing=True), config


def check_deployable(config: Config) -> None:
    """Refuse what only a simulation may do, before anything is written.

    ``noise-seed >= 0`` makes every noise draw reproducible: anyone who knows the seed can remove
    the noise (DESIGN.md 5.5). It is a simulation-only setting (``dppt simulate``). So is
    ``ray-address``: under ``flwr run`` the Simulation Engine (or the SuperNodes) are started by
    Flower, and a key that silently did nothing would let a user believe the run joined a cluster.

    Raises
    ------
    ConfigError
        In one line naming the key.
    """
    if config.noise_seed >= 0:
        raise ConfigError(
            f"{NOISE_SEED_KEY} must be -1 (OS entropy) under flwr run: a seed is simulation-only (dppt simulate),"
            f" since anyone who knows it can remove the noise. Found {config.noise_seed}."
        )
    if config.ray_address:
        raise ConfigError(
            f"{RAY_ADDRESS_KEY} must be empty under flwr run: it joins a Ray cluster for dppt simulate only (Flower"
            f" starts the Simulation Engine of flwr run). Found {config.ray_address!r}."
        )


def config_from_run_config(run_config: Mapping[str, object]) -> Config:
    """The config of a new deployed run: :data:`DEPLOYMENT_DEFAULTS` under ``run_config``, checked.

    Raises
    ------
    ConfigError
        On an unknown key, a bad value or name, or a simulation-only setting (:func:`check_deployable`).
    """
    values = {**DEPLOYMENT_DEFAULTS, **{key: value for key, value in run_config.items() if key not in DEPLOYMENT_KEYS}}
    config = Config.from_mapping(values)
    check_names(config)
    check_deployable(config)
    return config


def _from_run_config(run_config: dict[str, object], progress: Progress) -> tuple[Config, RunDirectory]:
    """Config and run directory from ``context.run_config``: a new run, or ``resume-dir``'s run."""
    resume = str(run_config.get(RESUME_KEY, "") or "").strip()
    if not resume:
        config = config_from_run_config(run_config)  # before the run directory exists: a bad value writes nothing
        return config, new_run_directory(config)
    data_dir = str(run_config.get("data-dir", "") or "") or None
    directory, config = resume_target(Path(resume), data_dir=data_dir)
    check_deployable(config)  # a run started by dppt simulate with a seed does not continue on devices
    progress(f"dppt: resuming {directory.path} with its own {CONFIG_FILE} (other run-config values are ignored)")
    return config, directory


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
        Bound config and run directory; ``None`` = read ``context.run_config`` when the app
        starts: a new run directory under ``out-dir``, or, when ``resume-dir`` is set, that
        interrupted run continued with its own ``config.json`` (only ``data-dir`` may change).
    finalize
        Called with the run directory once the pipeline wrote ``summary.json`` (the report).
    """
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        try:
            if config is None:
                resolved, directory = _from_run_config(dict(context.run_config), progress)
            else:
                resolved, directory = config, run_dir if run_dir is not None else new_run_directory(config)
            progress(f"dppt: run directory {directory.path}")
            # Innermost the progress of long rounds (it replaces Flower's blocking wait), outside it
            # the size check, which must see every batch of replies that send_and_receive returns.
            checked = SizeCheckedGrid(ProgressGrid(grid, progress=progress), num_clients=resolved.num_clients)
            run_pipeline(checked, resolved, directory, progress=progress)
        except ConfigError as err:
            # Flower prints a traceback of whatever ends the ServerApp: say the one line first, and
            # keep the traceback to this frame (the cause is the message, not where it was found).
            log(ERROR, "dppt: %s", err)
            raise ConfigError(str(err)) from None
        if finalize is not None:
            finalize(directory)

    return server_app
