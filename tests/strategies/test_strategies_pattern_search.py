"""PrivacyGate(PatternSearch) on a fake grid: honest and hostile clients, failures, budget stop,
ledger totals and checkpoints."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from kernels import Ticket, enumerate_candidates
from privacy import (
    UNIT_CLIENT,
    UNIT_RECORD,
    Accountant,
    Ledger,
    RejectReason,
    SeededNoiseWarning,
    share,
)
from strategies import (
    DensitySchedule,
    PatternSearch,
    PrivacySettings,
    SearchSettings,
    StrategyError,
    build_domains,
    keys,
    plan_round_events,
    run_search,
)

ARRAYS = ArrayRecord()  # the public weights travel in this record; the fake clients ignore it


def _honest_grid(kit: SimpleNamespace, num: int = 6, special: dict | None = None) -> object:
    clients = {node: kit.honest_client for node in range(1, num + 1)}
    clients.update(special or {})
    return kit.FakeGrid(clients)


def _kept_kernels(ticket: Ticket, layer: str) -> set[int]:
    connectivity = ticket.layers[layer].connectivity
    assert connectivity is not None
    return set(np.flatnonzero(connectivity.reshape(-1).numpy()).tolist())


def test_honest_clients_find_the_planted_library_and_kernels(kit: SimpleNamespace) -> None:
    search = kit.make_search()
    grid = _honest_grid(kit)
    outcome = run_search(search, grid, arrays=ARRAYS)
    assert outcome.stop_reason is None and outcome.completed_round == 4
    ticket = outcome.ticket
    assert ticket is not None and ticket.metadata.round == 4
    library = enumerate_candidates(4)[torch.tensor(kit.planted_library)]
    assert torch.equal(ticket.layers["conv1"].library, library)
    assert _kept_kernels(ticket, "conv2") <= set(kit.planted_kernels)
    assert ticket.density() <= 0.3
    assert Ticket.load(search.state_dict()["ticket-path"]) == ticket  # saved every round
    metrics = outcome.metrics
    assert [metrics[r]["ticket-updated"] for r in (1, 2, 3, 4)] == [1, 1, 1, 1]
    assert "jaccard" not in metrics[1]  # nothing to compare with
    assert all(0.5 < metrics[r]["jaccard"] <= 1.0 for r in (2, 3, 4))
    assert metrics[2]["density"] == 0.25 and metrics[1]["density"] > 0.25
    assert metrics[1]["rejected"] == 0 and metrics[1]["participants"] == 6
    assert metrics[1]["snr-local.patterns"] == pytest.approx(1.0 / (2 * 8 * 0.01 / 2.0))  # C / (2kΔ/ε)


def test_round_message_follows_the_documented_protocol(kit: SimpleNamespace) -> None:
    search = kit.make_search()
    grid = _honest_grid(kit, num=3)
    run_search(search, grid, arrays=ARRAYS, num_rounds=2, config=ConfigRecord({"run": "x"}))
    first, second = grid.sent
    message = second[0]
    assert message.metadata.message_type == keys.VOTE_MESSAGE_TYPE == "train.vote"
    content = message.content
    assert keys.TICKET_KEY not in first[0].content  # no ticket before round 1
    assert content[keys.CONFIG_KEY]["run"] == "x"
    config = content[keys.VOTE_CONFIG_KEY]
    assert config[keys.ROUND_FIELD] == 2 and config[keys.DOMAINS_FIELD] == ["patterns", "kernels:conv2"]
    assert config[keys.SENSITIVITY_FIELD] == pytest.approx(1.0 / kit.min_examples)
    assert config["patterns.epsilon"] + config["kernels:conv2.epsilon"] == pytest.approx(4.0)
    ticket = content[keys.TICKET_KEY]
    assert ticket[keys.LIBRARY_ARRAY].numpy().shape == (8, 3, 3)
    assert sorted(ticket) == ["library", "mask.conv1", "mask.conv2", "mask.fc"]  # the dense head is left out
    assert ticket["mask.conv2"].numpy().dtype == np.bool_


def test_hostile_and_failing_clients(kit: SimpleNamespace) -> None:
    def hostile(node: int, message: Message) -> RecordDict:
        server_round = int(message.content[keys.VOTE_CONFIG_KEY][keys.ROUND_FIELD])
        junk = {7: np.arange(56, dtype=np.int8), 8: np.array([1.0, math.nan]), 9: np.array([3, 3])}[node]
        return kit.vote_reply({"patterns": junk, "kernels:conv2": np.array([[1, 2]])}, server_round)

    search = kit.make_search()
    grid = _honest_grid(kit, num=6, special={7: hostile, 8: hostile, 9: hostile, 10: kit.failing_client,
                                             11: kit.silent_client})
    outcome = run_search(search, grid, arrays=ARRAYS, num_rounds=1)
    metrics = outcome.metrics[1]
    assert (metrics["replies"], metrics["failed"], metrics["participants"]) == (10, 1, 9)
    assert metrics["rejected.too-many"] == 1 and metrics["rejected.non-finite"] == 1
    assert metrics["rejected.duplicates"] == 1 and metrics["rejected.wrong-ndim"] == 3
    assert metrics["voters.patterns"] == 6 and metrics["voters.kernels:conv2"] == 6
    assert outcome.ticket is not None
    planted = enumerate_candidates(4)[torch.tensor(kit.planted_library)]
    assert torch.equal(outcome.ticket.layers["conv1"].library, planted)
    charged = search.accountant.record_epsilon_by_client()
    assert set(charged) == {str(n) for n in range(1, 10)}  # hostile replies are charged; "10" and "11" are not
    assert all(value == pytest.approx(4.0) for value in charged.values())


def test_ledger_equals_the_planned_events_of_the_clients_that_replied(kit: SimpleNamespace) -> None:
    flaky_rounds = {3: {1}, 5: {2, 3}}  # node -> rounds in which it crashes

    def flaky(node: int, message: Message) -> RecordDict:
        if int(message.content[keys.VOTE_CONFIG_KEY][keys.ROUND_FIELD]) in flaky_rounds[node]:
            raise RuntimeError("flaky")
        return kit.honest_client(node, message)

    privacy = PrivacySettings(epsilon_split={"patterns": 0.5, "kernels:conv2": 0.5}, record_epsilon=1.5,
                              min_examples=kit.min_examples, central_noise="laplace", client_epsilon=0.5,
                              noise_seed=3)
    settings = SearchSettings(kernel_vote_layers=("conv2",), clients_per_round=5, min_replies=2)
    with pytest.warns(SeededNoiseWarning):
        search = kit.make_search(privacy=privacy, settings=settings)
    grid = _honest_grid(kit, num=8, special={3: flaky, 5: flaky})
    outcome = run_search(search, grid, arrays=ARRAYS)
    assert outcome.completed_round == 4
    expected: Counter[str] = Counter()
    for server_round, sent in enumerate(grid.sent, start=1):
        crashed = {n for n, rounds in flaky_rounds.items() if server_round in rounds}
        repliers = sorted(str(m.metadata.dst_node_id) for m in sent if m.metadata.dst_node_id not in crashed)
        domains = build_domains(shapes=search.strategy.shapes,
                                policies=kit.policies, settings=settings, density=search.schedule.density(server_round))
        for event in plan_round_events(domains, privacy, participants=repliers, server_round=server_round):
            for client in event.charged_clients():
                expected[client] += event.epsilon
        assert outcome.metrics[server_round]["participants"] == len(repliers)
    ledger = Ledger(search.accountant.ledger.path)  # re-read from disk
    accountant = Accountant(ledger, record_epsilon_budget=math.inf, client_epsilon_budget=math.inf)
    assert accountant.record_epsilon_by_client() == pytest.approx(dict(expected))
    assert accountant.client_level_epsilon() == pytest.approx(4 * 0.5)
    assert ledger.num_batches == 4  # one batch per round
    assert {e.unit for e in ledger.events} == {UNIT_RECORD, UNIT_CLIENT}


def test_budget_refusal_stops_cleanly_and_keeps_the_last_ticket(kit: SimpleNamespace, tmp_path: Path) -> None:
    search = kit.make_search(record_budget=9.0)  # 4 per round: rounds 1 and 2 fit, round 3 would reach 12
    grid = _honest_grid(kit)
    outcome = run_search(search, grid, arrays=ARRAYS)
    assert outcome.stopped and "budget" in (outcome.stop_reason or "")
    assert outcome.completed_round == 2 and search.ticket is outcome.ticket
    assert outcome.ticket is not None and outcome.ticket.metadata.round == 2
    assert len(grid.sent) == 2  # round 3 sent nothing
    assert search.accountant.ledger.num_batches == 2
    assert max(search.accountant.record_epsilon_by_client().values()) == pytest.approx(8.0)


@pytest.mark.parametrize(("budget", "rounds"), [(1.0, 3), (1.0, 5), (0.3, 3)])
def test_a_search_runs_every_round_and_spends_at_most_its_budget_exactly(
    kit: SimpleNamespace, budget: float, rounds: int
) -> None:
    """T rounds of share(B, parts=T), split 0.2 / 0.8 (above 1 in exact arithmetic), record and central:
    no round is refused, and every client's Σε and the server's are <= B as rationals (DESIGN.md 5.4)."""
    per_round = share(budget, parts=rounds)
    privacy = PrivacySettings(epsilon_split={"patterns": 0.2, "kernels:conv2": 0.8}, record_epsilon=per_round,
                              min_examples=kit.min_examples, central_noise="laplace", client_epsilon=per_round,
                              noise_seed=5)
    schedule = DensitySchedule(start=4 / 9, target=0.25, decay_rounds=rounds - 1, hold_rounds=1)
    with pytest.warns(SeededNoiseWarning):
        search = kit.make_search(record_budget=budget, client_budget=budget, privacy=privacy, schedule=schedule)
    outcome = run_search(search, _honest_grid(kit), arrays=ARRAYS)
    assert outcome.stop_reason is None and outcome.completed_round == rounds
    events = Ledger(search.accountant.ledger.path).events
    for client in (str(node) for node in range(1, 7)):
        spent = [e.epsilon for e in events if e.unit == UNIT_RECORD and client in e.participants]
        assert len(spent) == 2 * rounds and sum(map(Fraction, spent), Fraction(0)) <= Fraction(budget)
    central = [e.epsilon for e in events if e.unit == UNIT_CLIENT]
    assert len(central) == 2 * rounds and sum(map(Fraction, central), Fraction(0)) <= Fraction(budget)


def test_too_few_replies_keeps_the_ticket_then_stops(kit: SimpleNamespace) -> None:
    search = kit.make_search(settings=SearchSettings(kernel_vote_layers=("conv2",), min_replies=3))

    def sometimes(node: int, message: Message) -> RecordDict | None:
        return kit.honest_client(node, message) if int(message.content[keys.VOTE_CONFIG_KEY][
            keys.ROUND_FIELD]) == 1 else None

    grid = kit.FakeGrid({node: sometimes for node in range(1, 5)})
    outcome = run_search(search, grid, arrays=ARRAYS, max_attempts=2)
    assert outcome.completed_round == 1 and outcome.ticket is not None
    assert outcome.stop_reason is not None and "fewer than the minimum replies" in outcome.stop_reason
    assert outcome.metrics[2]["ticket-updated"] == 0 and outcome.metrics[2]["attempt"] == 1
    assert len(grid.sent) == 3  # round 1, then two attempts of round 2


def test_too_few_replies_charges_the_repliers_but_not_the_central_release(kit: SimpleNamespace) -> None:
    privacy = PrivacySettings(epsilon_split={"patterns": 0.5, "kernels:conv2": 0.5}, record_epsilon=1.0,
                              min_examples=kit.min_examples, central_noise="discrete-laplace", noise_seed=0)
    with pytest.warns(SeededNoiseWarning):
        search = kit.make_search(privacy=privacy, settings=SearchSettings(kernel_vote_layers=("conv2",),
                                                                          min_replies=3))
    grid = kit.FakeGrid({1: kit.honest_client, 2: kit.honest_client, 3: kit.failing_client})
    outcome = run_search(search, grid, arrays=ARRAYS, max_attempts=1)
    assert outcome.completed_round == 0 and outcome.ticket is None and outcome.stopped
    accountant = search.accountant
    assert accountant.record_epsilon_by_client() == {"1": pytest.approx(1.0), "2": pytest.approx(1.0)}
    assert accountant.client_level_epsilon() == 0.0


def test_state_dict_round_trip_resumes_the_same_search(kit: SimpleNamespace, tmp_path: Path) -> None:
    grid = _honest_grid(kit, num=8)
    settings = SearchSettings(kernel_vote_layers=("conv2",), clients_per_round=4, min_replies=2)
    search = kit.make_search(tmp_path / "a", settings=settings)
    run_search(search, grid, arrays=ARRAYS, num_rounds=2)
    state = json.loads(json.dumps(search.state_dict()))  # JSON-safe
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "ledger.jsonl", tmp_path / "b" / "ledger.jsonl")  # the checkpointed ledger
    resumed = kit.make_search(tmp_path / "b", settings=settings)
    resumed.load_state(state)
    assert resumed.completed_round == 2 and resumed.ticket == search.ticket
    assert resumed.state_dict() == state
    run_search(search, grid, arrays=ARRAYS, num_rounds=3)
    again = run_search(resumed, grid, arrays=ARRAYS, num_rounds=3)
    assert again.completed_round == 3
    assert [m.metadata.dst_node_id for m in grid.sent[2]] == [m.metadata.dst_node_id for m in grid.sent[3]]
    events = Ledger(tmp_path / "b" / "ledger.jsonl").events
    assert [e.round for e in events if e.domain == "patterns"] == [1, 2, 3]  # continued, nothing charged twice


def test_load_state_refuses_a_bad_state(kit: SimpleNamespace) -> None:
    search = kit.make_search()
    state = search.state_dict()
    with pytest.raises(StrategyError, match="state keys must be"):
        search.load_state({"round": 1})
    with pytest.raises(StrategyError, match="ticket-path must be set"):
        search.load_state({**state, "round": 2})
    with pytest.raises(StrategyError, match="sampling-rng must be a PCG64 state"):
        search.load_state({**state, "sampling-rng": {"bit_generator": "MT19937"}})


def test_hooks_out_of_order_and_bad_settings_are_refused(kit: SimpleNamespace) -> None:
    search = kit.make_search()
    with pytest.raises(StrategyError, match="must follow configure_train"):
        search.aggregate_train(1, [])
    with pytest.raises(StrategyError, match="server_round must be 1"):
        search.configure_train(2, ARRAYS, ConfigRecord(), _honest_grid(kit))
    with pytest.raises(StrategyError, match="epsilon_split keys must be exactly the domains"):
        kit.make_search(privacy=PrivacySettings(epsilon_split={"patterns": 1.0}))
    with pytest.raises(StrategyError, match="evaluate_fn must be None"):
        search.start(_honest_grid(kit), ARRAYS, evaluate_fn=lambda r, a: None)


def test_start_runs_the_search_as_a_flower_strategy(kit: SimpleNamespace) -> None:
    search = kit.make_search()
    result = search.start(_honest_grid(kit), ARRAYS, num_rounds=2)
    assert sorted(result.train_metrics_clientapp) == [1, 2]
    assert result.arrays[keys.LIBRARY_ARRAY].numpy().dtype == np.bool_
    assert result.train_metrics_clientapp[1][f"rejected.{RejectReason.EMPTY.value}"] == 0  # every reason reported


def test_the_plain_search_runs_alone_charges_nothing_and_refuses_central_noise(kit: SimpleNamespace) -> None:
    gate = kit.make_search()
    result = gate.strategy.start(_honest_grid(kit), ARRAYS, num_rounds=2)  # the same loop, without the gate
    assert sorted(result.train_metrics_clientapp) == [1, 2] and gate.strategy.completed_round == 2
    assert gate.accountant.ledger.num_batches == 0  # the plain search knows no ledger
    assert "epsilon-client" not in result.train_metrics_clientapp[1]  # ε metrics are the gate's
    central = PrivacySettings(epsilon_split={"patterns": 0.5, "kernels:conv2": 0.5}, record_epsilon=1.0,
                              min_examples=kit.min_examples, central_noise="laplace")
    plain = kit.make_search(privacy=central).strategy
    with pytest.raises(StrategyError, match="releaser must draw the central noise 'laplace'"):
        run_search(plain, _honest_grid(kit), arrays=ARRAYS, num_rounds=1)
    assert plain.ticket is None


def test_the_loop_module_imports_no_strategy() -> None:
    """No import cycle: the strategies import the loop, the loop types them by a Protocol."""
    import ast

    import strategies

    folder = Path(strategies.__file__).parent
    imported = {
        node.module for node in ast.walk(ast.parse((folder / "search_loop.py").read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"strategies.pattern_search", "strategies.privacy_gate"}
    assert "strategies.privacy_gate" not in (folder / "pattern_search.py").read_text()


def _search_with_prior(kit: SimpleNamespace, tmp_path: Path, weights: dict[str, torch.Tensor]) -> PatternSearch:
    """Kernel votes on conv2 over a free prior that ranks conv2's kernels 0, 1, ..., 23 best first."""
    prior = {"conv1": torch.rand(4, 2, generator=torch.Generator().manual_seed(2)),
             "conv2": torch.linspace(1.0, 0.0, 24).reshape(6, 4)}
    search = PatternSearch(
        weights=weights, policies=kit.policies, ticket_dir=tmp_path / "tickets", prior=prior,
        settings=SearchSettings(kernel_vote_layers=("conv2",), min_replies=2, allocation="uniform", connected=False),
        privacy=PrivacySettings(epsilon_split={"patterns": 0.5, "kernels:conv2": 0.5}, record_epsilon=math.inf,
                                min_examples=kit.min_examples),
        schedule=DensitySchedule(start=1 / 9, target=1 / 9, decay_rounds=1, hold_rounds=1),
    )
    return search


@pytest.mark.parametrize("agree_on", ["prior's last", "prior's first"])
def test_each_round_reports_how_many_kernels_the_votes_moved_off_the_free_prior(kit, tmp_path, weights, agree_on) -> None:
    """Eight voters who all choose the same K kernels of conv2: the prior's K worst (they move all K of them,
    a count chance would not reach) or the prior's K best (nothing to move); metrics.jsonl and the search
    log say which."""
    search = _search_with_prior(kit, tmp_path, weights)

    def client(node: int, message: Message) -> RecordDict:
        config = message.content[keys.VOTE_CONFIG_KEY]
        votes = {}
        for domain in config[keys.DOMAINS_FIELD]:
            k = int(config[keys.domain_field(domain, keys.DOMAIN_MAX_ENTRIES_FIELD)])
            size = int(config[keys.domain_field(domain, keys.DOMAIN_SIZE_FIELD)])
            votes[domain] = (np.arange(size - k, size) if agree_on == "prior's last" and domain == "kernels:conv2"
                             else np.arange(k))
        return kit.vote_reply(votes, config[keys.ROUND_FIELD])

    outcome = run_search(search, kit.FakeGrid({node: client for node in range(1, 9)}), arrays=ARRAYS)
    assert outcome.completed_round == 2 and outcome.ticket is not None
    kept = int(outcome.ticket.layers["conv2"].connectivity.sum())
    assert kept == 6  # a quarter of conv2's 24 kernels (density 1/9 with 4-entry patterns)
    for metrics in outcome.metrics.values():
        assert metrics["kernels-moved.conv1"] == 0  # no vote on conv1: the prior's kernels
        assert metrics["kernels-moved.conv2"] == metrics["kernels-moved"] == (kept if agree_on == "prior's last" else 0)
        assert metrics["kernels-kept"] == kept + int(outcome.ticket.layers["conv1"].connectivity.sum())
    moved = _kept_kernels(outcome.ticket, "conv2")
    assert moved == (set(range(18, 24)) if agree_on == "prior's last" else set(range(6)))


def test_a_search_without_a_prior_or_kernel_votes_reports_no_kernels_moved(kit) -> None:
    outcome = run_search(kit.make_search(), _honest_grid(kit), arrays=ARRAYS)  # kernel votes, no prior
    assert outcome.completed_round >= 1
    assert all("kernels-moved" not in metrics for metrics in outcome.metrics.values())
