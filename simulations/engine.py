"""Running the ServerApp and ClientApp on Flower's Simulation Engine (Ray backend).

Two places for the ClientApps to run:

- ``ray-address`` empty (the default): a private Ray that Flower starts on this machine, sized by
  its cores. ``address="local"`` keeps it private even when a cluster started by ``ray start``
  runs on the same machine or ``RAY_ADDRESS`` is set (``ray.init()`` would otherwise join it).
- ``ray-address`` set: a running Ray cluster (``ray start --head`` on one machine, ``ray start
  --address=HEAD:PORT`` on the others), which Flower's Ray backend joins through its ``init_args``
  (``ray.init(address=...)``); dppt itself runs on one of the cluster's nodes. The cluster is
  probed first (:func:`join_ray_cluster`), so a bad address fails in one line before a run
  directory is written, and client resources are sized from the cluster's nodes, not this machine.

Why ``flwr.simulation.run_simulation``, which Flower 1.41 marks deprecated: it is the one public
entry point that runs a ServerApp *object* in this process. ``dppt simulate`` binds its ServerApp to
an already-validated :class:`federation.config.Config` and a :class:`federation.rundir.RunDirectory`
created before the run (``federation.server_app.build_server_app(config, run_dir)``), and that
object cannot travel through the supported path. ``flwr run`` builds a FAB from a project folder
and submits it to a SuperLink; the ``flwr-simulation`` process then installs the FAB and loads the
apps by the attribute strings of ``[tool.flwr.app.components]`` (``flwr.simulation.app.
run_simulation_process``), with a run config of plain key/value pairs. That path is supported
too, as ``flwr run .`` (``simulations.flwr_app``), but it cannot take in-process objects, and its
Ray settings come from the federation config, which has no cluster address
(``_run_simulation_settings`` reads ``num_cpus``, ``num_gpus``, ``logging_level`` and
``log_to_driver`` only). ``flwr.simulation._run_simulation``, which both paths call, is not
deprecated but private; ``flwr.simulation.start_simulation`` is the older, also deprecated API.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import warnings
from dataclasses import dataclass
from typing import Any

from federation.config import RAY_ADDRESS_AUTO, RAY_ADDRESS_KEY, Config
from federation.errors import ConfigError

LOCAL_RAY = "local"  # ray.init's word for "start a new local instance, never join one"
PROBE_TIMEOUT_S = 60.0
"""How long joining the cluster may take before the probe gives up (``ray.init`` to an address
where no cluster answers retries for minutes)."""
_START_HINT = "start the cluster first (`ray start --head --port=PORT` on the head, `ray start --address=HEAD:PORT` on" \
              " the other nodes) or leave ray-address empty for a private local Ray"

# The probe runs in a child process: a failed ray.init can leave the driver half connected, and
# the child can be given up on after PROBE_TIMEOUT_S.
_PROBE = """
import json, logging, sys
import ray
ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive") and node.get("Resources")]
print(json.dumps({"address": ray.get_runtime_context().gcs_address, "nodes": len(nodes),
                  "cpus": ray.cluster_resources().get("CPU", 0.0),
                  "largest-node-cpus": max((r.get("CPU", 0.0) for r in nodes), default=0.0),
                  "ray": ray.__version__}))
"""


@dataclass(frozen=True, kw_only=True)
class RayCluster:
    """A running Ray cluster as the probe found it."""

    address: str  # the head's GCS address, as Ray resolved ray-address (auto included)
    nodes: int  # alive nodes with resources
    cpus: float  # ray.cluster_resources()["CPU"], summed over the nodes
    largest_node_cpus: float  # an actor (one client) runs on one node: client-cpus must fit here
    ray_version: str


def join_ray_cluster(address: str, *, timeout: float = PROBE_TIMEOUT_S) -> RayCluster:
    """Connect to the Ray cluster at ``address`` from a child process, read its resources, leave.

    Parameters
    ----------
    address
        ``HOST:PORT`` of the head's GCS, or ``auto`` (``RAY_ADDRESS``, else the cluster ``ray
        start`` last started on this machine).

    Raises
    ------
    ConfigError
        One line naming ``ray-address`` and how to fix it: nothing listens at the address, no
        cluster answers within ``timeout`` s, Ray refuses to join it, or it has no CPU.
    """
    if address != RAY_ADDRESS_AUTO:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
        except OSError as err:
            raise ConfigError(f"{RAY_ADDRESS_KEY} must be the address of a running Ray cluster. Found {address!r}"
                              f" ({err.strerror or err}): {_START_HINT}.") from err
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    except subprocess.TimeoutExpired as err:
        raise ConfigError(f"{RAY_ADDRESS_KEY} must be the address of a running Ray cluster. Found {address!r}"
                          f" (no Ray cluster answered within {timeout:g} s): {_START_HINT}.") from err
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1][:300] if lines else f"exit code {done.returncode}"
        raise ConfigError(f"{RAY_ADDRESS_KEY} must be the address of a running Ray cluster that this node can join."
                          f" Found {address!r} (Ray: {reason}): {_START_HINT}; every node needs the same Ray version.")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    cluster = RayCluster(address=found["address"], nodes=found["nodes"], cpus=float(found["cpus"]),
                         largest_node_cpus=float(found["largest-node-cpus"]), ray_version=found["ray"])
    if cluster.largest_node_cpus <= 0:
        raise ConfigError(f"{RAY_ADDRESS_KEY} must name a Ray cluster with CPUs to run clients on. Found"
                          f" {address!r} ({cluster.nodes} nodes, 0 CPUs): start its nodes with --num-cpus=N.")
    return cluster


def backend_config(config: Config, cluster: RayCluster | None = None) -> dict[str, Any]:
    """Ray settings: one client per ``client-cpus`` cores, no dashboard.

    Without a cluster, a private local Ray sized for this machine (its cores, a small object
    store). With one, Flower's backend joins it (``address``) and takes its resources as they
    are: Ray refuses ``num_cpus`` and ``object_store_memory`` when joining, and ``client-cpus``
    is capped by the largest node's CPUs, since one client's actor runs on one node
    (``flwr.simulation.ray_transport.ray_actor.pool_size_from_resources`` counts actors per node).
    """
    logs = {"logging_level": logging.ERROR, "log_to_driver": True}
    if cluster is not None:
        return {
            "client_resources": {"num_cpus": min(config.client_cpus, cluster.largest_node_cpus), "num_gpus": 0.0},
            "init_args": {"address": cluster.address, "include_dashboard": False, **logs},
        }
    cpus = os.cpu_count() or 1
    return {
        "client_resources": {"num_cpus": min(config.client_cpus, cpus), "num_gpus": 0.0},
        "init_args": {
            "address": LOCAL_RAY,
            "num_cpus": cpus,
            "include_dashboard": False,
            # Ray's default object store takes 30% of RAM; model weights here are a few MB.
            "object_store_memory": 512 * 1024 * 1024,
            **logs,
        },
    }


class _KnownNoise(logging.Filter):
    """Drops Flower's notices that are expected here (we call the deprecated Python API on purpose:
    it is the one that runs a ServerApp bound to an in-process config and run directory; see the
    module docstring)."""

    _PHRASES = ("DEPRECATED FEATURE", "This is a deprecated feature", "entirely in future versions",
                "fraction_evaluate is set to 0.0")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(p in text for p in self._PHRASES)


def run_on_simulation_engine(
    server_app: Any, client_app: Any, config: Config, *, cluster: RayCluster | None = None, verbose: bool = False
) -> None:
    """Run the apps with ``flwr.simulation.run_simulation``, one virtual SuperNode per client.

    ``cluster``: the Ray cluster :func:`join_ray_cluster` found at ``config.ray_address`` (required
    when it is set); ``None`` = a private local Ray.
    """
    if config.ray_address and cluster is None:
        raise ConfigError(f"{RAY_ADDRESS_KEY} is set ({config.ray_address!r}) but the cluster was not probed:"
                          " call simulations.engine.join_ray_cluster first.")
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
            backend_config=backend_config(config, cluster),
            verbose_logging=verbose,
        )
