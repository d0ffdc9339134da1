"""Ticket training: masked FedAvg from θ0, evaluated on the server's test set after every round.

This is how a ticket is judged (DESIGN.md 2, step 3). Clients train the model under the ticket's
masks (``train`` handler of the ClientApp); averaging masked weights keeps the pruned ones at zero.
Under ``train-privacy = none`` ticket training releases model updates without noise: it is an
evaluation of the ticket and is not covered by the search's privacy guarantee (the report says so).
Under ``dp-sgd`` every device trains with record-level DP-SGD (DESIGN.md 5.8), and every reply is
charged to the training's own ledger (``ledger-train.jsonl``, phase ``train``) as a ``dp-sgd``
event of the σ, q and steps the device reports, before its weights are averaged; a reply that does
not report them is dropped, unused, and charged as ε = inf to the client it names.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from logging import WARNING
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from federation import profiling
from federation.config import Config
from federation.dp_training import RULE as TRAIN_EPSILON_RULE
from federation.errors import TrainingStopped
from federation.layout import KIND_CLIENT_TRAIN, KIND_SERVER_EVAL, PHASE_TRAIN
from federation.messages import DP_STEPS_FIELD, NOISE_MULTIPLIER_FIELD, SAMPLE_RATE_FIELD, TRAIN_PRIVACY_KEY
from federation.model_io import build_model, load_weights, plain_weights
from federation.rundir import RunDirectory
from federation.training import evaluate
from kernels import Ticket
from models import apply_ticket
from privacy import DP_SGD, UNACCOUNTED, UNIT_RECORD, Accountant, PrivacyError, PrivacyEvent, dp_sgd_event
from strategies import keys, ticket_record
from strategies.identity import CLIENT_ID_PATTERN
from strategies.votes import refusal_rule

__all__ = ["DpSgdCharge", "TicketFedAvg", "dp_sgd_reply_event", "train_variant"]

Progress = Callable[[str], None]


def dp_sgd_reply_event(reply: Message, *, server_round: int, variant: str, clip: float, delta: float) -> PrivacyEvent:
    """The ledger event of one DP-SGD ``train`` reply, from the σ, q and steps it reports.

    Raises
    ------
    PrivacyError
        If the reply lacks them or its client id, or they are not a valid DP-SGD release.
    """
    try:
        metrics = reply.content[keys.METRICS_KEY]
        client_id = str(reply.content[TRAIN_PRIVACY_KEY][keys.CLIENT_ID_FIELD])
        sigma, rate = float(metrics[NOISE_MULTIPLIER_FIELD]), float(metrics[SAMPLE_RATE_FIELD])
        steps = metrics[DP_STEPS_FIELD]
    except (KeyError, TypeError, ValueError) as err:
        raise PrivacyError(f"a dp-sgd train reply must report {NOISE_MULTIPLIER_FIELD}, {SAMPLE_RATE_FIELD},"
                           f" {DP_STEPS_FIELD} and its client id. Missing or malformed: {err}.") from None
    if CLIENT_ID_PATTERN.fullmatch(client_id) is None:
        raise PrivacyError(f"client-id of a dp-sgd train reply must match the client-id pattern. Found {client_id!r}.")
    if isinstance(steps, float) and steps.is_integer():
        steps = int(steps)
    return dp_sgd_event(round=server_round, domain=variant, client_id=client_id, noise_multiplier=sigma,
                        sample_rate=rate, steps=steps, clip=clip, delta=delta, phase=PHASE_TRAIN)


def _unaccounted_event(reply: Message, *, server_round: int, variant: str) -> PrivacyEvent | None:
    """An ε = inf event for a train reply the ledger cannot price, if it names a usable client id."""
    try:
        client_id = str(reply.content[TRAIN_PRIVACY_KEY][keys.CLIENT_ID_FIELD])
    except (KeyError, TypeError):
        return None
    if CLIENT_ID_PATTERN.fullmatch(client_id) is None:
        return None
    return PrivacyEvent(round=server_round, phase=PHASE_TRAIN, domain=variant, layer=None, unit=UNIT_RECORD,
                        mechanism=UNACCOUNTED, sensitivity=1.0, noise_scale=0.0, epsilon=math.inf, delta=0.0,
                        participants=(client_id,))


class DpSgdCharge:
    """Charges each DP-SGD ``train`` reply to the training's ledger before FedAvg uses it, and
    refuses a round the ledger says would take a client over ``train-epsilon``."""

    def __init__(self, accountant: Accountant, *, clip: float, delta: float) -> None:
        self.accountant = accountant
        self._clip = clip
        self._delta = delta

    def refusal(self, server_round: int, variant: str) -> str | None:
        """Why one more training round would exceed the budget, or ``None`` if it fits (nothing is written).

        A device prices every round of a run alike (its σ, q and steps depend only on the config and
        its number of examples, :func:`federation.dp_training.plan_round`), so one more round costs each
        client charged so far its last event again. The accountant checks that price as it checks a
        search round (RDP at ``train-delta``). In a run that trains as configured this never refuses
        (the devices calibrate to the whole training); it refuses when the ledger holds more than that,
        such as the releases of an earlier attempt of a resumed run, whose devices start afresh. It
        checks every client charged so far, sampled or not: under sampling it may stop early, never late.
        """
        last: dict[str, PrivacyEvent] = {}
        for event in self.accountant.events_for(unit=UNIT_RECORD):
            if event.mechanism == DP_SGD:
                last[event.participants[0]] = event
        planned = [dp_sgd_event(round=server_round, domain=variant, client_id=client,
                                noise_multiplier=event.noise_scale / event.sensitivity,
                                sample_rate=float(event.sample_rate), steps=int(event.steps),  # type: ignore[arg-type]
                                clip=event.sensitivity, delta=self._delta, phase=PHASE_TRAIN)
                   for client, event in last.items()]
        reason = self.accountant.would_exceed(planned) if planned else None
        if reason is None:
            return None
        over = sum(1 for event in planned if self.accountant.would_exceed([event]) is not None)
        return (f"round {server_round} of {variant} refused before it was sent: one more DP-SGD round would take"
                f" {over} client(s) over train-epsilon {self.accountant.epsilon_budget(UNIT_RECORD):g} (first: {reason});"
                " the training ledger already holds what the budget allows")

    def charge(self, server_round: int, variant: str, replies: list[Message]) -> list[Message]:
        """Record the events of the valid replies (one ledger batch); return the replies that may be used."""
        kept, events = [], []
        for reply in replies:
            if reply.has_error():
                kept.append(reply)  # released nothing; FedAvg counts it as a failure
                continue
            try:
                events.append(dp_sgd_reply_event(reply, server_round=server_round, variant=variant,
                                                 clip=self._clip, delta=self._delta))
            except PrivacyError as err:
                # DESIGN.md 5.3: a bad reply released something all the same. It is dropped, unused, and
                # charged as ε = inf to the client it names (a reply naming none cannot be attributed).
                log(WARNING, "dppt: train reply of node %s dropped, unused: %s", reply.metadata.src_node_id, err)
                unpriced = _unaccounted_event(reply, server_round=server_round, variant=variant)
                if unpriced is not None:
                    events.append(unpriced)
                continue
            kept.append(reply)
        if events:
            self.accountant.record(events)  # on disk (fsync) before any of these weights is averaged
        return kept


class TicketFedAvg(FedAvg):
    """FedAvg whose train messages carry the ticket's masks, and which logs each round's client metrics.

    With ``dp_sgd``, each reply is charged to the training ledger before aggregation (:class:`DpSgdCharge`).
    """

    def __init__(self, *, ticket: Ticket | None, run_dir: RunDirectory, variant: str,
                 dp_sgd: DpSgdCharge | None = None, progress: Progress | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ticket_arrays = None if ticket is None else ticket_record(ticket)
        self._run_dir = run_dir
        self._variant = variant
        self._dp_sgd = dp_sgd
        self._progress = progress
        self.latest_arrays: ArrayRecord | None = None
        """The model after the last round that trained (what a stopped training keeps)."""
        self.stop_reason: str | None = None
        """Why the training ended before ``train-rounds``; ``None`` while it goes on."""

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.stop_reason is None and self._dp_sgd is not None:
            self.stop_reason = self._dp_sgd.refusal(server_round, self._variant)
        if self.stop_reason is not None:
            raise TrainingStopped(self.stop_reason)
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if self._ticket_arrays is not None:
            for message in messages:
                message.content[keys.TICKET_KEY] = self._ticket_arrays
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if self._dp_sgd is not None:
            replies = self._dp_sgd.charge(server_round, self._variant, replies)
        errors = sum(1 for reply in replies if reply.has_error())
        if replies and errors == len(replies) and self._progress is not None:
            reason = str(replies[0].error.reason or "")[:300]
            self._progress(f"[train {self._variant}] round {server_round}: no client trained ({errors} error"
                           f" replies; first: {reason}); the model is not updated")
        rules = {refusal_rule(reply) for reply in replies}
        if replies and rules == {TRAIN_EPSILON_RULE}:  # every device's own DP-SGD budget is spent: stop here
            self.stop_reason = (f"round {server_round} of {self._variant}: every sampled device refused"
                                f" (rule {TRAIN_EPSILON_RULE}: its DP-SGD budget would be exceeded)")
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is not None:
            self.latest_arrays = arrays
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
    dp_sgd: DpSgdCharge | None = None,
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
        began = time.time()
        load_weights(model, arrays.to_torch_state_dict())
        loss, accuracy = evaluate(model, images, labels)
        profiling.record_server_call("evaluate", start=began, wall_s=time.time() - began, sent=0, replies=0)
        row = {"phase": PHASE_TRAIN, "variant": variant, "round": server_round, "kind": KIND_SERVER_EVAL,
               "accuracy": accuracy, "loss": loss, "elapsed-s": round(time.time() - start, 2)}
        history.append(row)
        run_dir.log_metrics(row)
        progress(f"[train {variant:<17}] round {server_round:>3}/{config.train_rounds}  accuracy {accuracy:.4f}"
                 f"  loss {loss:.4f}  {time.time() - start:6.1f}s")
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    # Rounds go on with the nodes that are there: at least min-replies of them (a dead node is skipped).
    strategy = TicketFedAvg(
        ticket=ticket, run_dir=run_dir, variant=variant, dp_sgd=dp_sgd, progress=progress,
        fraction_train=config.fraction_train,
        fraction_evaluate=0.0, min_train_nodes=config.min_replies, min_available_nodes=config.min_replies,
    )
    try:
        result = strategy.start(
            grid=grid, initial_arrays=ArrayRecord(plain_weights(model)), num_rounds=config.train_rounds,
            timeout=config.round_timeout, train_config=ConfigRecord(dict(config_record)), evaluate_fn=evaluate_fn,
        )
        final = result.arrays
    except TrainingStopped as stop:
        progress(f"[train {variant}] stopped: {stop}")
        final = strategy.latest_arrays  # the last round that trained (None: θ0, never updated)
    if final is not None:
        load_weights(model, final.to_torch_state_dict())
    last = history[-1] if history else {}
    return {"accuracy": last.get("accuracy"), "loss": last.get("loss"), "rounds": len(history) - 1,
            "stop-reason": strategy.stop_reason,
            "accuracy-by-round": {row["round"]: row["accuracy"] for row in history},
            "weights": plain_weights(model), "wall-time-s": round(time.time() - start, 2)}
