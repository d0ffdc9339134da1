"""The device's own privacy policy against a hostile server (DESIGN.md 5.4b), on the in-process grid.

The "server" here is the test: it crafts each message itself, as a hostile ServerApp would, and
sends it to the real ClientApp of a node with a privacy policy and its own log. Every request
outside the policy must come back as an error reply naming the rule, with nothing on the log.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from flwr.app import Message

from federation.config import Config, ConfigError, check_names
from federation.device_log import DeviceLog
from federation.device_policy import DevicePolicy, device_policy_of, simulation_node_config
from federation.node_check import check_node, format_node_check
from strategies import keys
from strategies.votes import collect_votes, refusal_rule

from ..policy_requests import train_message, vote_message
from .conftest import InProcessGrid

pytestmark = pytest.mark.usefixtures("server_identity")

PER_VOTE = 0.5


def _vote_message(config: Config, node: int, *, epsilon: float = PER_VOTE, **fields: Any) -> Message:
    """A train.vote message as any server could build it (at the policy's ε unless told otherwise)."""
    return vote_message(config, node, epsilon=epsilon, **fields)


@pytest.fixture
def guarded(small_config, data_dir, tmp_path):
    """A grid whose node 0 has its own policy (ε ≤ 0.5 a vote, Laplace only, n ≥ 64, budget 10) and log."""
    grid = InProcessGrid(small_config, data_dir)
    node = grid.node_of(0)
    log = tmp_path / "device.jsonl"
    grid.contexts[node].node_config.update({
        "max-vote-epsilon": PER_VOTE, "mechanisms": "laplace-topk", "min-examples": 64,
        "privacy-log": str(log), "max-epsilon": 10.0,
    })
    for key in ("noise-seed",):  # the derived simulation policy must not leak into this device's own
        grid.contexts[node].node_config.pop(key, None)
    return grid, node, DeviceLog(path=log)


def _releases(log: DeviceLog) -> list[dict[str, Any]]:
    """The log's release lines (refusals, ε = 0, are noted beside them)."""
    return [line for line in log.entries() if line["kind"] != "refused"]


def _reply(grid: InProcessGrid, message: Message) -> Message:
    (reply,) = grid.send_and_receive([message])
    return reply


def test_an_honest_request_within_the_policy_is_answered_and_logged(guarded, small_config):
    grid, node, log = guarded
    reply = _reply(grid, _vote_message(small_config, node))
    assert not reply.has_error()
    assert set(reply.content[keys.METRICS_KEY]) == {"scored-examples"}  # W1: no timing leaves the device
    (line,) = log.entries()
    assert (line["kind"], float(line["epsilon"])) == ("vote", PER_VOTE)


@pytest.mark.parametrize(
    ("rule", "vote", "run", "epsilon"),
    [
        ("max-vote-epsilon", {}, {}, 5.0),  # ε above the device's per-vote cap
        ("max-vote-epsilon", {}, {"unit": "client"}, math.inf),  # plain top-k (no local noise)
        ("sensitivity", {keys.SENSITIVITY_FIELD: 1.0 / (2 * 128)}, {}, PER_VOTE),  # Δ below C/n: less noise
        ("noise-seed", {}, {"noise-seed": 7}, PER_VOTE),  # noise the server could predict
        ("mechanisms", {keys.MECHANISM_FIELD: "gumbel-topk"}, {}, PER_VOTE),  # a mechanism it does not run
        ("min-examples", {keys.MIN_EXAMPLES_FIELD: 16}, {}, PER_VOTE),  # fewer examples than it allows
        # Training before a record-level vote voids Δ = C/n (DESIGN.md 4), whatever unit the server claims.
        ("score-train-epochs", {}, {"unit": "client", "score-train-epochs": 1}, PER_VOTE),
    ],
)
def test_a_hostile_vote_request_is_refused_by_its_rule_and_releases_nothing(
    guarded, small_config, rule, vote, run, epsilon
):
    grid, node, log = guarded
    message = _vote_message(small_config, node, vote=vote, run=run, epsilon=epsilon)
    reply = _reply(grid, message)
    assert reply.has_error() and refusal_rule(reply) == rule, reply.error.reason
    assert _releases(log) == []  # nothing released ...
    (note,) = log.entries()  # ... and the refusal is on the device's own log, with its rule (ε = 0)
    assert (note["kind"], note["request"], note["rule"], float(note["epsilon"])) == ("refused", "vote", rule, 0.0)
    assert reply.error.code == 6  # Flower's precondition error (ErrorCode.MOD_FAILED_PRECONDITION), not a crash
    collection = collect_votes([reply], domains=(), server_round=1, expected_nodes=[node])
    assert (collection.failed, collection.participants, dict(collection.refused)) == (1, (), {rule: 1})


def test_a_data_free_score_after_local_training_is_never_priced_at_zero(guarded, small_config):
    """B1: magnitude of weights trained on the device's examples reads them: an unnoised ε = inf release."""
    grid, node, log = guarded
    run = {"unit": "client", "score": "magnitude", "score-train-epochs": 1}
    refused = _reply(grid, _vote_message(small_config, node, run=run, score_source="data-free"))
    assert refusal_rule(refused) == "max-vote-epsilon" and "inf" in refused.error.reason
    grid.contexts[node].node_config.update({"max-vote-epsilon": "inf"})
    grid.contexts[node].node_config.pop("max-epsilon")
    answered = _reply(grid, _vote_message(small_config, node, run=run, score_source="data-free"))
    assert not answered.has_error()
    assert [line["epsilon"] for line in _releases(log)] == ["inf"]  # the log tells the truth
    # ... and the run config that would plan it as ε = 0 is refused before anything runs.
    with pytest.raises(ConfigError, match="score-train-epochs must be 0 with the data-free score 'magnitude'"):
        check_names(small_config.replace(unit="client", score="magnitude", score_train_epochs=1))


def test_a_data_free_vote_of_public_weights_costs_nothing(guarded, small_config):
    grid, node, log = guarded
    reply = _reply(grid, _vote_message(small_config, node, run={"score": "magnitude"}, score_source="data-free"))
    assert not reply.has_error()
    assert [float(line["epsilon"]) for line in log.entries()] == [0.0]


def test_train_is_refused_under_a_budget_and_logged_as_infinite_without_one(guarded, small_config):
    grid, node, log = guarded
    refused = _reply(grid, train_message(small_config, node))
    assert refusal_rule(refused) == "train" and _releases(log) == []
    grid.contexts[node].node_config.pop("max-epsilon")
    answered = _reply(grid, train_message(small_config, node))
    assert not answered.has_error()
    (line,) = _releases(log)
    assert (line["kind"], line["epsilon"]) == ("train", "inf")


def test_the_noise_is_calibrated_to_the_devices_own_delta_not_the_servers(guarded, small_config):
    """A Δ above C/n (more noise than the server charged) is refused too: the ledger must match the release."""
    grid, node, log = guarded
    reply = _reply(grid, _vote_message(small_config, node, vote={keys.SENSITIVITY_FIELD: 1.0}))
    assert refusal_rule(reply) == "sensitivity" and _releases(log) == []


@pytest.mark.parametrize(
    ("rule", "vote", "delta"),
    [
        (None, {}, 1e-6),  # an honest Gaussian vote within the policy is answered
        ("max-vote-delta", {}, 1e-3),  # δ above the device's per-vote cap
        # Δ₂ taken as C/n, the √2 of replace-one forgotten: the device would add too little noise.
        ("sensitivity", {keys.SENSITIVITY_FIELD: 1.0 / 128}, 1e-6),
        ("mechanisms", {}, 1e-6),  # a device that runs Laplace only
    ],
)
def test_a_gaussian_vote_is_bounded_by_the_devices_delta_and_its_own_l2_sensitivity(
    guarded, small_config, rule, vote, delta
):
    grid, node, log = guarded
    if rule != "mechanisms":
        grid.contexts[node].node_config.update({"mechanisms": "laplace-topk,gaussian-topk", "max-vote-delta": 1e-5})
    reply = _reply(grid, _vote_message(small_config, node, vote=vote, delta=delta))
    if rule is None:
        assert not reply.has_error(), reply.error.reason
        (line,) = log.entries()
        assert (line["kind"], float(line["epsilon"])) == ("vote", PER_VOTE)
    else:
        assert reply.has_error() and refusal_rule(reply) == rule, reply.error.reason
        assert _releases(log) == []


def test_the_policy_comes_from_the_node_config_with_safe_defaults_and_clear_errors(tmp_path):
    default = device_policy_of({})
    assert (default.max_vote_epsilon, default.max_vote_delta, default.mechanisms, default.min_examples, default.log) == (
        1.0, 1e-5, ("laplace-topk", "gumbel-topk", "gaussian-topk"), 1, None)
    with pytest.raises(ConfigError, match="max-vote-delta must be a number in \\[0, 1\\)"):
        device_policy_of({"max-vote-delta": 2})
    assert default.max_train_delta == 1e-5
    with pytest.raises(ConfigError, match="max-train-delta must be a number in \\[0, 1\\)"):
        device_policy_of({"max-train-delta": 1})
    policy = device_policy_of({"max-vote-epsilon": "inf", "mechanisms": "gumbel-topk", "min-examples": 32})
    assert (policy.max_vote_epsilon, policy.mechanisms, policy.min_examples) == (math.inf, ("gumbel-topk",), 32)
    with pytest.raises(ConfigError, match="mechanisms must be a comma-separated list of laplace-topk, gumbel-topk, gaussian-topk"):
        device_policy_of({"mechanisms": "exponential"})
    with pytest.raises(ConfigError, match="max-vote-epsilon in the node config must be a number"):
        device_policy_of({"max-vote-epsilon": "lots"})
    with pytest.raises(ConfigError, match="min-examples must be an int >= 1"):
        DevicePolicy(min_examples=0)


def test_a_simulation_derives_each_nodes_policy_from_the_run_config():
    config = Config(epsilon=2.0, reference_search=False, mechanism="gumbel-topk", score_examples=256, noise_seed=5)
    policy = device_policy_of(simulation_node_config(config))
    assert (policy.max_vote_epsilon, policy.mechanisms, policy.min_examples, policy.noise_seed) == (
        2.0, ("gumbel-topk",), 256, 5)
    assert device_policy_of(simulation_node_config(Config())).max_vote_epsilon == math.inf  # the ε = inf reference
    assert "noise-seed" not in simulation_node_config(Config())
    assert device_policy_of(simulation_node_config(Config(train_delta=1e-4))).max_train_delta == 1e-4


def test_check_node_prints_the_policy(small_config, data_dir, tmp_path):
    node_config = {"partition-id": 0, "num-partitions": 3, "data-dir": str(data_dir), "max-vote-epsilon": 0.25,
                   "min-examples": 512, "privacy-log": str(tmp_path / "log.jsonl"), "max-epsilon": 4}
    check = check_node(node_config, small_config)
    text = format_node_check(check)
    assert "max ε per vote 0.25, max δ per vote 1e-05; mechanisms laplace-topk, gumbel-topk, gaussian-topk; scores >= 512 examples" in text
    assert "max-epsilon 4: train is refused (ε = inf)" in text
    assert not check.ready and any("min-examples 512" in problem for problem in check.problems)
