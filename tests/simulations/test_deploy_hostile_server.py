"""A hostile ServerApp against a real SuperNode with its own privacy policy (DESIGN.md 5.4b).

The in-process tests (``tests/federation/test_federation_device_policy.py``) show each rule; here
the same requests cross a real deployment: a SuperLink, one SuperNode started with the policy in
its ``--node-config``, running the real dppt ClientApp, and a ServerApp of the test's own
(``deploy_hostile_server.py``, shipped in the FAB of a small project written to ``tmp_path``) that
asks the device for more than it agreed to. Each such request must come back as an error reply
naming its rule, and the device's own log must hold the honest vote only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import pytest

from federation.device_log import DeviceLog
from simulations.deploy import DeploymentError, LocalDeployment
from strategies.keys import POLICY_REFUSAL

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
SERVER_MODULE = "deploy_hostile_server"
PER_VOTE = 0.5  # deploy_hostile_server.PER_VOTE: its honest vote asks exactly what the policy admits
POLICY = {"max-vote-epsilon": PER_VOTE, "mechanisms": "laplace-topk", "min-examples": 64, "max-epsilon": 10}

# The project flwr run builds the FAB from: the hostile ServerApp, the real ClientApp (imported from
# the repository on PYTHONPATH, as the SuperNode's flwr-clientapp finds it).
_PYPROJECT = f"""[project]
name = "dppt-hostile-server"
version = "0.1.0"
description = "A ServerApp that asks a dppt device for more than its privacy policy allows (tests only)"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "dppt-tests"

[tool.flwr.app.components]
serverapp = "{SERVER_MODULE}:app"
clientapp = "federation.client_app:app"

[tool.flwr.app.config]
result-file = ""
"""

# (request, the rule it must be refused by, words of the reason that say why); rule None: answered.
EXPECTED = [
    ("epsilon-5", "max-vote-epsilon", "the vote asks ε 5 > this device's max-vote-epsilon 0.5"),
    ("half-sensitivity", "sensitivity", "is not C/n = 1/64"),
    ("server-seed", "noise-seed", "the server sent noise-seed 7"),
    ("train", "train", "this device has max-epsilon 10"),
    ("gumbel", "mechanisms", "mechanism 'gumbel-topk' is not one this device runs (laplace-topk)"),
    ("honest", None, None),
]


def _project(where: Path) -> Path:
    """The hostile ServerApp's Flower project: its pyproject and the two modules of its FAB."""
    where.mkdir()
    (where / "pyproject.toml").write_text(_PYPROJECT)
    for module in (TESTS / "simulations" / f"{SERVER_MODULE}.py", TESTS / "policy_requests.py"):
        shutil.copy(module, where / module.name)
    return where


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _until_written(deployment: LocalDeployment, run_id: str, path: Path, *, timeout: float = 900) -> None:
    """Wait for the ServerApp's result file, asking the CLI every 20 s only (or sooner if the run ended).

    Each ``flwr ls`` is a Python start that competes for the CPU with the ClientApp computing.
    """
    deadline, asked = time.time() + timeout, time.time()
    while not path.exists():
        if time.time() > deadline:
            raise AssertionError(f"the hostile ServerApp wrote no {path.name} in {timeout:.0f} s")
        if time.time() - asked > 20:
            if deployment.status(run_id).startswith("finished"):
                return  # ended without it: the status assertion shows the run log
            asked = time.time()
        time.sleep(0.5)


def _insecure(work: Path, data_dir: Path) -> LocalDeployment:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LocalDeployment(work, data_dir=data_dir, num_partitions=1, secure=False)


def test_start_node_refuses_a_node_config_that_sets_its_own_keys(tmp_path):
    deployment = _insecure(tmp_path, tmp_path)
    with pytest.raises(DeploymentError, match="node_config must not set data-dir, partition-id"):
        deployment.start_node(0, node_config={"partition-id": 3, "data-dir": "elsewhere", "min-examples": 64})
    assert deployment.nodes == {}  # nothing was started


@pytest.mark.integration
@pytest.mark.slow  # about 2 min on a busy 2-core machine: six messages, each a fresh flwr-clientapp
def test_a_hostile_serverapp_is_refused_by_a_real_supernodes_own_privacy_policy(tmp_path, data_dir, monkeypatch):
    # Every process (flwr CLI, SuperLink and its ServerApp, SuperNode and its ClientApp) imports
    # this checkout's packages, not whatever copy an editable install points at.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p))
    project = _project(tmp_path / "hostile-server")
    log, result = tmp_path / "device" / "privacy.jsonl", tmp_path / "replies.json"
    with _insecure(tmp_path / "deploy", data_dir) as deployment:
        deployment.start()
        deployment.start_node(0, node_config={**POLICY, "privacy-log": str(log)})
        deployment.wait_for_nodes(1)
        run_id = deployment.submit(project, {"result-file": str(result)})
        _until_written(deployment, run_id, result)
        status = deployment.wait(run_id)
        assert status == "finished:completed", deployment.run_log(run_id)[-3000:]
        started = [*deployment.server_processes(), *(pid for pid, _ in deployment.node_processes("supernode-0"))]
    deadline = time.time() + 30  # the context manager stopped every process it started
    while any(map(_alive, started)) and time.time() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in started if _alive(pid)]

    replies = json.loads(result.read_text())
    assert [(r["request"], r["has-error"], r["rule"]) for r in replies] == [
        (request, rule is not None, rule) for request, rule, _ in EXPECTED
    ], replies
    for reply, (_, rule, why) in zip(replies, EXPECTED):
        if rule is not None:  # a person can read why: the rule, then the device's own figures
            assert f"{POLICY_REFUSAL} ({rule}): " in reply["reason"] and why in reply["reason"], reply
    honest = replies[-1]
    assert honest["votes"] and all(count > 0 for count in honest["votes"].values()), honest
    # Nothing beyond the policy was released: the device's own log holds the honest vote as its only
    # release, and each refusal (ε = 0) with its rule, in the order they came (DESIGN.md 5.4b).
    entries = DeviceLog(path=log).entries()
    (line,) = [entry for entry in entries if entry["kind"] != "refused"]
    assert line["kind"] == "vote" and math.isclose(float(line["epsilon"]), PER_VOTE), line
    assert [entry["rule"] for entry in entries if entry["kind"] == "refused"] == [
        rule for _, rule, _ in EXPECTED if rule is not None]
    assert all(float(entry["epsilon"]) == 0.0 for entry in entries if entry["kind"] == "refused")
