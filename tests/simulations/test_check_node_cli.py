"""``dppt check-node``: what a device owner runs before joining (exit 0 ready, 1 not ready, 2 bad input)."""

from __future__ import annotations

from simulations.cli import main


def test_a_partition_node_is_ready_and_a_small_one_is_told_it_will_abstain(data_dir, capsys):
    node = f'partition-id=1 num-partitions=3 data-dir="{data_dir}"'
    run = ["--set", "num-clients=3", "--set", "partition=iid", "--set", "max-examples-per-client=300"]
    assert main(["check-node", "--node-config", node, *run, "--set", "score-examples=128"]) == 0
    out = capsys.readouterr().out
    assert "client-id  partition-1" in out and "examples   300" in out and "ready" in out
    assert main(["check-node", "--node-config", node, *run, "--set", "score-examples=512"]) == 1
    out = capsys.readouterr().out
    assert "NOT READY" in out and "abstain from every vote" in out


def test_a_bad_node_config_is_one_line_and_exit_2(data_dir, capsys):
    assert main(["check-node", "--node-config", f'partition-id=0 num-partitions=5 data-dir="{data_dir}"',
                 "--set", "num-clients=3"]) == 2
    assert "num-partitions of this node must equal the run's num-clients (3)" in capsys.readouterr().err
    assert main(["check-node", "--node-config", "image-dir=/nowhere"]) == 2  # unquoted: flower-supernode refuses it too
    assert "strings in double quotes" in capsys.readouterr().err
    assert main(["check-node", "--node-config", 'image-dir="/nowhere"']) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "client-id" in err


def test_a_device_whose_own_budget_is_spent_is_not_ready(data_dir, tmp_path, capsys):
    from federation.device_log import DeviceLog

    log = tmp_path / "device.jsonl"
    DeviceLog(path=log).record(run="earlier", server_round=1, attempt=0, domains={"patterns": 1.0})
    node = f'partition-id=0 num-partitions=3 data-dir="{data_dir}" privacy-log="{log}" max-epsilon=1.0'
    run = ["--set", "num-clients=3", "--set", "partition=iid", "--set", "score-examples=64"]
    assert main(["check-node", "--node-config", node, *run]) == 1
    out = capsys.readouterr().out
    assert "own log    ε spent 1 (max-epsilon 1)" in out and "refuse every vote" in out
    assert main(["check-node", "--node-config", node.replace("max-epsilon=1.0", 'max-epsilon="x"'), *run]) == 2
    assert "max-epsilon must be a number" in capsys.readouterr().err
