"""A federation sized unlike the run's num-clients ends the run at its first exchange, in one line."""

from __future__ import annotations

import pytest

from federation.config import ConfigError
from federation.federation_size import SizeCheckedGrid
from federation.pipeline import run_pipeline
from federation.rundir import RunDirectory

pytestmark = pytest.mark.usefixtures("server_identity")


def _run(config, path, grid) -> dict:
    run_dir = RunDirectory.create(path)
    run_dir.write_config(config.to_dict())
    return run_pipeline(grid, config, run_dir, progress=lambda line: None)


def test_a_smaller_federation_ends_the_run_at_the_identity_replies(small_config, data_dir, tmp_path, grid_type):
    nodes = grid_type(small_config.replace(num_clients=2), data_dir)  # 2 SuperNodes, num-partitions = 2
    config = small_config.replace(num_clients=3)
    with pytest.raises(ConfigError) as info:
        _run(config, tmp_path / "run", SizeCheckedGrid(nodes, num_clients=config.num_clients))
    msg = str(info.value)
    assert msg.startswith("num-clients must equal the federation's num-partitions. Found num-clients = 3,"
                          " num-partitions = 2 (declared by 2 SuperNodes).")
    assert 'flwr run . --federation-config "num-supernodes=3"' in msg and "\n" not in msg
    assert nodes.exchanges == 1  # the identity queries, nothing after them


def test_a_matching_federation_runs_through_the_checked_grid(small_config, data_dir, tmp_path, grid_type):
    nodes = grid_type(small_config, data_dir)
    summary = _run(small_config.replace(reference_search=False, baselines=False), tmp_path / "run",
                   SizeCheckedGrid(nodes, num_clients=small_config.num_clients))
    assert summary["search"]["rounds-completed"] == small_config.search_rounds


def test_one_node_that_disagrees_with_the_others_does_not_stop_the_run(small_config, data_dir, tmp_path, grid_type):
    """One misconfigured (or hostile) device must not end everybody's run: it is only dropped."""
    nodes = grid_type(small_config, data_dir)
    odd = nodes.node_of(2)
    nodes.contexts[odd].node_config["num-partitions"] = 7
    summary = _run(small_config.replace(reference_search=False, baselines=False), tmp_path / "run",
                   SizeCheckedGrid(nodes, num_clients=small_config.num_clients))
    assert summary["search"]["rounds-completed"] == small_config.search_rounds
    assert summary["epsilon"]["record"]["clients"] == 2  # partition-2 was never charged
    from federation.layout import LEDGER_FILE
    from privacy import Ledger

    assert all("partition-2" not in event.participants for event in Ledger(tmp_path / "run" / LEDGER_FILE).events)
