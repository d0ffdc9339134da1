"""A real Flower deployment on localhost: SuperLink + SuperNodes as separate processes running dppt."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

from privacy import Ledger
from simulations.deploy import DeploymentError, LocalDeployment, make_node_key, make_test_certificates
from simulations.deploy.local import run_config_arg

REPO = Path(__file__).resolve().parents[2]


def _run_config(data_dir: Path, out: Path, num_clients: int) -> dict[str, object]:
    return {
        "num-clients": num_clients, "partition": "iid", "search-rounds": 2, "hold-rounds": 1, "train-rounds": 1,
        "max-examples-per-client": 200, "score-examples": 100, "max-test-examples": 500, "min-replies": 2,
        "epsilon": 2.0, "data-dir": str(data_dir), "out-dir": str(out),
    }


def _run_dir(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _per_client(run: Path) -> dict[str, float]:
    totals: dict[str, float] = {}
    for event in Ledger(run / "ledger.jsonl").events:
        for client in event.charged_clients():
            totals[client] = totals.get(client, 0.0) + event.epsilon
    return totals


def test_run_config_text_quotes_strings_and_spells_numbers():
    text = run_config_arg({"a": 1, "b": 0.5, "c": "x y", "d": True, "e": float("inf")})
    assert text == 'a=1 b=0.5 c="x y" d=true e="inf"'


def test_test_certificates_and_node_keys_refuse_to_overwrite(tmp_path):
    make_test_certificates(tmp_path / "certs", hosts=("localhost", "127.0.0.1", "10.0.0.5"))
    assert {p.name for p in (tmp_path / "certs").iterdir()} == {"ca.crt", "ca.key", "server.pem", "server.key"}
    assert (tmp_path / "certs" / "server.key").stat().st_mode & 0o077 == 0
    with pytest.raises(FileExistsError, match="already exist"):
        make_test_certificates(tmp_path / "certs")
    public = make_node_key(tmp_path / "keys" / "node0")
    assert public.read_text().startswith("ecdsa-sha2-nistp384 ")
    with pytest.raises(FileExistsError):
        make_node_key(tmp_path / "keys" / "node0")


def test_insecure_mode_warns_and_authentication_needs_tls(tmp_path):
    with pytest.warns(UserWarning, match="without TLS"):
        LocalDeployment(tmp_path, data_dir=tmp_path, num_partitions=1, secure=False)
    with pytest.raises(DeploymentError, match="must be used with TLS"):
        LocalDeployment(tmp_path, data_dir=tmp_path, num_partitions=1, secure=False, authenticate=True)


@pytest.mark.integration
@pytest.mark.slow  # about 1.5 min alone, more on a loaded machine: CI runs it in its slow pass
def test_superlink_and_three_supernodes_run_the_dppt_app(tmp_path, data_dir):
    out = tmp_path / "runs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deployment = LocalDeployment(tmp_path / "deploy", data_dir=data_dir, num_partitions=3, secure=False)
    with deployment:
        deployment.start()
        for pid in range(3):
            deployment.start_node(pid)
        deployment.wait_for_nodes(3)
        run_id = deployment.submit(REPO, _run_config(data_dir, out, 3))
        status = deployment.wait(run_id)
        assert status == "finished:completed", deployment.run_log(run_id)[-3000:]
    assert all(p.poll() is not None for p in [deployment.link, *deployment.nodes.values()])
    run = _run_dir(out)
    for name in ("config.json", "ledger.jsonl", "ticket.safetensors", "summary.json", "report.md", "report.html"):
        assert (run / name).is_file(), name
    per_client = _per_client(run)
    assert sorted(per_client) == ["partition-0", "partition-1", "partition-2"]
    assert all(math.isclose(v, 2.0) for v in per_client.values())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epsilon"]["record"]["max"] == max(per_client.values())
    spent = f"{max(per_client.values()):.6g}"
    assert f"| record (per client, largest Σε) | 2 | {spent} | 0 |" in (run / "report.md").read_text()


@pytest.mark.integration
@pytest.mark.slow
def test_tls_and_node_authentication_refuse_an_unregistered_supernode(tmp_path, data_dir):
    out = tmp_path / "runs"
    with LocalDeployment(tmp_path / "deploy", data_dir=data_dir, num_partitions=3, authenticate=True) as deployment:
        deployment.start()
        for pid in range(2):
            deployment.start_node(pid, key=deployment.new_key(f"node{pid}"))
        intruder = deployment.start_node(2, name="intruder", key=deployment.new_key("intruder", register=False))
        assert intruder.wait(timeout=60) != 0  # refused at once; it never joins
        deployment.wait_for_nodes(2)
        assert deployment.online_nodes() == 2
        run_id = deployment.submit(REPO, _run_config(data_dir, out, 3))
        status = deployment.wait(run_id)
        assert status == "finished:completed", deployment.run_log(run_id)[-3000:]
    log = (tmp_path / "deploy" / "logs" / "intruder.log").read_text()
    assert "Failed to activate SuperNode" in log or "must be registered" in log, log[-2000:]
    run = _run_dir(out)
    assert sorted(_per_client(run)) == ["partition-0", "partition-1"]  # the intruder never took part


def test_cli_helpers_write_certificates_and_keys_and_refuse_to_overwrite(tmp_path, capsys):
    from simulations.cli import main

    assert main(["certs", "--out", str(tmp_path / "c"), "--host", "link.example", "--host", "10.1.2.3"]) == 0
    assert (tmp_path / "c" / "ca.crt").is_file()
    assert main(["certs", "--out", str(tmp_path / "c")]) == 2 and "already exist" in capsys.readouterr().err
    assert main(["node-key", str(tmp_path / "k" / "n0")]) == 0 and (tmp_path / "k" / "n0.pub").is_file()
    assert main(["node-key", str(tmp_path / "k" / "n0")]) == 2
