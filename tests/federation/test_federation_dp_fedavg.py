"""Client-level DP-FedAvg of ticket training (DESIGN.md 5.9): Flower's wrapper, masks, accounting, refusal.

The real ClientApp trains on the in-process grid; the server wraps masked FedAvg in Flower's
``DifferentialPrivacyServerSideFixedClipping`` and charges each noised average to the training ledger.
"""

from __future__ import annotations

import math

import pytest
import torch

from federation.config import Config
from federation.dp_fedavg import flower_accountant, noise_multiplier, releases, sampled_clients
from federation.layout import PHASE_TRAIN, TRAIN_LEDGER_FILE
from federation.model_io import build_model, ticket_policies
from federation.pipeline import config_record, training_fedavg
from federation.pipeline import test_set as server_test_set
from federation.rundir import RunDirectory
from federation.ticket_training import train_variant
from kernels import enumerate_candidates, random_ticket
from models import prunable_layers
from privacy import GAUSSIAN, UNIT_CLIENT, Ledger

from .conftest import InProcessGrid

pytestmark = pytest.mark.usefixtures("server_identity")


@pytest.fixture
def fedavg_config(small_config: Config) -> Config:
    return small_config.replace(train_privacy="dp-fedavg", train_epsilon=8.0, baselines=False, train_rounds=2,
                                min_replies=3, train_clip=0.5, train_variants="dp_ticket")


def _ticket(config: Config):
    model = build_model(config, seed=config.seed)
    shapes = {name: tuple(layer.weight.shape) for name, layer in prunable_layers(model).items()}
    library = enumerate_candidates(config.pattern_entries)[: config.patterns]
    return random_ticket(shapes, policies=ticket_policies(model), density=0.2, library=library,
                         generator=torch.Generator().manual_seed(5))


def _train(config, grid, run_dir, *, ticket=None, charge=None, variant="dp_ticket"):
    return train_variant(grid, config, run_dir, variant=variant, ticket=ticket, test_set=server_test_set(config),
                         config_record=config_record(config), progress=lambda line: None,
                         dp_fedavg=training_fedavg(config, run_dir) if charge is None else charge)


def test_the_noise_multiplier_spends_the_training_budget_by_flowers_rdp_accountant(fedavg_config):
    z = noise_multiplier(fedavg_config)
    accountant = flower_accountant(fedavg_config, [])
    from flwr.serverapp import GaussianPrivacyEvent

    event = GaussianPrivacyEvent(noise_multiplier=z, sample_size=sampled_clients(fedavg_config),
                                 population_size=fedavg_config.num_clients)
    accountant.compose(event, count=releases(fedavg_config))
    spent = accountant.get_epsilon(fedavg_config.train_delta)
    assert fedavg_config.train_epsilon * (1 - 1e-3) < spent <= fedavg_config.train_epsilon
    assert noise_multiplier(fedavg_config.replace(train_rounds=8)) > z  # more releases, more noise each


def test_dp_fedavg_keeps_pruned_weights_exactly_zero_and_charges_every_noised_average(
        fedavg_config, data_dir, tmp_path):
    ticket = _ticket(fedavg_config)
    run_dir = RunDirectory.create(tmp_path / "run")
    charge = training_fedavg(fedavg_config, run_dir)
    result = _train(fedavg_config, InProcessGrid(fedavg_config, data_dir), run_dir, ticket=ticket, charge=charge)
    assert result["rounds"] == fedavg_config.train_rounds and result["stop-reason"] is None
    weights, masks = result["weights"], ticket.masks()
    for layer, mask in masks.items():
        assert torch.count_nonzero(weights[f"{layer}.weight"][~mask]) == 0  # pruned: exactly zero after the noise
        assert torch.count_nonzero(weights[f"{layer}.weight"][mask]) == int(mask.sum())  # kept: noised, non-zero
    events = Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events
    m, z, clip = sampled_clients(fedavg_config), charge.noise_multiplier, fedavg_config.train_clip
    assert [(e.phase, e.unit, e.mechanism, e.round) for e in events] == [
        (PHASE_TRAIN, UNIT_CLIENT, GAUSSIAN, r) for r in (1, 2)]
    assert all(e.sensitivity == pytest.approx(clip / m) and e.noise_scale == pytest.approx(z * clip / m) for e in events)
    # The ledger's RDP figure (dp-accounting) equals Flower's accountant replayed from it, within the budget.
    flower = flower_accountant(fedavg_config, events).get_epsilon(fedavg_config.train_delta)
    assert charge.rdp_epsilon() == pytest.approx(flower, rel=1e-9) and 0 < flower <= fedavg_config.train_epsilon
    # No client metric is published: the clients' losses are unnoised means over their examples.
    rows = [row for row in run_dir.read_metrics() if row.get("phase") == PHASE_TRAIN and row.get("kind") == "client-train"]
    assert rows and all("train-loss" not in row and "loss" not in row for row in rows)


def test_the_noise_is_added_to_the_average(fedavg_config, data_dir, tmp_path):
    plain_config = fedavg_config.replace(train_privacy="none", train_rounds=1)
    noisy_config = fedavg_config.replace(train_rounds=1, train_epsilon=1.0)
    plain = train_variant(InProcessGrid(plain_config, data_dir), plain_config, RunDirectory.create(tmp_path / "a"),
                          variant="dp_ticket", ticket=None, test_set=server_test_set(plain_config),
                          config_record=config_record(plain_config), progress=lambda line: None)
    noisy = _train(noisy_config, InProcessGrid(noisy_config, data_dir), RunDirectory.create(tmp_path / "b"))
    # The clients train alike (seeded); the server's clipped, noised average differs by about zC/m per coordinate.
    z = noise_multiplier(noisy_config)
    difference = torch.cat([(noisy["weights"][k] - plain["weights"][k]).flatten() for k in plain["weights"]])
    expected = z * noisy_config.train_clip / sampled_clients(noisy_config)
    assert 0.5 * expected < float(difference.std()) < 2.0 * expected + 0.05


def test_a_round_over_the_training_budget_is_refused_and_a_resume_does_not_charge_twice(
        fedavg_config, data_dir, tmp_path):
    run_dir = RunDirectory.create(tmp_path / "run")
    first = _train(fedavg_config, InProcessGrid(fedavg_config, data_dir), run_dir)
    assert first["rounds"] == 2
    charged = [e.event_id for e in Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events]
    # A resumed run trains again from θ0: Flower's accountant, rebuilt from the ledger, refuses round 1.
    again = _train(fedavg_config, InProcessGrid(fedavg_config, data_dir), run_dir)
    assert again["rounds"] == 0 and "refused before it was sent" in again["stop-reason"]
    assert "exceed train-epsilon 8" in again["stop-reason"]
    assert [e.event_id for e in Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events] == charged
    # A node that fails leaves fewer than the m the noise was calibrated for: nothing is averaged
    # (Flower's strict accounted mode), so nothing is released, charged or learnt.
    grid = InProcessGrid(fedavg_config, data_dir)
    grid.dead.add(grid.node_of(2))
    short_dir = RunDirectory.create(tmp_path / "short")
    short = _train(fedavg_config, grid, short_dir)
    assert short["rounds"] == 0 and Ledger(short_dir.file(TRAIN_LEDGER_FILE)).events == ()


def test_a_whole_run_with_dp_fedavg_states_the_client_level_figure(fedavg_config, data_dir, tmp_path):
    from federation.pipeline import run_pipeline
    from simulations.report import render_report

    config = fedavg_config.replace(search_rounds=2, hold_rounds=1, train_rounds=1, reference_search=False,
                                   unit="client", client_epsilon=1.0, train_variants="dp_ticket")
    run_dir = RunDirectory.create(tmp_path / "run")
    run_dir.write_config(config.to_dict())
    summary = run_pipeline(InProcessGrid(config, data_dir), config, run_dir, progress=lambda line: None)
    train = summary["train-epsilon"]
    assert 0 < train["rdp"]["client"] <= config.train_epsilon and train["clients-per-round"] == 3
    assert "client-level DP-FedAvg" in summary["guarantee"] and "must be trusted" in summary["guarantee"]
    whole = summary["whole-run"]
    assert math.isinf(whole["epsilon"])  # record level against the server: the updates reach it exactly
    assert whole["client-level-epsilon"] == pytest.approx(summary["epsilon"]["client"]["total"] + train["rdp"]["client"])
    assert "At client level, everything it publishes is" in whole["statement"]
    head = render_report(run_dir.path).markdown.read_text().split("## 1. Run", 1)[0]
    assert "| training, DP-FedAvg (client level, RDP ε" in head


@pytest.mark.parametrize("bad", ["nan", "inf", "zero", "no-metrics", "other-metrics-key"])
def test_a_reply_that_cannot_be_clipped_is_left_out_and_the_round_releases_nothing(fedavg_config, tmp_path, bad):
    """A NaN update would pass Flower's min(1, C / norm) unclipped; a zero one divides by zero; a reply
    without FedAvg's metric record breaks the equal weights. Each is left out, so the round is short of
    m replies: nothing is averaged, noised, published or charged."""
    import numpy as np
    from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

    from federation.dp_fedavg import DpFedAvgTraining
    from federation.ticket_training import MaskedFedAvg
    from strategies import keys

    run_dir = RunDirectory.create(tmp_path / "run")
    charge = training_fedavg(fedavg_config, run_dir)
    strategy = DpFedAvgTraining(inner=MaskedFedAvg(ticket=None), charge=charge, masks=None, run_dir=run_dir,
                                variant="dense")
    strategy.dp.current_arrays = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    strategy.dp._pending_events[1] = None  # what the wrapper's configure_train leaves for round 1

    def reply(values, metrics_key=keys.METRICS_KEY):
        content = RecordDict({keys.ARRAYS_KEY: ArrayRecord({"w": Array(np.array(values, np.float32))})})
        if metrics_key is not None:
            content[metrics_key] = MetricRecord({"num-examples": 5})
        return Message(content, dst_node_id=1, message_type="train")

    odd = {"nan": reply([np.nan, 100, 100, 100]), "inf": reply([np.inf, 0, 0, 0]), "zero": reply([0, 0, 0, 0]),
           "no-metrics": reply([0.1, 0, 0, 0], metrics_key=None),
           "other-metrics-key": reply([0.1, 0, 0, 0], metrics_key="other")}[bad]
    arrays, _ = strategy.aggregate_train(1, [reply([1, 1, 1, 1]), reply([2, 2, 2, 2]), odd])
    assert arrays is None and strategy.rounds_trained == 0
    assert Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events == ()
