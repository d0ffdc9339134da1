"""A real Flower deployment on this machine: one SuperLink and N SuperNodes as separate processes.

Every process gets a free port, its own ``FLWR_HOME`` and its own log file; all are started in new
process sessions and stopped by process id (SIGTERM, then SIGKILL of the whole group). Secure by
default: TLS with a test CA (:func:`make_test_certificates`), and optionally SuperNode
authentication with registered keys. Insecure mode only when asked for, with a warning.

Commands (Flower 1.41, checked here): ``flower-superlink [--insecure | --ssl-ca-certfile CA
--ssl-certfile CERT --ssl-keyfile KEY] [--enable-supernode-auth] --host H --port P --database DB
--disable-runtime-dependency-installation``; ``flower-supernode [--insecure | --root-certificates
CA] [--auth-supernode-private-key KEY] --superlink H:P --host H --port P2 --node-config "..."``;
``flwr run APP CONNECTION --run-config "..." --format json``; the CLI reads its connections from
``$FLWR_HOME/config.toml``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from federation.messages import NODE_CACHE_DIR, NODE_DATA_DIR, NODE_NUM_PARTITIONS, NODE_PARTITION_ID
from simulations.deploy.certificates import make_node_key, make_test_certificates

__all__ = ["CONNECTION", "DeploymentError", "LocalDeployment", "run_config_arg"]

CONNECTION = "dppt-local"


class DeploymentError(RuntimeError):
    """A process of the deployment did not start, or a run failed (the message names the log file)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_config_arg(values: Mapping[str, Any]) -> str:
    """``--run-config`` text for ``flwr run``: ``key=value`` pairs, strings double-quoted (TOML)."""
    parts = []
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value) if math.isfinite(value) else json.dumps(str(value))
        else:
            text = json.dumps(str(value))
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _processes() -> list[tuple[int, int, int, str]]:
    """``(pid, parent pid, process group, command line)`` of every live process (Linux ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            found.append((int(entry.name), int(fields[1]), int(fields[2]), command))
    return found


def group_processes(group: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every live process in process group ``group``."""
    return [(pid, command) for pid, _, pgid, command in _processes() if pgid == group]


def stop_sessions(processes: list[subprocess.Popen[bytes]], *, grace: float) -> None:
    """SIGTERM each process (each the leader of a session this module started), wait up to ``grace``
    seconds in all, then SIGKILL whatever is left of its process group (the children it started)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.time() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the session's children too
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


class LocalDeployment:
    """SuperLink + SuperNodes on localhost (a context manager that stops everything it started).

    Parameters
    ----------
    work_dir
        Folder for certificates, keys, homes, logs and the SuperLink's state database.
    data_dir
        Dataset root each SuperNode passes to its ClientApp (``data-dir`` of its node config).
    num_partitions
        ``num-partitions`` of every node (the run's ``num-clients``).
    secure
        TLS (default). ``False`` runs insecure and warns.
    authenticate
        SuperNode authentication: only nodes whose public key was registered may join (needs TLS).
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str],
        *,
        data_dir: str | os.PathLike[str],
        num_partitions: int,
        secure: bool = True,
        authenticate: bool = False,
    ) -> None:
        if authenticate and not secure:
            raise DeploymentError("authenticate must be used with TLS (secure=True): Flower refuses it otherwise.")
        if not secure:
            warnings.warn("LocalDeployment runs without TLS: use it only on a trusted machine.", stacklevel=2)
        self.work = Path(work_dir).resolve()
        self.data_dir = Path(data_dir).resolve()
        self.num_partitions = num_partitions
        self.secure, self.authenticate = secure, authenticate
        self.bin = Path(sys.executable).parent
        self.port = 0
        self.link: subprocess.Popen[bytes] | None = None
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.cli_home = self.work / "cli-home"
        self.logs = self.work / "logs"

    # -- processes -----------------------------------------------------------------------------

    def _env(self, home: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(FLWR_HOME=str(home), FLWR_DISABLE_UPDATE_CHECK="1", FLWR_TELEMETRY_ENABLED="0")
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"  # flower-superexec is found on PATH
        return env

    def _spawn(self, name: str, command: list[str], extra_env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        home = self.work / f"home-{name}"
        home.mkdir(parents=True, exist_ok=True)
        env = self._env(home)
        env.update(extra_env or {})
        with (self.logs / f"{name}.log").open("ab") as log:  # appended: a restarted component keeps its history
            return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def flwr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the ``flwr`` CLI against this deployment's connection."""
        return subprocess.run([str(self.bin / "flwr"), *args], env=self._env(self.cli_home), capture_output=True,
                              text=True, timeout=timeout)

    @property
    def certificates(self) -> Path:
        return self.work / "certs"

    def start(self, *, timeout: float = 60) -> None:
        """Start the SuperLink (with a state database) and wait until it answers."""
        self.work.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.port = free_port()
        if self.secure:
            make_test_certificates(self.certificates)
        self.cli_home.mkdir(parents=True, exist_ok=True)
        trust = f'root-certificates = "{self.certificates / "ca.crt"}"' if self.secure else "insecure = true"
        (self.cli_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\n{trust}\n'
        )
        self._start_link(timeout)

    def _start_link(self, timeout: float) -> None:
        if self.secure:
            security = ["--ssl-ca-certfile", str(self.certificates / "ca.crt"), "--ssl-certfile",
                        str(self.certificates / "server.pem"), "--ssl-keyfile", str(self.certificates / "server.key")]
        else:
            security = ["--insecure"]
        if self.authenticate:
            security.append("--enable-supernode-auth")
        self.link = self._spawn("superlink", [
            str(self.bin / "flower-superlink"), *security, "--host", "127.0.0.1", "--port", str(self.port),
            "--database", str(self.work / "state.db"), "--disable-runtime-dependency-installation",
        ])
        self._wait_health(timeout)

    def restart_link(self, *, timeout: float = 60) -> None:
        """Start the SuperLink again on the same port, database and certificates (after :meth:`kill_server`).

        Running SuperNodes reconnect by themselves (Flower 1.41: within seconds, same node ids).
        """
        if self.link is not None and self.link.poll() is None:
            raise DeploymentError("the SuperLink is still running: kill_server() it before restart_link().")
        self._start_link(timeout)

    def server_processes(self) -> list[int]:
        """Process ids of the server side: the SuperLink and every process below it.

        The SuperLink starts ``flower-superexec`` in a session of its own (so a signal to the
        SuperLink's group misses it), and the ServerApp (``flwr-serverapp``) under that.
        """
        if self.link is None or self.link.poll() is not None:
            return []
        table = _processes()
        found = [self.link.pid]
        for pid in found:  # grows while it is walked: children, grandchildren, ...
            found.extend(child for child, parent, _, _ in table if parent == pid and child not in found)
        return found

    def kill_server(self) -> list[int]:
        """SIGKILL the server side at once (SuperLink, SuperExec, ServerApp): a crash of the server machine.

        Returns the killed process ids. SuperNodes are left running.
        """
        pids = self.server_processes()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.link is not None:
            self.link.wait(timeout=30)
        return pids

    def kill_node(self, name: str) -> None:
        """SIGKILL a SuperNode and everything it started (its SuperExec and ClientApp processes)."""
        process = self.nodes[name]
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)

    def node_processes(self, name: str) -> list[tuple[int, str]]:
        """``(pid, command line)`` of a SuperNode's process group (e.g. a running ``flwr-clientapp``)."""
        return group_processes(self.nodes[name].pid)

    def _wait_health(self, timeout: float) -> None:
        import httpx  # installed with flwr

        scheme = "https" if self.secure else "http"
        verify: Any = ssl.create_default_context(cafile=str(self.certificates / "ca.crt")) if self.secure else False
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.link is not None and self.link.poll() is not None:
                raise DeploymentError(f"the SuperLink exited with {self.link.returncode}; see {self.logs / 'superlink.log'}")
            try:
                if httpx.get(f"{scheme}://127.0.0.1:{self.port}/health", verify=verify, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise DeploymentError(f"the SuperLink did not answer in {timeout:.0f} s; see {self.logs / 'superlink.log'}")

    def new_key(self, name: str, *, register: bool = True) -> Path:
        """A SuperNode key pair under ``keys/``, registered with the SuperLink unless ``register=False``."""
        private = self.work / "keys" / name
        public = make_node_key(private)
        if register:
            result = self.flwr("supernode", "register", str(public), CONNECTION, "--format", "json")
            if result.returncode != 0:
                raise DeploymentError(f"registering {public} failed: {(result.stdout + result.stderr).strip()[-300:]}")
        return private

    def start_node(
        self, partition_id: int, *, name: str | None = None, key: Path | None = None,
        env: Mapping[str, str] | None = None, node_config: Mapping[str, Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start one SuperNode for ``partition_id`` (with ``key`` when authentication is on).

        ``env``: extra environment variables of this node's processes (e.g. a ``PATH`` whose first
        folder holds another ``flwr-clientapp``, as the hostile-client test does).
        ``node_config``: more entries of its ``--node-config`` beside the partition's (e.g. the
        device's privacy policy, DESIGN.md 5.4b), written as :func:`run_config_arg` writes them.
        """
        name = name or f"supernode-{partition_id}"
        security = ["--root-certificates", str(self.certificates / "ca.crt")] if self.secure else ["--insecure"]
        if key is not None:
            security += ["--auth-supernode-private-key", str(key)]
        cache = self.work / f"home-{name}" / "client-cache"  # the node's examples, kept between messages
        own = {NODE_PARTITION_ID: partition_id, NODE_NUM_PARTITIONS: self.num_partitions,
               NODE_DATA_DIR: str(self.data_dir), NODE_CACHE_DIR: str(cache)}
        if clash := sorted(set(own) & set(node_config or {})):
            raise DeploymentError(f"node_config must not set {', '.join(clash)}: start_node sets them itself.")
        process = self._spawn(name, [
            str(self.bin / "flower-supernode"), *security, "--superlink", f"127.0.0.1:{self.port}",
            "--host", "127.0.0.1", "--port", str(free_port()), "--node-config",
            run_config_arg({**own, **(node_config or {})}),
        ], env)
        self.nodes[name] = process
        return process

    def online_nodes(self) -> int:
        result = self.flwr("supernode", "ls", CONNECTION, "--format", "json")
        if result.returncode != 0:
            return 0
        return sum(1 for node in json.loads(result.stdout).get("nodes", []) if node.get("status") == "online")

    def wait_for_nodes(self, count: int, *, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while (online := self.online_nodes()) < count:
            if time.time() > deadline:
                raise DeploymentError(f"only {online} of {count} SuperNodes came online; see {self.logs}")
            time.sleep(1)

    # -- runs ----------------------------------------------------------------------------------

    def submit(self, app_dir: str | os.PathLike[str], run_config: Mapping[str, Any]) -> str:
        """``flwr run APP`` with ``run_config``; returns the run id."""
        result = self.flwr("run", str(app_dir), CONNECTION, "--run-config", run_config_arg(run_config),
                           "--format", "json", timeout=300)
        if result.returncode != 0:
            raise DeploymentError(f"flwr run failed: {(result.stdout + result.stderr).strip()[-500:]}")
        return str(json.loads(result.stdout)["run-id"])

    def status(self, run_id: str) -> str:
        result = self.flwr("ls", CONNECTION, "--run-id", run_id, "--format", "json")
        if result.returncode != 0:
            return "unknown"
        return str(json.loads(result.stdout)["runs"][0]["status"])

    def wait(self, run_id: str, *, timeout: float = 600) -> str:
        """Wait until the run finishes; returns its status (``finished:completed`` on success).

        ``flwr run --stream`` exits 0 even when the ServerApp fails, so the status is what counts.
        """
        deadline = time.time() + timeout
        while not (status := self.status(run_id)).startswith("finished"):
            if time.time() > deadline:
                raise DeploymentError(f"run {run_id} did not finish in {timeout:.0f} s (status {status})")
            time.sleep(2)
        return status

    def run_log(self, run_id: str) -> str:
        return self.flwr("log", run_id, CONNECTION, "--show").stdout

    # -- teardown ------------------------------------------------------------------------------

    def stop(self, *, grace: float = 30) -> None:
        """SIGTERM every SuperNode, then the SuperLink; SIGKILL the process group of any that lingers."""
        stop_sessions([*self.nodes.values(), *([self.link] if self.link is not None else [])], grace=grace)

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
