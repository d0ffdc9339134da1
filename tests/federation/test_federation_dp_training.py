"""Record-level DP-SGD of ticket training (DESIGN.md 5.8): masks, accounting, the device's budget.

The device (the real ClientApp on the in-process grid) computes its noise, keeps its accountant in
its ``Context.state`` across rounds, and logs each round's ε; the server charges each reply to the
training ledger. The figures are cross-checked against Opacus' own accountant.
"""

from __future__ import annotations

import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
from flwr.app import Array, ArrayRecord, Message
from opacus.accountants import RDPAccountant

from federation.config import Config, ConfigError, check_names
from federation.device_log import DeviceLog
from federation.dp_training import DpSgdRound, dp_train_epochs, plan_round
from federation.layout import PHASE_TRAIN, TRAIN_LEDGER_FILE
from federation.messages import (DP_STEPS_FIELD, NOISE_MULTIPLIER_FIELD, NUM_EXAMPLES_FIELD, SAMPLE_RATE_FIELD,
                                 TRAIN_PRIVACY_KEY)
from federation.model_io import build_model
from federation.pipeline import test_set as server_test_set
from federation.pipeline import config_record, training_charge
from federation.rundir import RunDirectory
from federation.ticket_training import dp_sgd_reply_event, train_variant
from models import apply_masks, prunable_layers, remove_masks
from privacy import DP_SGD, Ledger, dp_sgd_epsilon, rdp_epsilon
from privacy.dp_sgd import RDP_ORDERS
from strategies import keys
from strategies.votes import refusal_rule

from ..policy_requests import train_message
from .conftest import InProcessGrid

pytestmark = pytest.mark.usefixtures("server_identity")

EXAMPLES = 300  # small_config's max-examples-per-client


@pytest.fixture
def dp_config(small_config: Config) -> Config:
    return small_config.replace(train_privacy="dp-sgd", train_epsilon=2.0, baselines=False, train_rounds=2)


def _masks(model: torch.nn.Module, seed: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(layer.weight.shape, generator=generator) < 0.3
            for name, layer in prunable_layers(model).items()}


def _with_ticket(message: Message, masks: dict[str, torch.Tensor]) -> Message:
    message.content[keys.TICKET_KEY] = ArrayRecord(
        {f"{keys.MASK_PREFIX}{name}": Array(mask.numpy()) for name, mask in masks.items()})
    return message


def _opacus_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    """Opacus' own RDP figure for the same (σ, q, steps) history, on the ledger's (integer) orders."""
    accountant = RDPAccountant()
    accountant.history = list(history)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "optimal order is the largest alpha": a note, not an error
        return float(accountant.get_epsilon(delta, alphas=list(RDP_ORDERS)))


def test_pruned_weights_stay_exactly_zero_under_dp_sgd(small_config):
    model = build_model(small_config, seed=0)
    masks = _masks(model)
    apply_masks(model, masks)
    remove_masks(model)
    before = {name: layer.weight.detach().clone() for name, layer in prunable_layers(model).items()}
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(96, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (96,), generator=generator)
    planned = DpSgdRound(noise_multiplier=1.0, sample_rate=0.25, steps=8, clip=1.0, delta=1e-5, epsilon=1.0,
                         total_epsilon=1.0)
    loss = dp_train_epochs(model, images, labels, planned=planned, masks=masks, lr=0.1, momentum=0.9,
                           weight_decay=1e-3, generator=torch.Generator().manual_seed(2))
    assert math.isfinite(loss)
    for name, layer in prunable_layers(model).items():
        weight = layer.weight.detach()
        assert torch.count_nonzero(weight[~masks[name]]) == 0, name  # exactly zero, not small
        assert not torch.equal(weight[masks[name]], before[name][masks[name]]), name  # the kept ones trained


def test_dp_sgd_rounds_on_the_device_are_logged_charged_and_match_opacus(dp_config, data_dir, tmp_path):
    """Two rounds on one device: its log's Σε is the RDP ε of both, and so is the ledger's figure."""
    grid = InProcessGrid(dp_config, data_dir)
    node = grid.node_of(0)
    log = DeviceLog(path=tmp_path / "device.jsonl")
    grid.contexts[node].node_config["privacy-log"] = str(log.path)
    masks = _masks(build_model(dp_config, seed=dp_config.seed))
    events, history = [], []
    for server_round in (1, 2):
        (reply,) = grid.send_and_receive([_with_ticket(train_message(dp_config, node), masks)])
        assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
        metrics = reply.content[keys.METRICS_KEY]
        history.append((float(metrics[NOISE_MULTIPLIER_FIELD]), float(metrics[SAMPLE_RATE_FIELD]),
                        int(metrics[DP_STEPS_FIELD])))
        weights = reply.content[keys.ARRAYS_KEY]
        for name, mask in masks.items():
            assert (weights[f"{name}.weight"].numpy()[~mask.numpy()] == 0).all()
        events.append(dp_sgd_reply_event(reply, server_round=server_round, variant="dp_ticket",
                                         clip=dp_config.train_clip, delta=dp_config.train_delta))
    assert history[0] == history[1] and history[0][1] == pytest.approx(1 / math.ceil(EXAMPLES / 32))
    opacus = _opacus_epsilon(history, dp_config.train_delta)
    ledger = rdp_epsilon(events, target_delta=dp_config.train_delta)
    assert ledger == pytest.approx(opacus, rel=1e-6)
    assert {event.mechanism for event in events} == {DP_SGD} and {event.participants for event in events} == {("partition-0",)}
    lines = [line for line in log.entries() if line["kind"] == "train"]
    assert len(lines) == 2
    assert math.fsum(float(line["epsilon"]) for line in lines) == pytest.approx(opacus, rel=1e-6)
    # The devices calibrate to the whole training: 2 models (baselines off) x 2 rounds, within train-epsilon.
    full = _opacus_epsilon([history[0]] * 4, dp_config.train_delta)
    assert full <= dp_config.train_epsilon and full > 0.9 * dp_config.train_epsilon


def test_a_device_with_max_epsilon_answers_a_dp_sgd_round_that_fits_and_refuses_one_that_does_not(
    dp_config, data_dir, tmp_path
):
    first = plan_round(dp_config, num_examples=EXAMPLES, history=[])
    step = (first.noise_multiplier, first.sample_rate, first.steps)
    second = plan_round(dp_config, num_examples=EXAMPLES, history=[step])
    assert 0 < second.epsilon < first.epsilon  # the device logs the increase of its RDP total
    grid = InProcessGrid(dp_config, data_dir)
    node = grid.node_of(0)
    log = DeviceLog(path=tmp_path / "device.jsonl")
    grid.contexts[node].node_config.update(
        {"privacy-log": str(log.path), "max-epsilon": first.epsilon + 0.5 * second.epsilon})
    (answered,) = grid.send_and_receive([train_message(dp_config, node)])
    assert not answered.has_error()
    (refused,) = grid.send_and_receive([train_message(dp_config, node)])
    assert refusal_rule(refused) == "max-epsilon"
    releases = [line for line in log.entries() if line["kind"] == "train"]
    assert [float(line["epsilon"]) for line in releases] == [pytest.approx(first.epsilon)]
    # Plain SGD (ε = inf) is still refused under the same budget.
    (plain,) = grid.send_and_receive([train_message(dp_config.replace(train_privacy="none"), node)])
    assert refusal_rule(plain) == "train"


def test_a_train_epsilon_too_small_is_refused_up_front_and_by_the_device(dp_config, data_dir):
    tiny = dp_config.replace(train_epsilon=1e-7)
    with pytest.raises(ConfigError, match="train-epsilon must be large enough for DP-SGD"):
        check_names(tiny)
    check_names(dp_config)
    grid = InProcessGrid(dp_config, data_dir)
    node = grid.node_of(0)
    (reply,) = grid.send_and_receive([train_message(tiny, node)])  # a server that skipped the check
    assert refusal_rule(reply) == "train-epsilon"
    assert "raise train-epsilon" in reply.error.reason


def test_a_device_refuses_dp_sgd_at_a_delta_above_its_own_cap(dp_config, data_dir):
    grid = InProcessGrid(dp_config, data_dir)
    node = grid.node_of(0)
    grid.contexts[node].node_config.pop("max-train-delta")  # the device's own default: 1e-5
    (reply,) = grid.send_and_receive([train_message(dp_config.replace(train_delta=1e-3), node)])
    assert refusal_rule(reply) == "max-train-delta"
    (answered,) = grid.send_and_receive([train_message(dp_config, node)])
    assert not answered.has_error()


def test_a_hostile_server_asking_more_rounds_than_its_budget_allows_is_refused(dp_config, data_dir):
    grid = InProcessGrid(dp_config, data_dir)
    node = grid.node_of(0)
    rounds = 2 * dp_config.train_rounds  # baselines off: the budget covers 2 models x train-rounds
    replies = [grid.send_and_receive([train_message(dp_config, node)])[0] for _ in range(rounds + 1)]
    assert all(not reply.has_error() for reply in replies[:rounds])
    assert refusal_rule(replies[-1]) == "train-epsilon"


@pytest.mark.parametrize(("key", "value"), [("train-privacy", "dp-secagg"), ("train-epsilon", math.inf),
                                            ("train-delta", 1.0), ("train-clip", 0.0)])
def test_the_config_keys_are_validated_in_one_line(key, value):
    with pytest.raises(ConfigError, match=f"^{key} must be"):
        Config.from_mapping({key: value})


def test_ticket_training_charges_every_dp_sgd_reply_to_the_training_ledger(dp_config, data_dir, tmp_path):
    run_dir = RunDirectory.create(tmp_path / "run")
    grid = InProcessGrid(dp_config, data_dir)
    charge = training_charge(dp_config, run_dir)
    assert charge is not None and training_charge(dp_config.replace(train_privacy="none"), run_dir) is None
    result = train_variant(grid, dp_config, run_dir, variant="dense", ticket=None, test_set=server_test_set(dp_config),
                           config_record=config_record(dp_config), progress=lambda line: None, dp_sgd=charge)
    assert result["rounds"] == dp_config.train_rounds
    events = Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events
    assert len(events) == dp_config.num_clients * dp_config.train_rounds
    assert {(e.phase, e.mechanism, e.domain) for e in events} == {(PHASE_TRAIN, DP_SGD, "dense")}
    for client in {e.participants[0] for e in events}:
        mine = [e for e in events if e.participants == (client,)]
        steps = [(e.noise_scale / e.sensitivity, e.sample_rate, e.steps) for e in mine]
        assert rdp_epsilon(mine, target_delta=dp_config.train_delta) == pytest.approx(
            dp_sgd_epsilon(steps, delta=dp_config.train_delta), rel=1e-12)
        assert rdp_epsilon(mine, target_delta=dp_config.train_delta) == pytest.approx(
            _opacus_epsilon(steps, dp_config.train_delta), rel=1e-6)
    totals = charge.accountant.totals()
    assert totals.record_rdp_epsilon_max <= dp_config.train_epsilon


def test_a_whole_run_with_dp_sgd_charges_the_training_ledger_and_reports_it(dp_config, data_dir, tmp_path):
    from federation.layout import LEDGER_FILE
    from federation.pipeline import run_pipeline

    config = dp_config.replace(search_rounds=2, hold_rounds=1, train_rounds=1, reference_search=False)
    run_dir = RunDirectory.create(tmp_path / "run")
    run_dir.write_config(config.to_dict())
    summary = run_pipeline(InProcessGrid(config, data_dir), config, run_dir, progress=lambda line: None)
    events = Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events
    assert {(e.phase, e.domain) for e in events} == {(PHASE_TRAIN, "dp_ticket")}  # no reference, no baselines
    assert len(events) == config.num_clients * config.train_rounds
    assert all(e.phase != PHASE_TRAIN for e in Ledger(run_dir.file(LEDGER_FILE)).events)  # the search's stays its own
    train = summary["train-epsilon"]
    assert 0 < train["rdp"]["record-max"] <= config.train_epsilon and train["budget"] == config.train_epsilon
    assert "record-level DP-SGD" in summary["ticket-training"] and "record-level DP-SGD" in summary["guarantee"]
    # The whole run: the search's ε and the training's RDP figure doubled (replace-one, group privacy), composed.
    whole = summary["whole-run"]
    assert whole["epsilon"] == pytest.approx(summary["epsilon"]["record"]["max"] + 2 * train["rdp"]["record-max"])
    assert whole["statement"].startswith("Everything this run releases") and whole["delta"] < 1e-3
    # The report shows the training's budget beside the search's, the whole-run sentence and its plot.
    from simulations.report import render_report

    paths = render_report(run_dir.path)
    head = paths.markdown.read_text().split("## 1. Run", 1)[0]
    assert whole["statement"] in head and "| training, DP-SGD (per client, largest RDP ε" in head
    assert "epsilon_per_phase.png" in {path.name for path in paths.plots}


def test_a_train_reply_without_its_dp_sgd_figures_is_dropped_and_charged_as_infinite(dp_config, data_dir, tmp_path):
    from privacy import UNACCOUNTED

    run_dir = RunDirectory.create(tmp_path / "run")
    charge = training_charge(dp_config, run_dir)
    grid = InProcessGrid(dp_config, data_dir)
    good, bad, anonymous = (grid.send_and_receive([train_message(dp_config, grid.node_of(i))])[0] for i in range(3))
    del bad.content[keys.METRICS_KEY][NOISE_MULTIPLIER_FIELD]
    del anonymous.content[keys.METRICS_KEY][SAMPLE_RATE_FIELD]
    anonymous.content[TRAIN_PRIVACY_KEY][keys.CLIENT_ID_FIELD] = "not an id!"
    kept = charge.charge(1, "dense", [good, bad, anonymous])
    assert kept == [good]
    events = Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events
    assert [(e.participants, e.mechanism, e.epsilon) for e in events][1:] == [(("partition-1",), UNACCOUNTED, math.inf)]
    assert events[0].mechanism == DP_SGD and events[0].participants == ("partition-0",)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), sigma=st.floats(0.3, 5.0), rate=st.floats(0.05, 1.0),
       density=st.floats(0.0, 1.0), momentum=st.sampled_from([0.0, 0.9]), decay=st.sampled_from([0.0, 1e-2]))
def test_property_no_pruned_weight_ever_moves_under_dp_sgd(seed, sigma, rate, density, momentum, decay):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    generator = torch.Generator().manual_seed(seed)
    masks = {name: torch.rand(layer.weight.shape, generator=generator) < density
             for name, layer in prunable_layers(model).items()}
    apply_masks(model, masks)
    remove_masks(model)
    images, labels = torch.randn(20, 1, 8, 8, generator=generator), torch.randint(0, 3, (20,), generator=generator)
    planned = DpSgdRound(noise_multiplier=sigma, sample_rate=rate, steps=5, clip=1.0, delta=1e-5, epsilon=1.0,
                         total_epsilon=1.0)
    dp_train_epochs(model, images, labels, planned=planned, masks=masks, lr=0.5, momentum=momentum,
                    weight_decay=decay, generator=generator)
    for name, layer in prunable_layers(model).items():
        assert torch.count_nonzero(layer.weight.detach()[~masks[name]]) == 0


def test_a_dp_sgd_train_reply_releases_only_the_noised_weights_and_the_accounting_figures(dp_config, data_dir):
    """No unnoised figure of the private records (such as the training loss) leaves the device.

    The reply may hold the DP-SGD weights, (σ, q, steps), the client id and num-examples; the last
    is the partition's size, public by policy (client_app's comment), and q is a function of it.
    """
    grid = InProcessGrid(dp_config, data_dir)
    node = grid.node_of(0)
    (reply,) = grid.send_and_receive([train_message(dp_config, node)])
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    assert set(reply.content.keys()) == {keys.ARRAYS_KEY, keys.METRICS_KEY, TRAIN_PRIVACY_KEY}
    metrics = reply.content[keys.METRICS_KEY]
    assert set(metrics.keys()) == {NUM_EXAMPLES_FIELD, NOISE_MULTIPLIER_FIELD, SAMPLE_RATE_FIELD, DP_STEPS_FIELD}
    assert metrics[NUM_EXAMPLES_FIELD] == EXAMPLES
    assert float(metrics[SAMPLE_RATE_FIELD]) == pytest.approx(1 / math.ceil(EXAMPLES / 32))
    assert set(reply.content[TRAIN_PRIVACY_KEY].keys()) == {keys.CLIENT_ID_FIELD}
    assert set(reply.content[keys.ARRAYS_KEY].keys()) == set(build_model(dp_config).state_dict().keys())


def test_the_training_budget_is_shared_only_by_the_models_the_run_trains(small_config):
    from federation.config import trained_variants
    from federation.dp_training import models_trained

    assert trained_variants(small_config) == ("dense", "dp_ticket", "nonprivate_ticket", "random_ticket")
    assert models_trained(small_config) == 4
    no_reference = small_config.replace(reference_search=False, baselines=False)
    assert trained_variants(no_reference) == ("dp_ticket", "nonprivate_ticket")
    assert models_trained(no_reference) == 1  # a private search without a reference has no second ticket
    assert models_trained(small_config.replace(epsilon=math.inf, baselines=False)) == 1  # one ticket, trained once
    only = small_config.replace(train_variants="dp_ticket, dense")
    assert trained_variants(only) == ("dense", "dp_ticket") and models_trained(only) == 2
    # A device given the whole budget for one model calibrates less noise than one sharing it with three more.
    alone = plan_round(only.replace(train_privacy="dp-sgd", train_variants="dp_ticket"), num_examples=EXAMPLES, history=[])
    shared = plan_round(only.replace(train_privacy="dp-sgd", train_variants=""), num_examples=EXAMPLES, history=[])
    assert alone.noise_multiplier < shared.noise_multiplier


@pytest.mark.parametrize("value", ["dp-ticket", "dense,dense", "dense,,dp_ticket"])
def test_train_variants_names_the_known_models_once(value):
    with pytest.raises(ConfigError, match="^train-variants must be empty or a comma-separated list"):
        Config.from_mapping({"train-variants": value})


def test_train_variants_refuses_a_non_private_ticket_the_run_does_not_have(small_config):
    with pytest.raises(ConfigError, match="^train-variants must be without nonprivate_ticket unless reference-search"):
        check_names(small_config.replace(reference_search=False, train_variants="nonprivate_ticket"))
    check_names(small_config.replace(reference_search=True, train_variants="nonprivate_ticket"))


def test_a_resumed_run_neither_retrains_past_the_budget_nor_forgets_a_release(dp_config, data_dir, tmp_path):
    """The devices of a resumed run start new accountants; the server's training ledger does not.
    Training again would exceed train-epsilon, so every round is refused before it is sent: the
    ledger keeps every earlier release once, nothing is charged twice, and summary and report say why."""
    from federation.pipeline import run_pipeline
    from simulations.report import render_report

    config = dp_config.replace(search_rounds=2, hold_rounds=1, train_rounds=2, reference_search=False,
                               train_variants="dp_ticket")
    run_dir = RunDirectory.create(tmp_path / "run")
    run_dir.write_config(config.to_dict())
    first = run_pipeline(InProcessGrid(config, data_dir), config, run_dir, progress=lambda line: None)
    assert first["training"]["dp_ticket"] == {"rounds-completed": 2, "stop-reason": None}
    assert first["status"] == "completed"
    charged = [e.event_id for e in Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events]
    assert len(charged) == config.num_clients * config.train_rounds
    trained = run_dir.file("weights.safetensors").read_bytes()

    lines: list[str] = []
    again = run_pipeline(InProcessGrid(config, data_dir), config, run_dir, progress=lines.append)  # fresh devices
    assert [e.event_id for e in Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events] == charged  # no charge twice
    stop = again["training"]["dp_ticket"]
    assert stop["rounds-completed"] == 0 and "refused before it was sent" in stop["stop-reason"]
    assert "over train-epsilon 2" in stop["stop-reason"] and "partition-" not in stop["stop-reason"]
    assert again["status"] == "stopped" and any("training of dp_ticket stopped" in line for line in lines)
    assert again["train-epsilon"]["rdp"]["record-max"] <= config.train_epsilon
    assert run_dir.file("weights.safetensors").read_bytes() == trained  # θ0 does not replace the trained model
    header = render_report(run_dir.path).markdown.read_text().split("## 2.", 1)[0]
    assert "| training stop reason | dp_ticket stopped after 0 round(s): round 1 of dp_ticket refused" in header


def test_training_stops_cleanly_when_every_device_refuses_its_dp_sgd_budget(dp_config, data_dir, tmp_path):
    run_dir = RunDirectory.create(tmp_path / "run")
    grid = InProcessGrid(dp_config, data_dir)
    lines: list[str] = []
    # The devices read train-epsilon from the run config they are sent: one no noise multiplier reaches.
    result = train_variant(grid, dp_config, run_dir, variant="dense", ticket=None, test_set=server_test_set(dp_config),
                           config_record=config_record(dp_config.replace(train_epsilon=1e-7)), progress=lines.append,
                           dp_sgd=training_charge(dp_config, run_dir))
    assert result["rounds"] == 0 and "every sampled device refused (rule train-epsilon" in result["stop-reason"]
    assert any("[train dense] stopped" in line for line in lines)
    assert Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events == ()  # a refusal releases nothing
    assert set(result["weights"]) and result["accuracy"] is not None


# The training's release journal (DpSgdCharge: admit, charge, settle), DESIGN.md 5.4 applied to DP-SGD.


def _train(config, grid, run_dir, charge, variant="dense"):
    return train_variant(grid, config, run_dir, variant=variant, ticket=None, test_set=server_test_set(config),
                         config_record=config_record(config), progress=lambda line: None, dp_sgd=charge)


def test_a_training_round_interrupted_after_it_was_asked_is_charged_in_full_on_resume(dp_config, data_dir, tmp_path):
    """The server dies once round 2's messages may have left: the next process charges every admitted
    client round 2 at the price of its round 1 (devices price every round alike), once."""
    from federation.layout import TRAIN_JOURNAL_FILE
    from privacy import ReleaseJournal

    run_dir = RunDirectory.create(tmp_path / "run")
    grid = InProcessGrid(dp_config, data_dir, crash_after=3)  # identity query, round 1 (train, evaluate), crash
    with pytest.raises(RuntimeError, match="server crashed"):
        _train(dp_config, grid, run_dir, training_charge(dp_config, run_dir))
    first = Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events
    assert {e.round for e in first} == {1} and len(first) == dp_config.num_clients

    resumed = training_charge(dp_config, run_dir)
    settled = resumed.settle_interrupted_rounds()
    assert [(ask.round, len(ask.events)) for ask in settled] == [(2, dp_config.num_clients)]
    events = Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events
    by_round = {(e.round, e.participants[0]): e for e in events}
    for client in {e.participants[0] for e in first}:
        one, two = by_round[(1, client)], by_round[(2, client)]
        assert two.mechanism == DP_SGD and (two.noise_scale, two.sample_rate, two.steps) == (
            one.noise_scale, one.sample_rate, one.steps)
    assert resumed.settle_interrupted_rounds() == [] and training_charge(dp_config, run_dir).settle_interrupted_rounds() == []
    assert len(Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events) == 2 * dp_config.num_clients  # once, not twice
    assert [ask.round for ask in ReleaseJournal(run_dir.file(TRAIN_JOURNAL_FILE), read_only=True).settled()] == [2]


def test_a_first_round_interrupted_is_charged_at_the_devices_bound_and_then_refused(dp_config, data_dir, tmp_path):
    """Before any reply the server cannot know a device's σ, q and steps: each admitted client is charged
    the (train-epsilon, train-delta) its device calibrates its whole training to. Its budget is then
    spent, so training again is refused before anything is sent; the report shows that ε, not 0."""
    from federation.statement import replace_one_from_add_remove, whole_run
    from privacy import DEVICE_BOUND
    from simulations.report.ledger_reader import training_totals

    run_dir = RunDirectory.create(tmp_path / "run")
    with pytest.raises(RuntimeError, match="server crashed"):
        _train(dp_config, InProcessGrid(dp_config, data_dir, crash_after=1), run_dir, training_charge(dp_config, run_dir))
    assert Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events == ()  # nothing was charged before the crash

    charge = training_charge(dp_config, run_dir)
    result = _train(dp_config, InProcessGrid(dp_config, data_dir), run_dir, charge)  # settles first, then refuses
    events = Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events
    assert {(e.mechanism, e.epsilon, e.delta) for e in events} == {(DEVICE_BOUND, dp_config.train_epsilon,
                                                                   dp_config.train_delta)}
    assert len(events) == dp_config.num_clients
    assert result["rounds"] == 0 and "refused before it was sent" in result["stop-reason"]
    totals = training_totals(Ledger(run_dir.file(TRAIN_LEDGER_FILE)), dp_config)
    assert totals.record_rdp_epsilon_max is None and totals.record_epsilon_max == dp_config.train_epsilon
    run = whole_run(dp_config.replace(reference_search=False, epsilon=math.inf, score="magnitude"),
                    charge.accountant.totals(), totals)
    assert (run.phases[1].epsilon, run.phases[1].delta) == pytest.approx(
        replace_one_from_add_remove(dp_config.train_epsilon, dp_config.train_delta))


def test_a_round_charged_but_not_closed_is_not_charged_again(dp_config, data_dir, tmp_path):
    """Killed after the ledger's fsync and before the journal's close: the ledger has the attempt."""
    from federation.layout import TRAIN_JOURNAL_FILE

    run_dir = RunDirectory.create(tmp_path / "run")
    _train(dp_config.replace(train_rounds=1), InProcessGrid(dp_config, data_dir), run_dir,
           training_charge(dp_config, run_dir))
    journal = run_dir.file(TRAIN_JOURNAL_FILE)
    lines = journal.read_text().splitlines(keepends=True)
    assert ['"kind": "asked"' in lines[0], '"kind": "closed"' in lines[-1]] == [True, True]
    journal.write_text("".join(lines[:-1]))  # the close never reached the disk
    charged = Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events
    assert training_charge(dp_config, run_dir).settle_interrupted_rounds() == []
    assert Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events == charged


def test_a_client_charged_infinity_for_a_malformed_reply_is_left_out_and_the_others_train_on(
        dp_config, data_dir, tmp_path):
    """A reply without its figures, and one naming another client than its node declared, are dropped and
    charged ε = ∞ to the node's own client; those clients get no further round, the others train on."""
    from privacy import UNACCOUNTED

    run_dir = RunDirectory.create(tmp_path / "run")
    grid = InProcessGrid(dp_config, data_dir)
    charge = training_charge(dp_config, run_dir)
    messages = [train_message(dp_config, grid.node_of(i)) for i in range(dp_config.num_clients)]
    admitted, reason = charge.admit(grid, 1, "dense", messages, min_nodes=2)
    assert reason is None and len(admitted) == dp_config.num_clients
    replies = {r.content[TRAIN_PRIVACY_KEY][keys.CLIENT_ID_FIELD]: r for r in grid.send_and_receive(admitted)}
    del replies["partition-1"].content[keys.METRICS_KEY][NOISE_MULTIPLIER_FIELD]
    replies["partition-2"].content[TRAIN_PRIVACY_KEY][keys.CLIENT_ID_FIELD] = "partition-0"  # blames another
    assert charge.charge(1, "dense", list(replies.values())) == [replies["partition-0"]]
    unaccounted = {e.participants[0] for e in Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events if e.mechanism == UNACCOUNTED}
    assert unaccounted == {"partition-1", "partition-2"}
    again = [train_message(dp_config, grid.node_of(i)) for i in range(dp_config.num_clients)]
    admitted, reason = charge.admit(grid, 2, "dense", again, min_nodes=1)
    assert reason is None and [m.metadata.dst_node_id for m in admitted] == [grid.node_of(0)]
    charge.charge(2, "dense", [])
    # With min-replies above what is left, the round is refused before anything is sent or asked.
    asked = run_dir.file("ledger-train.journal.jsonl").read_text().count('"asked"')
    admitted, reason = charge.admit(grid, 3, "dense", again, min_nodes=2)
    assert admitted == [] and "1 client(s) may train, at least 2 needed" in reason
    assert "over train-epsilon 2" in reason
    assert run_dir.file("ledger-train.journal.jsonl").read_text().count('"asked"') == asked


def test_an_admitted_client_whose_reply_never_comes_is_charged_its_asked_price(dp_config, data_dir, tmp_path):
    """A reply that misses the round's timeout still reached the SuperLink: the device trained and released."""
    from privacy import DEVICE_BOUND

    run_dir = RunDirectory.create(tmp_path / "run")
    grid = InProcessGrid(dp_config, data_dir)
    grid.silent.add(grid.node_of(1))  # trains nothing here, but the server cannot tell it from a late reply
    grid.dead.add(grid.node_of(2))  # an error reply: it released nothing
    known = {grid.node_of(i): f"partition-{i}" for i in range(dp_config.num_clients)}  # identified in the search
    result = _train(dp_config.replace(train_rounds=1, min_replies=1), grid, run_dir,
                    training_charge(dp_config, run_dir, identities=known))
    assert result["rounds"] == 1
    events = {e.participants[0]: e for e in Ledger(run_dir.file(TRAIN_LEDGER_FILE)).events}
    assert set(events) == {"partition-0", "partition-1"}
    assert (events["partition-0"].mechanism, events["partition-1"].mechanism) == (DP_SGD, DEVICE_BOUND)
