"""Ticket training: masked FedAvg from θ0, evaluated on the server's test set after every round.

This is how a ticket is judged (DESIGN.md 2, step 3). Clients train the model under the ticket's
masks (``train`` handler of the ClientApp); averaging masked weights keeps the pruned ones at zero.
Ticket training releases model updates without noise: it is an evaluation of the ticket and is
not covered by the search's privacy guarantee (the report says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from federation.config import Config
from federation.layout import KIND_CLIENT_TRAIN, KIND_SERVER_EVAL, PHASE_TRAIN
from federation.model_io import build_model, load_weights, plain_weights
from federation.rundir import RunDirectory
from federation.training import evaluate
from kernels import Ticket
from models import apply_ticket
from strategies import keys, ticket_record

__all__ = ["TicketFedAvg", "train_variant"]

Progress = Callable[[str], None]


class TicketFedAvg(FedAvg):
    """FedAvg whose train messages carry the ticket's masks, and which logs each round's client metrics."""

    def __init__(self, *, ticket: Ticket | None, run_dir: RunDirectory, variant: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ticket_arrays = None if ticket is None else ticket_record(ticket)
        self._run_dir = run_dir
        self._variant = variant

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if self._ticket_arrays is not None:
            for message in messages:
                message.content[keys.TICKET_KEY] = self._ticket_arrays
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        errors = sum(1 for reply in replies if reply.has_error())
        arrays, metrics = super().aggregate_train(server_round, replies)
        self._run_dir.log_metrics({
            "phase": PHASE_TRAIN, "variant": self._variant, "round": server_round, "kind": KIND_CLIENT_TRAIN,
            **dict(metrics or {}), "replies": len(replies) - errors, "failed-replies": errors,
        })
        return arrays, metrics


def train_variant(
    grid: Grid,
    config: Config,
    run_dir: RunDirectory,
    *,
    variant: str,
    ticket: Ticket | None,
    test_set: tuple[Any, Any],
    config_record: ConfigRecord,
    progress: Progress,
) -> dict[str, Any]:
    """Masked FedAvg of one variant from θ0 (``ticket=None``: dense).

    Returns its last evaluation (``accuracy``, ``loss``), every round's test accuracy
    (``accuracy-by-round``, round 0 = θ0), the trained weights and the wall time.
    """
    start = time.time()
    model = build_model(config, seed=config.seed)  # θ0: every variant starts from the same weights
    if ticket is not None:
        apply_ticket(model, ticket)
    images, labels = test_set
    history: list[dict[str, Any]] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        load_weights(model, arrays.to_torch_state_dict())
        loss, accuracy = evaluate(model, images, labels)
        row = {"phase": PHASE_TRAIN, "variant": variant, "round": server_round, "kind": KIND_SERVER_EVAL,
               "accuracy": accuracy, "loss": loss, "elapsed-s": round(time.time() - start, 2)}
        history.append(row)
        run_dir.log_metrics(row)
        progress(f"[train {variant:<17}] round {server_round:>3}/{config.train_rounds}  accuracy {accuracy:.4f}"
                 f"  loss {loss:.4f}  {time.time() - start:6.1f}s")
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    # Rounds go on with the nodes that are there: at least min-replies of them (a dead node is skipped).
    strategy = TicketFedAvg(
        ticket=ticket, run_dir=run_dir, variant=variant, fraction_train=config.fraction_train,
        fraction_evaluate=0.0, min_train_nodes=config.min_replies, min_available_nodes=config.min_replies,
    )
    result = strategy.start(
        grid=grid, initial_arrays=ArrayRecord(plain_weights(model)), num_rounds=config.train_rounds,
        timeout=config.round_timeout, train_config=ConfigRecord(dict(config_record)), evaluate_fn=evaluate_fn,
    )
    if result.arrays is not None:
        load_weights(model, result.arrays.to_torch_state_dict())
    last = history[-1] if history else {}
    return {"accuracy": last.get("accuracy"), "loss": last.get("loss"), "rounds": len(history) - 1,
            "accuracy-by-round": {row["round"]: row["accuracy"] for row in history},
            "weights": plain_weights(model), "wall-time-s": round(time.time() - start, 2)}
