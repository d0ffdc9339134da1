"""Running the ServerApp and ClientApp on Flower's Simulation Engine (Ray backend) on this machine."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from federation.config import Config


def backend_config(config: Config) -> dict[str, Any]:
    """Ray settings sized for small machines: one client per ``client-cpus`` cores, no dashboard."""
    cpus = os.cpu_count() or 1
    return {
        "client_resources": {"num_cpus": min(config.client_cpus, cpus), "num_gpus": 0.0},
        "init_args": {
            "num_cpus": cpus,
            "include_dashboard": False,
            # Ray's default object store takes 30% of RAM; model weights here are a few MB.
            "object_store_memory": 512 * 1024 * 1024,
            "logging_level": logging.ERROR,
            "log_to_driver": True,
        },
    }


class _KnownNoise(logging.Filter):
    """Drops Flower's notices that are expected here (we call the deprecated Python API on purpose:
    it is the one that runs a ServerApp bound to an in-process config and run directory)."""

    _PHRASES = ("DEPRECATED FEATURE", "This is a deprecated feature", "entirely in future versions",
                "fraction_evaluate is set to 0.0")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(p in text for p in self._PHRASES)


def run_on_simulation_engine(server_app: Any, client_app: Any, config: Config, *, verbose: bool = False) -> None:
    """Run the apps with ``flwr.simulation.run_simulation``, one virtual SuperNode per client."""
    from flwr.simulation import run_simulation

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    flwr_logger = logging.getLogger("flwr")
    if not any(isinstance(f, _KnownNoise) for f in flwr_logger.filters):
        flwr_logger.addFilter(_KnownNoise())
    if not verbose:
        # Flower logs every round at INFO; our own progress lines say what a user needs.
        logging.getLogger("flwr").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=config.num_clients,
            backend_name="ray",
            backend_config=backend_config(config),
            verbose_logging=verbose,
        )
