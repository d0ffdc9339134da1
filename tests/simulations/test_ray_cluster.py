"""``ray-address``: dppt simulate on a real two-node Ray cluster (head + worker on this machine)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.config import Config, ConfigError
from federation.layout import SUMMARY_FILE
from simulations.cli import main
from simulations.deploy import LocalRayCluster
from simulations.deploy.local import free_port
from simulations.engine import backend_config, join_ray_cluster

from .run_checks import dppt, ledger_epsilon_per_client, missing_run_files, smoke_args


@pytest.mark.parametrize("address", ["", "auto", "127.0.0.1:6379", "head.example.org:1", "[::1]:6379"])
def test_ray_address_accepts_empty_auto_and_host_port(address):
    assert Config(ray_address=address).ray_address == address


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:0", "host:65536", ":6379", "ray://head:10001",
                                     "head :6379", "host:port"])
def test_ray_address_refuses_anything_else_in_one_line(address):
    with pytest.raises(ConfigError) as info:
        Config.from_overrides([f"ray-address={address}"])
    message = str(info.value)
    assert message.startswith("ray-address must be empty (a private local Ray), auto, or HOST:PORT")
    assert "\n" not in message and message.endswith(f"Found {address!r}.")


def test_ray_address_does_not_rename_runs():
    """A resource setting, like client-cpus: the same run on a cluster keeps its name."""
    assert Config(ray_address="127.0.0.1:6379").run_hash() == Config().run_hash()


def test_a_private_ray_never_joins_a_cluster_and_a_cluster_run_takes_its_resources():
    local = backend_config(Config(client_cpus=4.0))
    assert local["init_args"]["address"] == "local"  # not ray.init()'s default: it would join a `ray start` cluster
    from simulations.engine import RayCluster

    cluster = RayCluster(address="10.0.0.1:6379", nodes=3, cpus=24.0, largest_node_cpus=2.0, ray_version="x")
    joined = backend_config(Config(client_cpus=4.0, ray_address="10.0.0.1:6379"), cluster)
    assert joined["init_args"]["address"] == "10.0.0.1:6379"
    assert "num_cpus" not in joined["init_args"] and "object_store_memory" not in joined["init_args"]  # Ray refuses both
    assert joined["client_resources"]["num_cpus"] == 2.0  # one client's actor runs on one node


def test_flwr_run_refuses_a_ray_address():
    from federation.server_app import config_from_run_config

    with pytest.raises(ConfigError, match=r"^ray-address must be empty under flwr run"):
        config_from_run_config({"ray-address": "127.0.0.1:6379"})


def test_a_bad_address_fails_up_front_in_one_line_and_writes_nothing(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    code = main(smoke_args(out, data_dir, f"ray-address={address}"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"dppt: error: ray-address must be the address of a running Ray cluster. Found '{address}'")
    assert "ray start --head --port=PORT" in err
    assert not out.exists()
    with pytest.raises(ConfigError, match="ray-address"):
        join_ray_cluster(address)


@pytest.fixture
def ray_cluster(tmp_path: Path) -> Iterator[LocalRayCluster]:
    """A head and a worker node of one CPU each, stopped by process id whatever the test does."""
    cluster = LocalRayCluster(tmp_path / "ray", nodes=2, cpus_per_node=1)
    try:
        cluster.start()
        yield cluster
    finally:
        groups = list(cluster.nodes)
        cluster.stop()
        leftover = {name: cluster.node_processes(name) for name in groups}
        assert all(not found for found in leftover.values()), leftover


@pytest.mark.integration
@pytest.mark.slow  # about a minute alone (two Ray nodes start, then the smoke run)
def test_simulate_joins_a_two_node_ray_cluster(tmp_path, data_dir, ray_cluster):
    out = tmp_path / "run"
    proc = dppt(*smoke_args(out, data_dir, f"ray-address={ray_cluster.address}"), timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ": 2 nodes, 2 CPUs (Ray " in proc.stdout  # the probe saw both nodes
    assert missing_run_files(out) == []  # the same files as a local run
    # The clients ran on the cluster's nodes, the worker included (not on a private Ray of the driver).
    for node in ("head", "worker1"):
        actors = [log for log in ray_cluster.node_logs(node).glob("worker-*")
                  if "ClientAppActor" in log.read_text(errors="replace")]
        assert actors, f"no ClientAppActor ran on the {node} node"
    # The ledger is exact: each of the 3 clients was charged exactly its budget, ε = 2.
    per_client = ledger_epsilon_per_client(out)
    assert sorted(per_client) == ["partition-0", "partition-1", "partition-2"]
    assert all(total == pytest.approx(2.0, rel=1e-12) for total in per_client.values()), per_client
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["epsilon"]["record"]["max"] == pytest.approx(max(per_client.values()), rel=1e-12)
