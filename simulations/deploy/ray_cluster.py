"""A Ray cluster of several nodes on this machine, for tests and benchmarks of ``ray-address``.

Each node is ``ray start --block`` in a session of its own: a head (``--head --port=P``) and
workers (``--address=127.0.0.1:P``), each with its own ``--temp-dir`` (so its sockets, logs and
``ray_current_cluster`` file are its own, and a plain ``ray.init()`` elsewhere on the machine never
finds it). Every port the head would otherwise take by default (GCS, Ray Client server, dashboard)
is a free one, so it runs beside other Ray instances. Stopping is by process id: SIGTERM to each
``ray start --block`` (which stops the node's processes), then SIGKILL to whatever is left of its
process group. ``ray stop`` is never used: it stops every Ray process of the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simulations.deploy.local import DeploymentError, free_port, group_processes, stop_sessions

__all__ = ["LocalRayCluster"]

_STARTED = "Ray runtime started."  # what `ray start` prints once the node has joined


class LocalRayCluster:
    """``nodes`` Ray nodes of ``cpus_per_node`` CPUs each on 127.0.0.1 (a context manager).

    Parameters
    ----------
    work_dir
        Folder for the nodes' ``ray start`` logs.
    """

    def __init__(self, work_dir: str | os.PathLike[str], *, nodes: int = 2, cpus_per_node: int = 1) -> None:
        if nodes < 1 or cpus_per_node < 1:
            raise DeploymentError(f"nodes and cpus_per_node must be at least 1. Found {nodes}, {cpus_per_node}.")
        self.work = Path(work_dir).resolve()
        self.logs = self.work / "logs"
        self.num_nodes, self.cpus_per_node = nodes, cpus_per_node
        self.ray = Path(sys.executable).parent / "ray"
        self.port = 0
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.temp_dirs: dict[str, Path] = {}

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` of the head's GCS (what ``ray-address`` takes)."""
        return f"127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 120) -> None:
        """Start the head, then the workers, each waited for until it has joined."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._start_node("head", ["--head", f"--port={self.port}", f"--ray-client-server-port={free_port()}",
                                  "--include-dashboard=false", f"--dashboard-port={free_port()}"], timeout)
        for index in range(1, self.num_nodes):
            self._start_node(f"worker{index}", [f"--address={self.address}"], timeout)

    def _start_node(self, name: str, role: list[str], timeout: float) -> None:
        # Short and outside work_dir: Ray's unix socket paths (temp dir + session + socket) must
        # stay under 107 bytes, which a pytest tmp_path can exceed.
        temp = Path(tempfile.mkdtemp(prefix=f"dppt-ray-{name}-"))
        self.temp_dirs[name] = temp
        log_path = self.logs / f"{name}.log"
        command = [str(self.ray), "start", *role, f"--num-cpus={self.cpus_per_node}", "--node-ip-address=127.0.0.1",
                   f"--temp-dir={temp}", f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats",
                   "--block"]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        with log_path.open("ab") as log:
            self.nodes[name] = process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                          start_new_session=True)
        deadline = time.time() + timeout
        while _STARTED not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.time() > deadline:
                tail = log_path.read_text(errors="replace")[-800:]
                raise DeploymentError(f"Ray node {name} did not start (see {log_path}): {tail}")
            time.sleep(0.5)

    def node_processes(self, name: str) -> list[tuple[int, str]]:
        """``(pid, command line)`` of a node's processes (its ``ray start`` session)."""
        return group_processes(self.nodes[name].pid)

    def node_logs(self, name: str) -> Path:
        """The node's Ray session logs (``session_latest/logs`` under its temp dir)."""
        return self.temp_dirs[name] / "session_latest" / "logs"

    def stop(self, *, grace: float = 30) -> None:
        """Stop the workers, then the head, by process id; remove the nodes' temp dirs."""
        workers = [process for name, process in self.nodes.items() if name != "head"]
        stop_sessions([*workers, *([self.nodes["head"]] if "head" in self.nodes else [])], grace=grace)
        for temp in self.temp_dirs.values():
            shutil.rmtree(temp, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
