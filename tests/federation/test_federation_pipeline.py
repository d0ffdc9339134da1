"""The whole run (search, reference, ticket training, summary) on an in-process grid of real ClientApps."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest
import torch

from federation.layout import (
    CHECKPOINT_FILE, CONFIG_FILE, JOURNAL_FILE, KIND_SEARCH_ROUND, KIND_SERVER_EVAL, LEDGER_FILE, METRICS_FILE,
    PHASE_SEARCH, REFERENCE_DIR, REFERENCE_LEDGER_FILE, SUMMARY_FILE, TICKET_FILE, WEIGHTS_FILE,
)
from federation.pipeline import PipelineError, run_pipeline
from federation.rundir import RunDirectory
from kernels import LayerPolicy, Ticket
from privacy import Accountant, Ledger

pytestmark = pytest.mark.usefixtures("server_identity")



def _run(config, path, grid, *, allow_existing: bool = False):
    run_dir = RunDirectory.create(path, allow_existing=allow_existing)
    if not allow_existing:
        run_dir.write_config(config.to_dict())
    return run_pipeline(grid, config, run_dir, progress=lambda line: None)


def _per_client(ledger_path) -> dict[str, float]:
    totals: dict[str, list[float]] = {}
    for event in Ledger(ledger_path).events:
        if event.unit == "record":
            for client in event.participants:
                totals.setdefault(client, []).append(event.epsilon)
    return {client: math.fsum(values) for client, values in totals.items()}


def test_a_run_writes_a_ticket_of_the_target_sparsity_and_charges_exactly_the_budget(small_config, data_dir, tmp_path, grid_type):
    grid = grid_type(small_config, data_dir)
    summary = _run(small_config, tmp_path / "run", grid)
    run = tmp_path / "run"
    for name in (CONFIG_FILE, METRICS_FILE, LEDGER_FILE, SUMMARY_FILE, TICKET_FILE, WEIGHTS_FILE,
                 CHECKPOINT_FILE, REFERENCE_LEDGER_FILE):
        assert (run / name).is_file(), name
    ticket = Ticket.load(run / TICKET_FILE)
    library = ticket.layers["conv2"].library
    for layer in ticket.layers.values():
        if layer.policy is LayerPolicy.PATTERN:
            kept = layer.mask().reshape(-1, 9)
            connected = kept.any(dim=1)
            patterns = library.reshape(-1, 9)
            # every kept kernel is exactly one library pattern
            assert bool((kept[connected][:, None, :] == patterns[None]).all(-1).any(-1).all())
    assert summary["sparsity"]["conv"] == pytest.approx(small_config.sparsity, abs=0.01)
    # ε: each client took part in every round and spent exactly its budget; the summary is the ledger's sum.
    per_client = _per_client(run / LEDGER_FILE)
    assert sorted(per_client) == ["partition-0", "partition-1", "partition-2"]
    assert all(math.isclose(v, small_config.epsilon) for v in per_client.values())
    for client in per_client:  # and never above it, as rationals (DESIGN.md 5.4: exact budgets)
        spent = [Fraction(e.epsilon) for e in Ledger(run / LEDGER_FILE).events
                 if e.unit == "record" and client in e.participants]
        assert len(spent) == 3 and sum(spent, Fraction(0)) <= Fraction(small_config.epsilon)
    assert summary["epsilon"]["record"]["max"] == max(per_client.values())
    assert summary["epsilon"]["record"]["clients"] == 3
    assert math.isclose(summary["epsilon"]["record"]["mean"], math.fsum(per_client.values()) / 3)
    # summary.json opens with what is private and what is not, and names no client (DESIGN.md 5.4b)
    text = (run / SUMMARY_FILE).read_text()
    assert list(json.loads(text))[:2] == ["guarantee", "participation"]
    assert summary["guarantee"].startswith("The ticket (ticket.safetensors")
    assert "ε = 2 record-level DP" in summary["guarantee"] and "reference search" in summary["guarantee"]
    assert "participation counts are exact" in summary["guarantee"]
    assert "not noised" in summary["participation"] and "ledger.jsonl" in summary["participation"]
    assert "partition-" not in text
    # summary.json's "epsilon" is exactly the totals of an accountant re-opened on the ledger (the one
    # computation the report also reads), plus the budgets the search enforced.
    written = json.loads((run / SUMMARY_FILE).read_text())["epsilon"]
    assert written["record"].pop("budget") == small_config.epsilon and written["client"].pop("budget") == "inf"
    reopened = Accountant(Ledger(run / LEDGER_FILE), record_epsilon_budget=math.inf, client_epsilon_budget=math.inf)
    assert written == json.loads(json.dumps(reopened.totals().to_json()))
    assert [r["round"] for r in written["rounds"]] == [1, 2, 3] and written["record"]["releases"] == 3
    jaccard = summary["search"].pop("last-round-jaccard")
    assert summary["search"].pop("kernels-moved-by-votes") is None  # no kernel votes: nothing for them to move
    assert summary["search"] == {"rounds-planned": 3, "rounds-completed": 3, "stop-reason": None}
    logged = [r["jaccard"] for r in map(json.loads, (run / METRICS_FILE).read_text().splitlines())
              if r.get("phase") == "search" and r.get("jaccard") is not None]
    assert jaccard == logged[-1] and 0.0 <= jaccard <= 1.0  # did the hold phase settle: the last round's change
    assert set(summary["accuracy"]) == {"dense", "dp_ticket", "nonprivate_ticket", "random_ticket"}
    assert all(value is not None for value in summary["accuracy"].values())
    # the reference search read the data without noise, in its own ledger only
    assert all(math.isinf(e.epsilon) for e in Ledger(run / REFERENCE_DIR / LEDGER_FILE).events)
    assert not any(math.isinf(e.epsilon) for e in Ledger(run / LEDGER_FILE).events)
    rows = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    assert [r["round"] for r in rows if r["kind"] == KIND_SEARCH_ROUND and r["phase"] == PHASE_SEARCH] == [1, 2, 3]
    evals = [r for r in rows if r["kind"] == KIND_SERVER_EVAL]
    assert {r["variant"] for r in evals} == {"dense", "dp_ticket", "nonprivate_ticket", "random_ticket"}
    # rounds to accuracy: recomputed here from the eval rows (threshold 0.9 x dense's last accuracy)
    dense_last = max((r for r in evals if r["variant"] == "dense"), key=lambda r: r["round"])["accuracy"]
    reached = summary["rounds-to-accuracy"]
    assert reached["fraction-of-dense"] == 0.9 and reached["threshold"] == pytest.approx(0.9 * dense_last)
    for variant in summary["accuracy"]:
        points = sorted((r["round"], r["accuracy"]) for r in evals if r["variant"] == variant)
        first = next((r for r, accuracy in points if accuracy >= 0.9 * dense_last), None)
        assert reached["variants"][variant] == {"round": first, "rounds-evaluated": small_config.train_rounds}
    assert reached["variants"]["dense"]["round"] is not None  # dense reaches 90% of itself
    # MACs per example: dense counts of the model, kept counts = kept weights x positions per layer
    from federation.model_io import build_model
    from models import count_model

    dense = count_model(build_model(small_config, seed=small_config.seed))
    pattern = [name for name, layer in ticket.layers.items() if layer.policy is LayerPolicy.PATTERN]
    positions = {name: dense.layers[name].macs // dense.layers[name].weight_params for name in dense.layers}
    kept = {name: int(layer.mask().sum()) for name, layer in ticket.layers.items()}
    assert summary["sparsity"]["conv-macs"] == {
        "kept": sum(kept[name] * positions[name] for name in pattern),
        "dense": sum(dense.layers[name].macs for name in pattern),
    }
    assert summary["sparsity"]["model-macs"]["dense"] == dense.total_macs
    assert summary["sparsity"]["model-macs"]["kept"] == sum(
        kept.get(name, counts.weight_params) * positions[name] for name, counts in dense.layers.items())
    # the saved pruned model has zeros exactly where the ticket prunes
    from safetensors.torch import load_file

    weights = load_file(str(run / WEIGHTS_FILE))
    mask = ticket.layers["conv3"].mask()
    assert bool((weights["conv3.weight"][~mask] == 0).all())


def test_the_config_record_a_client_receives_never_holds_the_noise_seed():
    from federation.config import SERVER_ONLY_KEYS, Config
    from federation.pipeline import config_record

    assert "noise-seed" in SERVER_ONLY_KEYS
    for config in (Config(), Config(noise_seed=7)):
        record = config_record(config)
        assert set(record) == set(Config.keys()) - SERVER_ONLY_KEYS


def test_a_seeded_run_says_it_is_not_private_first_and_never_sends_the_seed(small_config, data_dir, tmp_path, grid_type):
    from federation.pipeline import config_record
    from simulations.report import render_report
    from strategies import keys

    config = small_config.replace(noise_seed=11, search_rounds=2, hold_rounds=1, train_rounds=1,
                                  reference_search=False, baselines=False)
    grid = grid_type(config, data_dir)
    run_dir = RunDirectory.create(tmp_path / "run")
    run_dir.write_config(config.to_dict())
    lines: list[str] = []
    summary = run_pipeline(grid, config, run_dir, progress=lines.append)
    assert lines[0].startswith("[setup] NOT PRIVATE: noise-seed=11")
    assert next(iter(summary)) == "guarantee" and summary["guarantee"].startswith("NOT PRIVATE: noise-seed=11")
    sent = [message.content[keys.CONFIG_KEY] for batch in grid.sent for message in batch
            if keys.CONFIG_KEY in message.content]
    assert sent and all("noise-seed" not in record for record in sent)
    expected = dict(config_record(config))  # the one builder: every vote and training message holds it (+ the round)
    assert all({key: value for key, value in record.items() if key in expected} == expected for record in sent)
    paths = render_report(run_dir.path)
    assert paths.markdown.read_text().splitlines()[0].startswith("NOT PRIVATE: noise-seed=11")
    body = paths.html.read_text().split("<body>\n", 1)[1]
    assert body.startswith("<p>NOT PRIVATE: noise-seed=11")


def test_a_dead_node_is_skipped_and_never_charged(small_config, data_dir, tmp_path, grid_type):
    grid = grid_type(small_config, data_dir)
    grid.dead.add(grid.node_of(2))
    summary = _run(small_config, tmp_path / "run", grid)
    per_client = _per_client(tmp_path / "run" / LEDGER_FILE)
    # the dead node never answered the identity query: it is never sampled, never charged
    assert sorted(per_client) == ["partition-0", "partition-1"]
    assert summary["search"]["rounds-completed"] == 3 and summary["accuracy"]["dp_ticket"] is not None


def test_a_node_that_dies_mid_search_is_not_charged_for_the_rounds_it_missed(small_config, data_dir, tmp_path, grid_type):
    grid = grid_type(small_config, data_dir)
    original = grid.send_and_receive

    def send_and_receive(messages, *, timeout=None):
        if grid.exchanges == 2:  # identity, round 1; then partition-2 dies
            grid.dead.add(grid.node_of(2))
        return original(messages, timeout=timeout)

    grid.send_and_receive = send_and_receive  # type: ignore[method-assign]
    _run(small_config, tmp_path / "run", grid)
    per_client = _per_client(tmp_path / "run" / LEDGER_FILE)
    assert math.isclose(per_client["partition-2"], small_config.epsilon / small_config.search_rounds)
    assert math.isclose(per_client["partition-0"], small_config.epsilon)


def test_a_server_crash_mid_search_resumes_without_losing_or_repeating_a_release(
    small_config, data_dir, tmp_path, grid_type, grid_crash
):
    run = tmp_path / "run"
    with pytest.raises(grid_crash):  # identity, rounds 1 and 2; round 3's messages leave, then the server dies
        _run(small_config, run, grid_type(small_config, data_dir, crash_after=3))
    before = Ledger(run / LEDGER_FILE).events
    assert sorted({e.round for e in before}) == [1, 2]
    state = json.loads((run / CHECKPOINT_FILE).read_text())
    assert state["searches"]["search"]["state"]["round"] == 2
    asked = [json.loads(line) for line in (run / JOURNAL_FILE).read_text().splitlines()]
    assert [(a["kind"], a["round"]) for a in asked] == [("asked", 1), ("closed", 1), ("asked", 2), ("closed", 2),
                                                         ("asked", 3)]
    # a restarted server: new node ids, the same clients
    summary = _run(small_config, run, grid_type(small_config, data_dir), allow_existing=True)
    after = Ledger(run / LEDGER_FILE).events
    assert after[: len(before)] == before  # the ledger was continued, not rewritten
    # round 3 may have been released to the SuperLink before the crash: charged in full, once, on resume
    interrupted = [e for e in after if e.round == 3]
    assert [(e.attempt, sorted(e.participants)) for e in interrupted] == [
        (0, ["partition-0", "partition-1", "partition-2"])
    ]
    assert [e.event_id for e in interrupted] == [e["event_id"] for e in asked[-1]["events"]]
    assert json.loads((run / JOURNAL_FILE).read_text().splitlines()[-1])["kind"] == "settled"
    per_client = _per_client(run / LEDGER_FILE)
    assert all(math.isclose(v, small_config.epsilon) for v in per_client.values())
    # the budget is spent: round 3 is not re-run, and the ticket of round 2 is the run's ticket
    assert summary["search"]["rounds-completed"] == 2 and "budget" in summary["search"]["stop-reason"]
    # the accountant's refusal names the client; what summary.json publishes does not
    assert "budget of a client would be exceeded" in summary["search"]["stop-reason"]
    assert Ticket.load(run / TICKET_FILE).metadata.round == 2
    from simulations.report import render_report

    journal = (run / JOURNAL_FILE).read_bytes()
    paths = render_report(run)
    report = paths.markdown.read_text()
    assert "Interrupted rounds" in report and "| search | 3 | 0 | 3 |" in report  # said in the report
    assert (run / JOURNAL_FILE).read_bytes() == journal  # which only read the journal
    for published in (run / SUMMARY_FILE, paths.markdown, paths.html):
        assert "partition-" not in published.read_text(), published.name


def test_a_server_crash_mid_round_with_budget_left_reruns_the_round_once(
    small_config, data_dir, tmp_path, grid_type, grid_crash
):
    config = small_config.replace(search_rounds=4, hold_rounds=1)  # one round of budget to spare after round 3
    run = tmp_path / "run"
    with pytest.raises(grid_crash):
        _run(config, run, grid_type(config, data_dir, crash_after=3))
    summary = _run(config, run, grid_type(config, data_dir), allow_existing=True)
    events = Ledger(run / LEDGER_FILE).events
    assert [(e.round, e.attempt) for e in events] == [(1, 0), (2, 0), (3, 0), (3, 1)]
    assert len({e.event_id for e in events}) == len(events)
    assert all(math.isclose(v, config.epsilon) for v in _per_client(run / LEDGER_FILE).values())
    assert summary["search"]["rounds-completed"] == 3  # round 4 would exceed the budget spent on the crash


def test_a_crash_after_an_attempt_nobody_answered_resumes_with_the_next_attempt_number(
    small_config, data_dir, tmp_path, grid_type, grid_crash
):
    config = small_config.replace(reference_search=False, baselines=False)
    grid = grid_type(config, data_dir)
    send, node_ids = grid.send_and_receive, grid.get_node_ids

    def silent_round_2(messages, *, timeout=None):  # exchange 3 = round 2, attempt 0: no node answers
        grid.silent = set(grid.contexts) if grid.exchanges == 2 else set()
        return send(messages, timeout=timeout)

    def killed_before_attempt_1():
        if grid.exchanges == 3:
            raise grid_crash("server killed between two attempts of round 2")
        return node_ids()

    grid.send_and_receive, grid.get_node_ids = silent_round_2, killed_before_attempt_1
    run = tmp_path / "run"
    with pytest.raises(grid_crash):
        _run(config, run, grid)
    summary = _run(config, run, grid_type(config, data_dir), allow_existing=True)  # attempt 0 is not asked twice
    assert [(e.round, e.attempt) for e in Ledger(run / LEDGER_FILE).events] == [(1, 0), (2, 1), (3, 0)]
    assert summary["search"]["rounds-completed"] == 3


def test_the_deployed_server_app_resumes_the_run_named_by_resume_dir(
    small_config, data_dir, tmp_path, grid_type, grid_crash
):
    """``flwr run . CONN --run-config 'resume-dir="RUN"'``: the run's own config, the same folder, no new run."""
    from flwr.app import Context, RecordDict

    from federation.config import Config
    from federation.server_app import build_server_app

    config = small_config.replace(reference_search=False, baselines=False, out_dir=str(tmp_path / "runs"))
    lines: list[str] = []
    app = build_server_app(progress=lines.append)

    def context(run_config):
        return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config)

    with pytest.raises(grid_crash):
        app(grid_type(config, data_dir, crash_after=3), context({**config.to_dict(), "resume-dir": ""}))
    (run,) = (tmp_path / "runs").iterdir()
    # what flwr passes for `--run-config resume-dir=...`: the pyproject defaults plus that key
    app(grid_type(config, data_dir), context({**Config().to_dict(), "resume-dir": str(run)}))
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run.name]
    summary = json.loads((run / SUMMARY_FILE).read_text())
    assert summary["num-clients"] == 3 and math.isclose(summary["epsilon"]["record"]["max"], config.epsilon)
    assert any("resuming" in line for line in lines) and any("interrupted" in line for line in lines)
    with pytest.raises(PipelineError, match="already finished"):
        app(grid_type(config, data_dir), context({**Config().to_dict(), "resume-dir": str(run)}))


def test_the_client_unit_adds_central_noise_and_charges_the_server(small_config, data_dir, tmp_path, grid_type):
    config = small_config.replace(unit="client", client_epsilon=3.0, reference_search=False, baselines=False)
    summary = _run(config, tmp_path / "run", grid_type(config, data_dir))
    events = Ledger(tmp_path / "run" / LEDGER_FILE).events
    central = [e for e in events if e.unit == "client"]
    assert [e.mechanism for e in central] == ["discrete-laplace-histogram"] * 3
    assert math.isclose(summary["epsilon"]["client"]["total"], 3.0)
    # clients add no local noise under the client unit: their record-level ε is unbounded
    assert all(math.isinf(e.epsilon) for e in events if e.unit == "record")
    assert summary["accuracy"]["dense"] is None and summary["accuracy"]["dp_ticket"] is not None


def test_resumed_runs_keep_the_torch_seed_of_theta0(small_config):
    from federation.model_io import build_model

    first = build_model(small_config, seed=small_config.seed).state_dict()
    torch.manual_seed(123)
    second = build_model(small_config, seed=small_config.seed).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_non_private_run_is_its_own_reference_and_data_free_scores_cost_nothing(
    small_config, data_dir, tmp_path, grid_type
):
    config = small_config.replace(epsilon=math.inf, baselines=False)
    summary = _run(config, tmp_path / "inf", grid_type(config, data_dir))
    assert not (tmp_path / "inf" / REFERENCE_DIR).exists()
    assert summary["accuracy"]["nonprivate_ticket"] == summary["accuracy"]["dp_ticket"] is not None
    assert math.isinf(summary["epsilon"]["record"]["max"])
    free = small_config.replace(score="magnitude", reference_search=False, baselines=False)
    summary = _run(free, tmp_path / "free", grid_type(free, data_dir))
    events = Ledger(tmp_path / "free" / LEDGER_FILE).events
    assert events and all(e.epsilon == 0 and e.mechanism == "data-free" for e in events)
    assert summary["epsilon"]["record"]["max"] == 0 and summary["search"]["rounds-completed"] == 3


def _hostile_app(message, context):
    """Honest except for its votes, which break a different rule every round (and one huge payload)."""
    import numpy as np
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

    from federation.client_app import app as honest
    from strategies import keys

    if message.metadata.message_type != keys.VOTE_MESSAGE_TYPE:
        return honest(message, context)
    vote_config = message.content[keys.VOTE_CONFIG_KEY]
    server_round = int(vote_config[keys.ROUND_FIELD])
    size = int(vote_config[keys.domain_field("patterns", keys.DOMAIN_SIZE_FIELD)])
    k = int(vote_config[keys.domain_field("patterns", keys.DOMAIN_MAX_ENTRIES_FIELD)])
    bad = {
        1: np.arange(size, size + k, dtype=np.int64),  # out of range
        2: np.zeros(k, dtype=np.int64),  # duplicates
        3: np.full(k, np.nan),  # NaN (and a float dtype)
    }[server_round]
    votes = {"patterns": Array(bad), "extra": Array(np.zeros(2_000_000, dtype=np.int64))}  # a 16 MB payload
    content = RecordDict({keys.VOTES_KEY: ArrayRecord(votes),
                          keys.VOTE_META_KEY: ConfigRecord({keys.ROUND_FIELD: server_round})})
    return Message(content=content, reply_to=message)


def test_a_hostile_client_is_rejected_with_reasons_and_the_rounds_go_on(small_config, data_dir, tmp_path, grid_type):
    config = small_config.replace(reference_search=False, baselines=False)
    grid = grid_type(config, data_dir)
    grid.apps[grid.node_of(2)] = _hostile_app
    summary = _run(config, tmp_path / "run", grid)
    rows = [json.loads(line) for line in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()]
    rounds = {r["round"]: r for r in rows if r["kind"] == KIND_SEARCH_ROUND}
    assert rounds[1]["rejected.out-of-range"] == 1
    assert rounds[2]["rejected.duplicates"] == 1
    assert rounds[3]["rejected.not-integer"] + rounds[3]["rejected.non-finite"] == 1
    assert all(r["rejected.unknown-domain"] == 1 and r["voters.patterns"] == 2 for r in rounds.values())
    assert summary["search"]["rounds-completed"] == 3 and summary["accuracy"]["dp_ticket"] is not None
    # it replied, so it is charged like everyone (its release happened, valid or not)
    assert math.isclose(_per_client(tmp_path / "run" / LEDGER_FILE)["partition-2"], config.epsilon)


def test_other_layers_unstructured_prunes_the_linear_layers_by_public_magnitude(small_config, data_dir, tmp_path, grid_type):
    config = small_config.replace(other_layers="unstructured", reference_search=False, baselines=False, train_rounds=1)
    summary = _run(config, tmp_path / "run", grid_type(config, data_dir))
    ticket = Ticket.load(tmp_path / "run" / TICKET_FILE)
    linear = {name: layer for name, layer in ticket.layers.items() if layer.policy is LayerPolicy.UNSTRUCTURED}
    assert linear, "the linear layers of conv4 must carry unstructured masks"
    for name, layer in linear.items():
        assert layer.density == pytest.approx(1 - config.sparsity, abs=0.01), name
    assert summary["sparsity"]["conv"] == pytest.approx(config.sparsity, abs=0.01)
    assert summary["sparsity"]["model"] == pytest.approx(config.sparsity, abs=0.02)  # every layer is pruned now
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "run" / "weights.safetensors"))
    name = next(iter(linear))
    assert bool((weights[f"{name}.weight"][~linear[name].mask()] == 0).all())


@pytest.mark.parametrize("init", ["rescaled", "theta0"])
def test_ticket_training_starts_from_theta0_rescaled_to_the_dense_signal(small_config, data_dir, tmp_path, grid_type, init):
    from federation.model_io import build_model, plain_weights
    from models import apply_ticket
    from models.initialisation import gaussian_probe, match_dense_signal

    config = small_config.replace(ticket_init=init, train_variants="dp_ticket", reference_search=False, baselines=False,
                                  sparsity=0.95, train_rounds=1)
    grid = grid_type(config, data_dir)
    _run(config, tmp_path / "run", grid)
    trained = [m for batch in grid.sent for m in batch if m.metadata.message_type == "train"]
    sent = trained[0].content.array_records["arrays"].to_torch_state_dict()

    expected_model = build_model(config, seed=config.seed)
    ticket = Ticket.load(tmp_path / "run" / TICKET_FILE)
    apply_ticket(expected_model, ticket)
    if init == "rescaled":
        factors = match_dense_signal(expected_model, ticket.masks(), dense=build_model(config, seed=config.seed),
                                     probe=gaussian_probe((1, 28, 28), seed=config.seed))
        assert factors["conv2"] > 1.5  # 95% sparse: the kept weights are scaled up
    expected = plain_weights(expected_model)
    for name in ("conv1.weight", "conv2.weight", "conv4.weight", "fc1.weight"):
        assert torch.equal(sent[name], expected[name]), name
