"""One dppt run on a Flower grid: search -> reference search -> ticket training -> summary.

1. Setup: θ0 from the seed (public), the server's test set, partition report (simulation only).
2. DP search (:mod:`federation.search_phase`), its ledger ``ledger.jsonl``, a checkpoint after
   every round (``checkpoint.json``) so that ``--resume`` continues it.
3. Non-private reference search (ε = inf, ``reference/``), a simulation-only baseline that is
   not covered by the guarantee (``reference-search = false`` turns it off).
4. Ticket training (:mod:`federation.ticket_training`): masked FedAvg from θ0 of the dense model,
   the DP ticket, the non-private ticket and a random ticket of the same structure.
5. ``summary.json``: first the guarantee in words and what participation reveals
   (:mod:`federation.statement`), then accuracies, the first round each model reached 90% of
   dense's final accuracy (:mod:`federation.rounds_to_accuracy`), sparsity and MACs kept, ε per
   unit (:meth:`privacy.Accountant.totals`), rounds, stop reason. It names no client: per-client figures
   stay in the ledger.

A resumed run re-opens the ledger (every release already charged stays charged), charges in full
any round the server was killed in before charging its replies (the release journal), restores each
search's strategy from the checkpoint, finishes the searches, then (re)runs ticket training from
θ0. Under ``train-privacy = dp-sgd`` the training's ledger and journal are re-opened too: an
interrupted training round is charged in full, the earlier attempt's releases stay charged, and
no client is trained past ``train-epsilon`` (:class:`federation.ticket_training.DpSgdCharge`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord
from flwr.serverapp import Grid

from federation.errors import PipelineError
from federation.config import (
    SERVER_ONLY_KEYS, TRAIN_PRIVACY_DP_FEDAVG, TRAIN_PRIVACY_DP_SGD, Config, reads_client_data, trained_variants,
)
from federation.data import dataset_info, load_tensors
from federation.layout import (
    CHECKPOINT_FILE, DENSE_WEIGHTS_FILE, KIND_PARTITIONS, PHASE_SETUP, RANDOM_TICKET_FILE, REFERENCE_DIR, TICKET_FILE,
    TRAIN_JOURNAL_FILE, TRAIN_LEDGER_FILE, VARIANTS, search_phase,
)
from federation.partitions import partition_indices, partition_report
from federation.client_data import partition_spec
from federation.model_io import build_model
from federation.rounds_to_accuracy import rounds_to_accuracy
from federation.rundir import RunDirectory, read_json, write_json_atomic
from federation.search_phase import build_strategy, run_search_phase
from federation.statement import (
    guarantee_statement, noised_units, participation_statement, seeded_noise_warning, whole_run, without_client_ids,
)
from federation.dp_fedavg import DpFedAvgCharge
from federation.ticket_training import DpSgdCharge, train_variant
from kernels import LayerPolicy, Ticket, TicketMetadata, random_ticket_like
from models import count_model
from privacy import ENFORCE_RDP, UNIT_CLIENT, UNIT_RECORD, Accountant, Ledger, PrivacyTotals, ReleaseJournal
from storage import encode_float
from strategies import PrivacyGate, SearchOutcome

__all__ = ["PipelineError", "config_record", "privacy_summary", "run_pipeline", "search_is_private"]

CHECKPOINT_SCHEMA = 1

Progress = Callable[[str], None]



def _print_progress(line: str) -> None:
    print(line, flush=True)


def config_record(config: Config) -> ConfigRecord:
    """The resolved config as a ConfigRecord (what clients rebuild their typed config from).

    The one place a client's config is built (the search's ``train.vote`` messages and ticket
    training's ``train`` messages both carry this record). It never holds the keys of
    :data:`federation.config.SERVER_ONLY_KEYS`: the noise seed stays on the server (DESIGN.md 5.4b,
    nothing the server sends can lower the noise; DESIGN.md 5.5).
    """
    values = {key: value for key, value in config.to_dict().items() if key not in SERVER_ONLY_KEYS}
    # ConfigRecord floats travel fine, but config.json and TOML spell inf "inf" (storage.encode_float).
    return ConfigRecord({key: encode_float(value) for key, value in values.items()})


def test_set(config: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The server's test set (capped by ``max-test-examples``)."""
    images, labels = load_tensors(config.dataset, data_dir=config.data_dir, train=False)
    if config.max_test_examples:
        images, labels = images[: config.max_test_examples], labels[: config.max_test_examples]
    return images, labels


def log_partitions(config: Config, run_dir: RunDirectory) -> None:
    """Partition sizes and label histograms, computed by the server from the same seeded partitioner.

    Only possible where the server can read the training labels (local simulations); a real deployment
    skips it, since clients keep their data.
    """
    try:
        labels = load_tensors(config.dataset, data_dir=config.data_dir, train=True)[1].numpy()
    except Exception:  # noqa: BLE001 - the server may legitimately have no training data
        return
    parts = partition_indices(labels, partition_spec(config))
    report = partition_report(labels, parts, dataset_info(config.dataset).num_classes)
    if config.max_examples_per_client:
        report["capped-sizes"] = [min(s, config.max_examples_per_client) for s in report["sizes"]]
    run_dir.log_metrics({"phase": PHASE_SETUP, "round": 0, "kind": KIND_PARTITIONS, **report})


def search_is_private(config: Config) -> bool:
    """Whether the search adds noise under its unit, or reads no data at all (data-free scores)."""
    return not reads_client_data(config) or bool(noised_units(config))


def privacy_summary(accountant: Accountant) -> dict[str, Any]:
    """``summary.json``'s ``"epsilon"``: the accountant's totals (:meth:`privacy.Accountant.totals`,
    basic composition, DESIGN.md 5.4) and, beside them, the budgets it enforced."""
    summary = accountant.totals().to_json()
    summary["record"]["budget"] = accountant.epsilon_budget(UNIT_RECORD)
    summary["client"]["budget"] = accountant.epsilon_budget(UNIT_CLIENT)
    return summary


def training_charge(
    config: Config, run_dir: RunDirectory, *, identities: Mapping[int, str] | None = None
) -> DpSgdCharge | None:
    """Under ``train-privacy = dp-sgd``: the gate of every DP-SGD round (``ledger-train.jsonl`` and its journal).

    Its accountant composes each client's events by RDP at ``train-delta`` (the figure the devices
    calibrate to), admits a client to a round only if that round fits ``train-epsilon``, and
    records the replies without a check (they have happened); the totals show basic composition
    beside RDP (DESIGN.md 5.4). ``identities``: node id -> client id already known (the search's).
    """
    if config.train_privacy != TRAIN_PRIVACY_DP_SGD:
        return None
    accountant = Accountant(Ledger(run_dir.file(TRAIN_LEDGER_FILE)), record_epsilon_budget=config.train_epsilon,
                            client_epsilon_budget=0.0, delta_budget=config.train_delta, enforce=ENFORCE_RDP)
    return DpSgdCharge(accountant, clip=config.train_clip, delta=config.train_delta,
                       journal=ReleaseJournal(run_dir.file(TRAIN_JOURNAL_FILE)), identities=identities,
                       identity_timeout=config.round_timeout)


def training_fedavg(config: Config, run_dir: RunDirectory) -> DpFedAvgCharge | None:
    """Under ``train-privacy = dp-fedavg``: the training's client-level ledger (``ledger-train.jsonl``)
    and the noise of Flower's wrapper (:mod:`federation.dp_fedavg`); the budget is enforced by
    Flower's RDP accountant, rebuilt from the ledger, so the ledger's accountant checks none."""
    if config.train_privacy != TRAIN_PRIVACY_DP_FEDAVG:
        return None
    accountant = Accountant(Ledger(run_dir.file(TRAIN_LEDGER_FILE)), record_epsilon_budget=math.inf,
                            client_epsilon_budget=math.inf)
    return DpFedAvgCharge(config, accountant)


def fedavg_privacy_summary(charge: DpFedAvgCharge) -> dict[str, Any]:
    """``summary.json``'s ``"train-epsilon"`` under DP-FedAvg: client-level RDP beside basic, budget, z."""
    totals = charge.accountant.totals().to_json()
    return {"client": totals["client"], "rdp": {"client": charge.rdp_epsilon(), "delta": charge.config.train_delta},
            "budget": charge.config.train_epsilon, "budget-delta": charge.config.train_delta,
            "noise-multiplier": charge.noise_multiplier, "clients-per-round": charge.sampled}


def training_privacy_summary(accountant: Accountant) -> dict[str, Any]:
    """``summary.json``'s ``"train-epsilon"``: the training ledger's totals (RDP beside basic) and its budget."""
    totals = accountant.totals().to_json()
    return {"record": totals["record"], "delta": totals["delta"], "rdp": totals.get("rdp"),
            "budget": accountant.epsilon_budget(UNIT_RECORD), "budget-delta": accountant.delta_budget}


class _Checkpoint:
    """``checkpoint.json``: each search's strategy state and outcome, rewritten atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"schema": CHECKPOINT_SCHEMA, "searches": {}}
        if path.exists():
            data = read_json(path)
            if data.get("schema") != CHECKPOINT_SCHEMA or not isinstance(data.get("searches"), dict):
                raise PipelineError(f"{path} must be a dppt checkpoint of schema {CHECKPOINT_SCHEMA}. Found {data!r:.80}.")
            self.data = data

    def state(self, phase: str) -> Mapping[str, Any] | None:
        entry = self.data["searches"].get(phase)
        return None if entry is None else entry.get("state")

    def outcome(self, phase: str) -> Mapping[str, Any] | None:
        entry = self.data["searches"].get(phase)
        return None if entry is None else entry.get("outcome")

    def save(self, phase: str, strategy: PrivacyGate, outcome: SearchOutcome | None = None) -> None:
        entry: dict[str, Any] = {"state": strategy.state_dict()}
        if outcome is not None:
            entry["outcome"] = {"completed-round": outcome.completed_round, "stop-reason": outcome.stop_reason}
        self.data["searches"][phase] = entry
        write_json_atomic(self.path, self.data)


def _search(
    grid: Grid, config: Config, run_dir: RunDirectory, model: torch.nn.Module, checkpoint: _Checkpoint, *,
    reference: bool, progress: Progress,
) -> tuple[PrivacyGate, dict[str, Any]]:
    phase = search_phase(reference=reference)
    folder = run_dir.path / REFERENCE_DIR if reference else run_dir.path
    strategy = build_strategy(config, model, folder, reference=reference)
    state = checkpoint.state(phase)
    if state is not None:
        strategy.load_state(state)
    for ask in strategy.settle_interrupted_rounds():
        clients = sorted({p for event in ask.events for p in event.participants})
        progress(f"[{phase}] round {ask.round} attempt {ask.attempt} was interrupted before its replies were"
                 f" charged: charged in full for its {len(clients)} sampled clients (any may have released)")
    done = checkpoint.outcome(phase)
    if done is not None:
        progress(f"[{phase}] already finished at round {done['completed-round']} (resumed run)")
        return strategy, dict(done)
    if state is not None:
        progress(f"[{phase}] resuming after round {strategy.completed_round}")
    outcome = run_search_phase(
        grid, config, run_dir, strategy, model, reference=reference, config_record=config_record(config),
        checkpoint=lambda search: checkpoint.save(phase, search), progress=progress,
    )
    checkpoint.save(phase, strategy, outcome)
    return strategy, {"completed-round": outcome.completed_round, "stop-reason": outcome.stop_reason}


def run_pipeline(
    grid: Grid, config: Config, run_dir: RunDirectory, *, progress: Progress = _print_progress
) -> dict[str, Any]:
    """Run (or resume) every phase; return the summary also written to ``summary.json``."""
    start = time.time()
    model = build_model(config, seed=config.seed)  # θ0, public
    images, labels = test_set(config)
    checkpoint = _Checkpoint(run_dir.file(CHECKPOINT_FILE))
    if not checkpoint.data["searches"]:
        log_partitions(config, run_dir)
    seeded = seeded_noise_warning(config)
    if seeded is not None:  # DESIGN.md 5.5: said first, before anything else the run prints
        progress(f"[setup] {seeded} (noise-seed is for reproducible simulations only)")
    progress(f"[setup] {config.dataset} {config.model}, {config.num_clients} clients, unit {config.unit},"
             f" ε {config.epsilon:g} (record) / {config.client_epsilon:g} (client), target sparsity {config.sparsity:g}")

    dp_strategy, dp_outcome = _search(grid, config, run_dir, model, checkpoint, reference=False, progress=progress)
    dp_ticket = dp_strategy.ticket
    if dp_ticket is not None:
        dp_ticket.save(run_dir.file(TICKET_FILE))  # atomic, like every ticket file
    reference_outcome: dict[str, Any] | None = None
    nonprivate_ticket: Ticket | None = None
    reference_totals: PrivacyTotals | None = None
    charged = set(dp_strategy.accountant.record_epsilon_by_client())
    if not search_is_private(config):
        nonprivate_ticket = dp_ticket  # the search itself is the ε = inf pipeline: no second search
    elif config.reference_search:
        ref_strategy, reference_outcome = _search(
            grid, config, run_dir, model, checkpoint, reference=True, progress=progress
        )
        nonprivate_ticket = ref_strategy.ticket
        reference_totals = ref_strategy.accountant.totals()
        charged |= set(ref_strategy.accountant.record_epsilon_by_client())

    structure = dp_ticket if dp_ticket is not None else nonprivate_ticket
    random_ticket = None
    if structure is not None:
        random_ticket = random_ticket_like(
            structure, generator=torch.Generator().manual_seed(config.seed),
            metadata=TicketMetadata(config_hash=config.run_hash()),
        )
        random_ticket.save(run_dir.file(RANDOM_TICKET_FILE))
    tickets: dict[str, Ticket | None] = {
        "dense": None, "dp_ticket": dp_ticket, "nonprivate_ticket": nonprivate_ticket, "random_ticket": random_ticket,
    }
    record = config_record(config)
    dp_sgd = training_charge(config, run_dir, identities=dp_strategy.strategy.identities)
    dp_fedavg = training_fedavg(config, run_dir)
    for ask in [] if dp_sgd is None else dp_sgd.settle_interrupted_rounds():
        clients = len({p for event in ask.events for p in event.participants})
        progress(f"[train] round {ask.round} attempt {ask.attempt} was interrupted before its replies were"
                 f" charged: charged in full for its {clients} admitted clients (any may have released)")
    results: dict[str, dict[str, Any]] = {}
    for variant in trained_variants(config):
        if variant != "dense" and tickets[variant] is None:
            progress(f"[train {variant}] skipped: no ticket")
            continue
        if variant == "nonprivate_ticket" and tickets[variant] is dp_ticket and "dp_ticket" in results:
            results[variant] = results["dp_ticket"]  # the same ticket, trained once
            continue
        results[variant] = train_variant(
            grid, config, run_dir, variant=variant, ticket=tickets[variant], test_set=(images, labels),
            config_record=record, progress=progress, dp_sgd=dp_sgd, dp_fedavg=dp_fedavg,
        )
    # A model that trained no round is θ0: it is not saved (nor does it replace an earlier attempt's weights).
    if results.get("dp_ticket", {}).get("rounds"):
        run_dir.save_weights(results["dp_ticket"]["weights"])  # the pruned model (zeros where masked)
    if results.get("dense", {}).get("rounds"):
        run_dir.save_weights(results["dense"]["weights"], name=DENSE_WEIGHTS_FILE)

    totals = dp_strategy.accountant.totals()
    # Each trained model's rounds and, if it ended before train-rounds, why (a DP-SGD budget refusal).
    if dp_sgd is not None:
        charged |= set(dp_sgd.accountant.record_epsilon_by_client())
    training = {variant: {"rounds-completed": result["rounds"],
                          "stop-reason": without_client_ids(result.get("stop-reason"), charged)}
                for variant, result in results.items()}
    training_stopped = any(entry["stop-reason"] for entry in training.values())
    summary = {
        # DESIGN.md 5.4b: what is private and what is not, first; then what participation reveals.
        "guarantee": guarantee_statement(config, totals),
        "participation": participation_statement(config),
        "status": "stopped" if dp_outcome["stop-reason"] or training_stopped else "completed",
        "dataset": config.dataset,
        "model": config.model,
        "num-clients": config.num_clients,
        "unit": config.unit,
        "accuracy": {variant: results.get(variant, {}).get("accuracy") for variant in VARIANTS},
        "rounds-to-accuracy": rounds_to_accuracy(
            {variant: result["accuracy-by-round"] for variant, result in results.items()}
        ).to_json(),
        "sparsity": _sparsity(dp_ticket, model),
        "epsilon": privacy_summary(dp_strategy.accountant),
        "search": {
            "rounds-planned": dp_strategy.schedule.total_rounds,
            "rounds-completed": dp_outcome["completed-round"],
            "stop-reason": without_client_ids(dp_outcome["stop-reason"], charged),
            # Did the hold phase settle? Jaccard of the last round's ticket with the one before (1: it no longer moves).
            "last-round-jaccard": _last_metric(run_dir, search_phase(reference=False), "jaccard"),
            # With kernel votes: how many of the last ticket's kernels the votes moved off the free prior (0: none).
            "kernels-moved-by-votes": (None if (moved := _last_metric(run_dir, search_phase(reference=False),
                                                                      "kernels-moved")) is None else int(moved)),
        },
        "reference": None if reference_outcome is None else {
            "rounds-completed": reference_outcome["completed-round"],
            "stop-reason": without_client_ids(reference_outcome["stop-reason"], charged),
        },
        "ticket-file": TICKET_FILE if dp_ticket is not None else None,
        "ticket-training": (
            f"masked FedAvg of record-level DP-SGD on each device (charged in {TRAIN_LEDGER_FILE}; one example"
            " added or removed)" if dp_sgd is not None
            else f"client-level DP-FedAvg, Flower's server-side fixed clipping (charged in {TRAIN_LEDGER_FILE}; one"
                 " client zeroed out; the server sees the exact updates)" if dp_fedavg is not None
            else "masked FedAvg without noise (evaluation of the ticket; not covered by the guarantee)"
        ),
        "train-epsilon": (training_privacy_summary(dp_sgd.accountant) if dp_sgd is not None
                          else fedavg_privacy_summary(dp_fedavg) if dp_fedavg is not None else None),
        "training": training,
        # Everything the run released, composed per client (search + training; federation.statement.whole_run).
        "whole-run": whole_run(config, totals, None if dp_sgd is None else dp_sgd.accountant.totals(),
                               reference=reference_totals,
                               fedavg_epsilon=None if dp_fedavg is None else dp_fedavg.rdp_epsilon()).to_json(),
        "wall-time-s": round(time.time() - start, 2),
        "run-dir": str(run_dir.path),
    }
    run_dir.write_summary(summary)
    _print_summary(summary, progress)
    return summary


def _last_metric(run_dir: RunDirectory, phase: str, key: str) -> float | None:
    """``key`` of the last ticket-updating round that logged it, from metrics.jsonl (``jaccard``: the
    Jaccard index with the ticket before; ``kernels-moved``: kernels the votes moved off the prior)."""
    rows = [r for r in run_dir.read_metrics() if r.get("phase") == phase and r.get(key) is not None]
    return float(rows[-1][key]) if rows else None


def _sparsity(ticket: Ticket | None, model: torch.nn.Module) -> dict[str, Any]:
    """``summary.json``'s ``"sparsity"`` of the DP ticket: weight sparsity of the pattern (3x3 conv)
    layers and of the whole model, kept paths, and MACs per example (kept and dense, ``models.count_model``)."""
    if ticket is None:
        return {"conv": None, "model": None, "paths": None, "conv-macs": None, "model-macs": None}
    report = ticket.sparsity_report()
    pattern = [row for row in report.layers if row.policy is LayerPolicy.PATTERN]
    total = sum(row.total for row in pattern)
    kept = sum(row.kept for row in pattern)
    counts = count_model(model, masks=ticket.masks())
    conv = [counts.layers[row.name] for row in pattern]
    # Kept input->output paths through the conv kernels (kernels.count_paths): 0 = disconnected.
    return {
        "conv": 1.0 - kept / total if total else None, "model": report.sparsity, "paths": ticket.kernel_paths(),
        "conv-macs": {"kept": sum(c.kept_macs for c in conv), "dense": sum(c.macs for c in conv)},
        "model-macs": {"kept": counts.kept_macs, "dense": counts.total_macs},
    }


def _print_summary(summary: Mapping[str, Any], progress: Progress) -> None:
    accuracy = summary["accuracy"]
    shown = "  ".join(f"{k} {v:.4f}" for k, v in accuracy.items() if v is not None)
    eps = summary["epsilon"]
    progress(f"[done] {shown}")
    rdp = eps.get("rdp", {}).get("record-max")
    shown_eps = f"{eps['record']['max']:.4g}" if rdp is None else f"{rdp:.4g} (RDP; basic {eps['record']['max']:.4g})"
    for variant, entry in summary["training"].items():
        if entry["stop-reason"]:
            progress(f"[done] training of {variant} stopped after {entry['rounds-completed']} round(s):"
                     f" {entry['stop-reason']}")
    whole = summary["whole-run"]
    progress(f"[done] whole run: ε {whole['epsilon']:.4g}, δ {whole['delta']:.3g} per client, record level"
             " (one example replaced; summary.json \"whole-run\" says what it covers)")
    progress(f"[done] ε record max {shown_eps} (budget {eps['record']['budget']:g}),"
             f" client {eps['client']['total']:.4g} (budget {eps['client']['budget']:g});"
             f" search rounds {summary['search']['rounds-completed']}/{summary['search']['rounds-planned']}"
             f"{'; stopped: ' + summary['search']['stop-reason'] if summary['search']['stop-reason'] else ''}")
