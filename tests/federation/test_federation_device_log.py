"""A device's own release log and budget (node_config privacy-log, max-epsilon) against the server's ledger."""

from __future__ import annotations

import json
import math

import pytest

from federation.device_log import DeviceLog, DeviceLogError, device_log_of
from federation.layout import KIND_SEARCH_ROUND, LEDGER_FILE, METRICS_FILE
from federation.pipeline import run_pipeline
from federation.rundir import RunDirectory
from privacy import Ledger

pytestmark = pytest.mark.usefixtures("server_identity")


def _charged(ledger_path, client: str) -> float:
    return math.fsum(e.epsilon for e in Ledger(ledger_path).events if client in e.charged_clients())


def _run(config, path, grid):
    run_dir = RunDirectory.create(path)
    run_dir.write_config(config.to_dict())
    return run_pipeline(grid, config, run_dir, progress=lambda line: None)


def test_every_device_logs_exactly_what_the_server_charges_it(small_config, data_dir, tmp_path, grid_type):
    config = small_config.replace(reference_search=False, baselines=False)
    grid = grid_type(config, data_dir)
    for context in grid.contexts.values():
        context.node_config["privacy-log"] = str(tmp_path / "devices" / f"p{context.node_config['partition-id']}.jsonl")
    _run(config, tmp_path / "run", grid)
    for pid in range(3):
        device = DeviceLog(path=tmp_path / "devices" / f"p{pid}.jsonl")
        votes = [line for line in device.entries() if line["kind"] == "vote"]
        assert [(line["round"], line["attempt"]) for line in votes] == [(1, 0), (2, 0), (3, 0)]
        assert {line["run"] for line in device.entries()} == {config.run_hash()}
        spent = math.fsum(float(line["epsilon"]) for line in votes)
        assert math.isclose(spent, _charged(tmp_path / "run" / LEDGER_FILE, f"partition-{pid}"))
        assert math.isclose(spent, config.epsilon)
        # DESIGN.md 5.4b: every training reply (plain weights) is on the log as an ε = inf release.
        trains = [line for line in device.entries() if line["kind"] == "train"]
        assert [line["round"] for line in trains] == list(range(1, config.train_rounds + 1))
        assert all(line["epsilon"] == "inf" for line in trains) and device.spent() == math.inf
        assert device.path.stat().st_mode & 0o077 == 0


def test_a_device_refuses_votes_past_its_own_budget_and_is_not_charged_for_them(
    small_config, data_dir, tmp_path, grid_type
):
    config = small_config.replace(reference_search=False, baselines=False)  # ε 2 over 3 rounds: 2/3 a round
    grid = grid_type(config, data_dir)
    log = tmp_path / "device2.jsonl"
    grid.contexts[grid.node_of(2)].node_config.update({"privacy-log": str(log), "max-epsilon": 1.4})
    summary = _run(config, tmp_path / "run", grid)
    assert summary["search"]["rounds-completed"] == 3  # the others carry round 3
    device = DeviceLog(path=log, max_epsilon=1.4)
    releases = [line for line in device.entries() if line["kind"] != "refused"]
    assert [line["round"] for line in releases] == [1, 2]
    refusals = [(line["request"], line["round"], line["rule"]) for line in device.entries() if line["kind"] == "refused"]
    assert refusals == [("vote", 3, "max-epsilon"), ("train", 1, "train"), ("train", 2, "train")]
    assert math.isclose(device.spent(), 4 / 3)
    assert math.isclose(_charged(tmp_path / "run" / LEDGER_FILE, "partition-2"), 4 / 3)
    rows = [json.loads(line) for line in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()]
    third = next(r for r in rows if r["kind"] == KIND_SEARCH_ROUND and r["round"] == 3)
    assert (third["failed"], third["participants"], third["refused"], third["refused.max-epsilon"]) == (1, 2, 1, 1)
    # Plain trained weights are an ε = inf release: the device with a budget refused every train message.
    assert [line["kind"] for line in releases] == ["vote", "vote"]
    assert summary["accuracy"]["dp_ticket"] is not None  # the other two nodes trained it


def test_the_log_is_checked_before_it_is_trusted(tmp_path):
    log = DeviceLog(path=tmp_path / "log.jsonl", max_epsilon=1.0)
    assert log.record(run="r", server_round=1, attempt=0, domains={"patterns": 0.5, "kernels:conv2": 0.25}) == 0.75
    with pytest.raises(DeviceLogError, match="own budget would be exceeded: spent 0.75 \\+ this release 0.5"):
        log.record(run="r", server_round=2, attempt=0, domains={"patterns": 0.5})
    DeviceLog(path=log.path, max_epsilon=0.5).record(  # data-free: ε 0 fits even a log already over budget
        run="r", server_round=2, attempt=0, domains={"patterns": 0.0})
    with pytest.raises(DeviceLogError, match="inf"):
        log.record(run="r", server_round=3, attempt=0, domains={"patterns": math.inf})  # no noise: refused
    assert len(log.entries()) == 2
    log.path.write_bytes(log.path.read_bytes() + b'{"schema": 1, "epsi')  # killed while writing
    assert len(log.entries()) == 2
    DeviceLog(path=log.path).record(run="r", server_round=3, attempt=0, domains={"patterns": 0.1})
    assert [e["round"] for e in log.entries()] == [1, 2, 3]  # the torn bytes were cut, the file stays valid
    log.path.write_text("garbage\n" + log.path.read_text())
    with pytest.raises(DeviceLogError, match="line 1 must be a dppt release line"):
        log.spent()
    assert device_log_of({}) is None
    with pytest.raises(DeviceLogError, match="needs privacy-log"):
        device_log_of({"max-epsilon": 1.0})
    with pytest.raises(DeviceLogError, match="max-epsilon must be a number"):
        device_log_of({"privacy-log": str(tmp_path / "x"), "max-epsilon": "lots"})
