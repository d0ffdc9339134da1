"""A real Flower deployment on localhost: SuperLink + SuperNodes as separate processes running dppt."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from federation.layout import (
    CONFIG_FILE, JOURNAL_FILE, KIND_SEARCH_ROUND, LEDGER_FILE, METRICS_FILE, SUMMARY_FILE, TICKET_FILE,
)
from privacy import Ledger
from simulations.deploy import DeploymentError, LocalDeployment, make_node_key, make_test_certificates
from simulations.deploy.local import run_config_arg
from simulations.report.outputs import HTML_FILE, MARKDOWN_FILE

from .run_checks import ledger_epsilon_per_client

REPO = Path(__file__).resolve().parents[2]


def _run_config(data_dir: Path, out: Path, num_clients: int) -> dict[str, object]:
    return {
        "num-clients": num_clients, "partition": "iid", "search-rounds": 2, "hold-rounds": 1, "train-rounds": 1,
        "max-examples-per-client": 200, "score-examples": 100, "max-test-examples": 500, "min-replies": 2,
        "epsilon": 2.0, "data-dir": str(data_dir), "out-dir": str(out),
    }


def _quiet_insecure(work: Path, data_dir: Path) -> LocalDeployment:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LocalDeployment(work, data_dir=data_dir, num_partitions=3, secure=False)


_HEADER = re.compile(r"\[RUN (\d+), ROUND ([^\]]+)\]")


def _vote_log(log: Path, what: str) -> set[tuple[str, str]]:
    """``(run id, round)`` of every train.vote message a SuperNode's log says it is ``Receiving`` or ``Sending``.

    A ``Sending`` line is a reply leaving the device: a record-level release.
    """
    seen, current = set(), None
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if match := _HEADER.search(line):
            current = (match.group(1), match.group(2))
        elif f"{what}: train.vote" in line and current is not None:
            seen.add(current)
    return seen


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _charged_rounds(events, client: str) -> set[tuple[int, int]]:
    return {(e.round, e.attempt) for e in events if client in e.charged_clients()}


def _run_dir(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


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
    with _quiet_insecure(tmp_path / "deploy", data_dir) as deployment:
        _start_with_nodes(deployment, 3)
        run_id = deployment.submit(REPO, _run_config(data_dir, out, 3))
        status = deployment.wait(run_id)
        assert status == "finished:completed", deployment.run_log(run_id)[-3000:]
    assert all(p.poll() is not None for p in [deployment.link, *deployment.nodes.values()])  # type: ignore[union-attr]
    run = _run_dir(out)
    for name in (CONFIG_FILE, LEDGER_FILE, TICKET_FILE, SUMMARY_FILE, MARKDOWN_FILE, HTML_FILE):
        assert (run / name).is_file(), name
    per_client = ledger_epsilon_per_client(run)
    assert sorted(per_client) == ["partition-0", "partition-1", "partition-2"]
    assert all(math.isclose(v, 2.0) for v in per_client.values())
    summary = json.loads((run / SUMMARY_FILE).read_text())
    assert summary["epsilon"]["record"]["max"] == max(per_client.values())
    spent = f"{max(per_client.values()):.6g}"
    assert f"| record (per client, largest Σε) | 2 | {spent} | 0 |" in (run / MARKDOWN_FILE).read_text()


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
    assert sorted(ledger_epsilon_per_client(run)) == ["partition-0", "partition-1"]  # the intruder never took part


def test_cli_helpers_write_certificates_and_keys_and_refuse_to_overwrite(tmp_path, capsys):
    from simulations.cli import main

    assert main(["certs", "--out", str(tmp_path / "c"), "--host", "link.example", "--host", "10.1.2.3"]) == 0
    assert (tmp_path / "c" / "ca.crt").is_file()
    assert main(["certs", "--out", str(tmp_path / "c")]) == 2 and "already exist" in capsys.readouterr().err
    assert main(["node-key", str(tmp_path / "k" / "n0")]) == 0 and (tmp_path / "k" / "n0.pub").is_file()
    assert main(["node-key", str(tmp_path / "k" / "n0")]) == 2


def _start_with_nodes(deployment: LocalDeployment, count: int) -> None:
    """The SuperLink, then SuperNodes for partitions ``0 .. count-1`` (registered keys if auth is on), all online."""
    deployment.start()
    for pid in range(count):
        deployment.start_node(pid, key=deployment.new_key(f"node{pid}") if deployment.authenticate else None)
    deployment.wait_for_nodes(count)


def _search_only(data_dir: Path, out: Path, **changes: object) -> dict[str, object]:
    """A run of the DP search and the DP ticket's training only (no reference search, no baselines)."""
    return {**_run_config(data_dir, out, 3), "reference-search": False, "baselines": False, **changes}


@pytest.mark.integration
@pytest.mark.slow  # about 2.5 min: the SuperLink reports the dead node about 40-60 s after the kill
def test_a_supernode_killed_mid_round_is_not_charged_for_it_and_the_run_completes(tmp_path, data_dir):
    out = tmp_path / "runs"
    with _quiet_insecure(tmp_path / "deploy", data_dir) as deployment:
        _start_with_nodes(deployment, 3)
        run_id = deployment.submit(REPO, _search_only(data_dir, out, **{"search-rounds": 3}))
        victim, log = "supernode-2", deployment.logs / "supernode-2.log"
        _wait_for(lambda: (run_id, "2") in _vote_log(log, "Receiving")
                  and any("flwr-clientapp" in command for _, command in deployment.node_processes(victim)),
                  "the victim's ClientApp to be computing its round-2 vote")
        deployment.kill_node(victim)  # SuperNode, SuperExec and the ClientApp mid-vote
        status = deployment.wait(run_id)
        assert status == "finished:completed", deployment.run_log(run_id)[-3000:]
    run = _run_dir(out)
    events = Ledger(run / LEDGER_FILE).events
    assert {(e.round, e.attempt): sorted(e.participants) for e in events} == {
        (1, 0): ["partition-0", "partition-1", "partition-2"],
        (2, 0): ["partition-0", "partition-1"],  # round 2 completed with the others
        (3, 0): ["partition-0", "partition-1"],
    }
    # what each device's log says it released is exactly what the ledger charges it for
    for pid in range(3):
        sent = {int(r) for run, r in _vote_log(deployment.logs / f"supernode-{pid}.log", "Sending") if run == run_id}
        assert {(r, 0) for r in sent} == _charged_rounds(events, f"partition-{pid}"), pid
    rounds = {row["round"]: row for row in map(json.loads, (run / METRICS_FILE).read_text().splitlines())
              if row["kind"] == KIND_SEARCH_ROUND}
    assert (rounds[2]["sampled"], rounds[2]["failed"], rounds[2]["participants"]) == (3, 1, 2)
    per_client = ledger_epsilon_per_client(run)
    assert math.isclose(per_client["partition-2"], 2.0 / 3) and math.isclose(per_client["partition-0"], 2.0)
    summary = json.loads((run / SUMMARY_FILE).read_text())
    assert summary["search"]["rounds-completed"] == 3 and summary["accuracy"]["dp_ticket"] is not None


@pytest.mark.integration
@pytest.mark.slow  # about 3 min: two ServerApp starts and a SuperLink restart
def test_the_server_killed_mid_search_resumes_and_charges_every_release_once(tmp_path, data_dir):
    out = tmp_path / "runs"  # the production set-up: TLS and node authentication, through the restart
    with LocalDeployment(tmp_path / "deploy", data_dir=data_dir, num_partitions=3, authenticate=True) as deployment:
        _start_with_nodes(deployment, 3)
        first = deployment.submit(REPO, _search_only(data_dir, out, **{"search-rounds": 4}))
        logs = [deployment.logs / f"supernode-{pid}.log" for pid in range(3)]
        _wait_for(lambda: any((first, "2") in _vote_log(log, "Receiving") for log in logs),
                  "round 2's vote messages to reach a node")
        killed = deployment.kill_server()  # SuperLink, SuperExec and ServerApp, mid-round
        assert len(killed) >= 3
        run = _run_dir(out)
        journal = [json.loads(line) for line in (run / JOURNAL_FILE).read_text().splitlines()]
        assert [(j["kind"], j["round"]) for j in journal] == [("asked", 1), ("closed", 1), ("asked", 2)]
        assert sorted({e.round for e in Ledger(run / LEDGER_FILE).events}) == [1]
        deployment.restart_link()  # same port, certificates and state database (registered keys): the
        # SuperNodes reconnect by themselves, with no new registration
        deployment.wait_for_nodes(3)
        second = deployment.submit(REPO, {"resume-dir": str(run)})
        status = deployment.wait(second)
        assert status == "finished:completed", deployment.run_log(second)[-3000:]
    assert [p for p in out.iterdir() if p.is_dir()] == [run]  # continued in place, no second run directory
    events = Ledger(run / LEDGER_FILE).events
    assert len({e.event_id for e in events}) == len(events)
    everyone = ["partition-0", "partition-1", "partition-2"]
    # round 2 of the killed server is charged once, in full (any node may have released); the
    # resumed run re-runs round 2 as attempt 1 and stops when round 4 would exceed the budget
    assert {(e.round, e.attempt): sorted(e.participants) for e in events} == {
        (1, 0): everyone, (2, 0): everyone, (2, 1): everyone, (3, 0): everyone,
    }
    assert json.loads((run / JOURNAL_FILE).read_text().splitlines()[3])["kind"] == "settled"
    for pid in range(3):  # every release a device made is charged, exactly once
        sent = _vote_log(deployment.logs / f"supernode-{pid}.log", "Sending")
        released = {(int(r), 0) for run_id, r in sent if run_id == first}
        released |= {(int(r), 1 if r == "2" else 0) for run_id, r in sent if run_id == second}
        charged = _charged_rounds(events, f"partition-{pid}")
        assert released <= charged and charged - released <= {(2, 0)}, (pid, released, charged)
    per_client = ledger_epsilon_per_client(run)
    assert all(math.isclose(v, 2.0) for v in per_client.values())
    summary = json.loads((run / SUMMARY_FILE).read_text())
    assert summary["search"]["rounds-completed"] == 3 and "budget" in summary["search"]["stop-reason"]
    assert f"| record (per client, largest Σε) | 2 | {2.0:.6g} | 0 |" in (run / MARKDOWN_FILE).read_text()


_WRAPPER = """#!{python}
# flwr-clientapp of the hostile node: Flower's own runtime, but the ClientApp is deploy_hostile_app:app.
import sys
sys.argv[0] = "flwr-clientapp"
sys.path.insert(0, {tests!r})
import flwr.supernode.runtime.run_clientapp as runtime
if not hasattr(runtime, "get_load_client_app_fn"):
    raise SystemExit("flwr changed: flwr.supernode.runtime.run_clientapp.get_load_client_app_fn is gone")
def _loader(default_app_ref, app_path, multi_app):
    def load(fab_id, fab_version, fab_hash):
        import deploy_hostile_app
        return deploy_hostile_app.app
    return load
runtime.get_load_client_app_fn = _loader
from flwr.supernode.cli.flwr_clientapp import flwr_clientapp
sys.exit(flwr_clientapp())
"""


@pytest.mark.integration
@pytest.mark.slow  # about 2 min
def test_a_hostile_clientapp_on_a_real_supernode_is_rejected_with_reasons_and_the_rounds_go_on(tmp_path, data_dir):
    wrapper = tmp_path / "hostile-bin" / "flwr-clientapp"  # first on the hostile node's PATH only
    wrapper.parent.mkdir()
    wrapper.write_text(_WRAPPER.format(python=sys.executable, tests=str(Path(__file__).parent)))
    wrapper.chmod(0o755)
    path = os.pathsep.join([str(wrapper.parent), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    out = tmp_path / "runs"
    with _quiet_insecure(tmp_path / "deploy", data_dir) as deployment:
        deployment.start()
        for pid in range(2):
            deployment.start_node(pid)
        deployment.start_node(2, name="hostile", env={"PATH": path})
        deployment.wait_for_nodes(3)
        run_id = deployment.submit(REPO, _search_only(data_dir, out, **{"kernel-votes": True}))
        status = deployment.wait(run_id)
        assert status == "finished:completed", deployment.run_log(run_id)[-3000:]
    run = _run_dir(out)
    rows = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    rounds = [row for row in rows if row["kind"] == KIND_SEARCH_ROUND]
    assert [row["round"] for row in rounds] == [1, 2]  # every round went on
    domains = [key.removeprefix("voters.") for key in rounds[0] if key.startswith("voters.")]
    assert len(domains) >= 4
    for row in rounds:
        # only the two honest nodes' votes reached any histogram: the hostile one moved none
        assert all(row[f"voters.{domain}"] == 2 for domain in domains), row
        assert row["rejected"] == len(domains) + 1 and row["rejected.unknown-domain"] == 1  # + the 16 MiB array
    reasons = {key.removeprefix("rejected."): sum(row[key] for row in rounds) for key in rounds[0]
               if key.startswith("rejected.") and key != "rejected.unknown-domain"}
    for reason in ("out-of-range", "duplicates", "not-integer", "too-many", "oversized"):
        assert reasons[reason] >= 1, (reason, reasons)
    # it replied, so its release is charged like everyone's
    assert math.isclose(ledger_epsilon_per_client(run)["partition-2"], 2.0)
    assert json.loads((run / SUMMARY_FILE).read_text())["accuracy"]["dp_ticket"] is not None
