"""The dppt ServerApp.

``flwr run .`` (or a real SuperLink) loads the module-level ``app``; it reads the run config once from
``context.run_config``. ``dppt simulate`` builds its own app with `build_server_app` around an
already-validated config and run directory. Both call the same `run_dense_baseline`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from federation.client_data import partition_spec
from federation.config import Config
from federation.data import dataset_info, load_tensors
from federation.model_io import build_model, load_weights, plain_weights
from federation.partitions import partition_indices, partition_report
from federation.rundir import RunDirectory
from federation.training import evaluate

Progress = Callable[[str], None]


def _print_progress(line: str) -> None:
    print(line, flush=True)


def config_record(config: Config, **extra: Any) -> ConfigRecord:
    """The resolved config as a ConfigRecord (what clients rebuild their typed config from)."""
    values: dict[str, Any] = dict(config.to_dict())
    values.update(extra)
    return ConfigRecord(values)


class RecordingFedAvg(FedAvg):
    """FedAvg that also appends the aggregated client metrics of each round to the run's metrics."""

    def __init__(self, *, run_dir: RunDirectory, phase: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._run_dir = run_dir
        self._phase = phase

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        errors = sum(1 for r in replies if r.has_error())
        arrays, metrics = super().aggregate_train(server_round, replies)
        record: dict[str, Any] = {"phase": self._phase, "round": server_round, "kind": "client-train"}
        record.update(dict(metrics or {}))
        record["replies"] = len(replies) - errors
        record["failed-replies"] = errors
        self._run_dir.log_metrics(record)
        return arrays, metrics


def test_set(config: Config) -> tuple[torch.Tensor, torch.Tensor]:
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
    run_dir.log_metrics({"phase": "setup", "round": 0, "kind": "partitions", **report})


def run_dense_baseline(
    grid: Grid, config: Config, run_dir: RunDirectory, *, progress: Progress = _print_progress
) -> dict[str, Any]:
    """Dense FedAvg from θ0 with server-side test evaluation each round; writes weights and summary."""
    start = time.time()
    torch.manual_seed(config.seed)
    model = build_model(config, seed=config.seed)
    images, labels = test_set(config)
    log_partitions(config, run_dir)
    history: list[dict[str, Any]] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        load_weights(model, arrays.to_torch_state_dict())
        loss, acc = evaluate(model, images, labels)
        elapsed = time.time() - start
        row = {"phase": "dense", "round": server_round, "kind": "server-eval", "accuracy": acc,
               "loss": loss, "elapsed-s": round(elapsed, 2)}
        history.append(row)
        run_dir.log_metrics(row)
        progress(f"[dense] round {server_round:>3}/{config.rounds}  accuracy {acc:.4f}  loss {loss:.4f}"
                 f"  elapsed {elapsed:6.1f}s")
        return MetricRecord({"accuracy": acc, "loss": loss})

    per_round = max(1, round(config.fraction_train * config.num_clients))
    strategy = RecordingFedAvg(
        run_dir=run_dir,
        phase="dense",
        fraction_train=config.fraction_train,
        fraction_evaluate=0.0,
        min_train_nodes=per_round,
        min_available_nodes=config.num_clients,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(plain_weights(model)),
        num_rounds=config.rounds,
        timeout=config.round_timeout,
        train_config=config_record(config),
        evaluate_fn=evaluate_fn,
    )
    final = result.arrays.to_torch_state_dict() if result.arrays is not None else plain_weights(model)
    run_dir.save_weights(final)
    last = history[-1] if history else {}
    summary = {
        "status": "completed",
        "dataset": config.dataset,
        "model": config.model,
        "num-clients": config.num_clients,
        "rounds": config.rounds,
        "rounds-completed": max((h["round"] for h in history), default=0),
        "accuracy": last.get("accuracy"),
        "accuracy-initial": history[0]["accuracy"] if history else None,
        "loss": last.get("loss"),
        "wall-time-s": round(time.time() - start, 2),
        "run-dir": str(run_dir.path),
    }
    run_dir.write_summary(summary)
    return summary


def build_server_app(config: Config, run_dir: RunDirectory, *, progress: Progress = _print_progress) -> ServerApp:
    """A ServerApp bound to an already-validated config and an already-created run directory."""
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:  # noqa: ARG001 - context unused: config is bound
        run_dense_baseline(grid, config, run_dir, progress=progress)

    return server_app


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point under ``flwr run`` / a SuperLink: config from ``context.run_config``."""
    config = Config.from_mapping(dict(context.run_config))
    out = Path(config.out_dir) / f"{config.dataset}-{config.model}-{config.run_hash()}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = RunDirectory.create(out)
    run_dir.write_config(config.to_dict())
    run_dense_baseline(grid, config, run_dir)
